//! The contract between contexts, pinned: every message round-trips through its topic's type,
//! and its JSON equals the checked-in example (`messages.json`), so a change of the wire format
//! shows in review as a change of that file. Regenerate it on purpose with
//! `UPDATE_MESSAGES=1 cargo test -p shop-domain --test messages` and review the diff.

use serde_json::{json, Value};
use shop_domain::flash::{FlashOrderPlaced, FlashOrderRefused, FlashOrderRequested, RefusalReason};
use shop_domain::messages::*;
use shop_domain::new_order::{CouponCode, UserId};
use shop_domain::order::OrderStatus;
use shop_domain::payment::ProviderId;
use shop_domain::reservation::ReservationId;
use shop_domain::{Currency, Money};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/messages.json");

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()
}

fn pid(s: &str) -> ProviderId {
    ProviderId::parse(s).unwrap()
}

fn rid() -> ReservationId {
    ReservationId::parse("res_1").unwrap()
}

fn change(status: OrderStatus, previous: OrderStatus) -> OrderChange {
    OrderChange {
        order_id: "ord_1".into(),
        user_id: UserId::parse("user-1").unwrap(),
        status,
        previous_status: previous,
        version: 2,
        reservation_id: rid(),
        coupon_code: None,
    }
}

fn order_events() -> Vec<OrderEvent> {
    use OrderStatus::*;
    vec![
        OrderEvent::OrderCreated(OrderCreated {
            order_id: "ord_1".into(),
            user_id: UserId::parse("user-1").unwrap(),
            status: PendingPayment,
            items: vec![OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: 1299,
                line_total: 2598,
            }],
            subtotal: 2598,
            discount: 0,
            total: 2598,
            currency: Currency::parse("EUR").unwrap(),
            coupon_code: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: "2026-01-01T00:15:00.000Z".into(),
            version: 1,
            reservation_id: rid(),
        }),
        OrderEvent::OrderPaid(OrderPaid {
            order: change(Paid, PendingPayment),
            total: eur(2598),
            payment_intent_id: pid("pi_1"),
            paid_at: "2026-01-01T00:01:00.000Z".into(),
        }),
        OrderEvent::OrderCancelled(OrderCancelled {
            order: change(Cancelled, PendingPayment),
            cancelled_at: "2026-01-01T00:02:00.000Z".into(),
            reason: None,
        }),
        OrderEvent::OrderCancelled(OrderCancelled {
            order: change(Cancelled, Paid),
            cancelled_at: "2026-01-01T00:02:00.000Z".into(),
            reason: Some(CancelReason::OutOfStock),
        }),
        OrderEvent::OrderExpired(OrderExpired {
            order: change(Expired, PendingPayment),
            expired_at: "2026-01-01T00:15:00.000Z".into(),
        }),
        OrderEvent::RefundRequired(RefundRequired {
            order_id: "ord_1".into(),
            payment_intent_id: pid("pi_1"),
            amount: eur(2598),
            event_id: Some("evt_1".into()),
            reason: RefundReason::AmountMismatch,
        }),
        OrderEvent::ReservationReleaseOwed(ReservationReleaseOwed {
            reservation_id: rid(),
            order_id: None,
            reason: ReleaseReason::ClaimAbandoned,
        }),
        OrderEvent::FlashOrderPlaced(FlashOrderPlaced {
            ticket_id: "tkt_1".into(),
            sale_id: "s1".into(),
            order_id: "ord_1".into(),
            reservation_id: "flash_1".into(),
        }),
        OrderEvent::FlashOrderRefused(FlashOrderRefused {
            ticket_id: "tkt_1".into(),
            sale_id: "s1".into(),
            reservation_id: "flash_1".into(),
            reason: RefusalReason::ReservationExpired,
        }),
        // An order with a coupon: the coupon context confirms its redemption (id = order id).
        OrderEvent::OrderPaid(OrderPaid {
            order: OrderChange {
                coupon_code: Some(CouponCode::parse("SPRING10").unwrap()),
                ..change(Paid, PendingPayment)
            },
            total: eur(2338),
            payment_intent_id: pid("pi_2"),
            paid_at: "2026-01-01T00:01:00.000Z".into(),
        }),
        OrderEvent::OrderRefunded(OrderRefunded {
            order: change(Refunded, Cancelled),
            refunded_at: "2026-01-01T00:20:00.000Z".into(),
        }),
    ]
}

fn payment_events() -> Vec<PaymentEvent> {
    vec![
        PaymentEvent::PaymentSucceeded(PaymentSucceeded {
            order_id: "ord_1".into(),
            payment_intent_id: pid("pi_1"),
            amount: eur(2598),
            event_id: pid("evt_1"),
        }),
        PaymentEvent::PaymentFailed(PaymentFailed {
            order_id: "ord_1".into(),
            payment_intent_id: pid("pi_1"),
            amount: eur(2598),
            event_id: pid("evt_2"),
            reason: Some("card_declined".into()),
        }),
        PaymentEvent::PaymentRefunded(PaymentRefunded {
            order_id: "ord_1".into(),
            payment_intent_id: pid("pi_1"),
            amount: eur(2598),
            event_id: pid("evt_3"),
            charge_id: pid("ch_1"),
            amount_refunded: 2598,
        }),
    ]
}

fn stock_events() -> Vec<StockEvent> {
    vec![StockEvent::PaidOrderOutOfStock(PaidOrderOutOfStock {
        order_id: "ord_1".into(),
        reservation_id: rid(),
        short: vec![ShortLine {
            sku: "SKU-1".into(),
            quantity: 2,
            available: 1,
        }],
    })]
}

fn flash_requests() -> Vec<FlashRequest> {
    vec![FlashRequest::FlashOrderRequested(FlashOrderRequested {
        ticket_id: "tkt_1".into(),
        sale_id: "s1".into(),
        customer: "user-1".into(),
        sku: "SKU-1".into(),
        quantity: 1,
        unit_price: 9_007_199_254_740_991,
        currency: "EUR".into(),
        reservation_id: "flash_1".into(),
        expires_at_ms: 1_800_000_000_000,
    })]
}

/// An envelope carrying `message`, as a receiver reads it.
fn envelope<T: Topic>(message: &T) -> Envelope {
    let (kind, payload) = encode(message).unwrap();
    Envelope {
        message_id: "msg_1".into(),
        topic: T::TOPIC.into(),
        kind,
        aggregate_id: "ord_1".into(),
        seq: 1,
        payload,
        trace_id: None,
        created_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

/// `{topic, type, payload}` of each message, round-tripped through an envelope.
fn examples<T: Topic + PartialEq + std::fmt::Debug>(messages: Vec<T>) -> Vec<Value> {
    messages
        .into_iter()
        .map(|m| {
            let env = envelope(&m);
            let wire = serde_json::to_string(&env).unwrap();
            let read: Envelope = serde_json::from_str(&wire).unwrap();
            assert_eq!(read.decode::<T>().unwrap(), m, "{wire}");
            json!({"topic": env.topic, "type": env.kind, "payload": env.payload})
        })
        .collect()
}

#[test]
fn every_message_round_trips_and_matches_its_checked_in_example() {
    let mut all = examples(order_events());
    all.extend(examples(payment_events()));
    all.extend(examples(stock_events()));
    all.extend(examples(flash_requests()));
    let now = serde_json::to_string_pretty(&all).unwrap() + "\n";
    if std::env::var_os("UPDATE_MESSAGES").is_some() {
        std::fs::write(EXAMPLES, &now).unwrap();
    }
    let checked_in = std::fs::read_to_string(EXAMPLES).expect("tests/messages.json");
    let checked_in: Value = serde_json::from_str(&checked_in).unwrap();
    assert_eq!(
        checked_in,
        serde_json::from_str::<Value>(&now).unwrap(),
        "the contract changed: review and regenerate tests/messages.json"
    );
}

#[test]
fn the_kinds_scripts_write_are_the_types_kinds() {
    let kind = |e: Envelope| e.kind;
    assert_eq!(
        kind(envelope(&flash_requests()[0])),
        FlashOrderRequested::KIND
    );
    assert_eq!(
        kind(envelope(&stock_events()[0])),
        PaidOrderOutOfStock::KIND
    );
    let placed = order_events().remove(7);
    assert_eq!(kind(envelope(&placed)), FlashOrderPlaced::KIND);
    let refused = order_events().remove(8);
    assert_eq!(kind(envelope(&refused)), FlashOrderRefused::KIND);
}

#[test]
fn an_unknown_kind_or_a_malformed_payload_is_unreadable_with_the_reason() {
    let mut env = envelope(&payment_events()[0]);
    env.kind = "PaymentTeleported".into();
    let e = env.decode::<PaymentEvent>().unwrap_err();
    assert!(e.reason.contains("PaymentTeleported"), "{e}");
    let mut env = envelope(&payment_events()[0]);
    env.payload["amount"] = json!("lots");
    let e = env.decode::<PaymentEvent>().unwrap_err();
    assert!(e.reason.contains("invalid type"), "{e}");
    let mut env = envelope(&payment_events()[0]);
    env.payload["currency"] = json!("euro");
    assert!(env.decode::<PaymentEvent>().is_err());
    let mut env = envelope(&order_events()[1]);
    env.payload
        .as_object_mut()
        .unwrap()
        .remove("reservation_id");
    let e = env.decode::<OrderEvent>().unwrap_err();
    assert!(e.reason.contains("reservation_id"), "{e}");
    // A kind of another topic is not one of this topic's.
    let env = envelope(&stock_events()[0]);
    assert!(env.decode::<OrderEvent>().is_err());
}

#[test]
fn an_empty_short_list_from_lua_reads_as_empty() {
    let mut env = envelope(&stock_events()[0]);
    env.payload["short"] = json!({});
    let StockEvent::PaidOrderOutOfStock(m) = env.decode::<StockEvent>().unwrap();
    assert!(m.short.is_empty());
}

#[test]
fn only_a_refund_of_an_unpaid_order_gives_its_units_and_coupon_back() {
    use OrderStatus::*;
    let refunded = |previous| OrderRefunded {
        order: change(Refunded, previous),
        refunded_at: "2026-01-01T00:00:00Z".into(),
    };
    assert!(refunded(PendingPayment).ends_unpaid());
    for previous in [Paid, Cancelled, Expired] {
        assert!(!refunded(previous).ends_unpaid(), "{previous}");
    }
}
