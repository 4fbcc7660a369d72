//! The order context's answer to a flash ticket (the stock receiver applies it): the ticket
//! becomes ORDERED with its order id, or FAILED with the reason, its unit back in the sale
//! (ticket.lua, one atomic step, idempotent: only a PENDING ticket changes).

use shop_adapter::receiver::Envelope;
use shop_domain::flash::{FlashOrderPlaced, FlashOrderRefused, TicketStatus};

use crate::redis::{keys, Store, TICKET};
use crate::settle::RETENTION_MS;

/// Applies a `FlashOrderPlaced` or `FlashOrderRefused`; `false` for any other kind. A payload
/// that does not parse is logged and acknowledged: retrying cannot change it.
pub fn apply(env: &Envelope) -> anyhow::Result<bool> {
    let (ticket, sale, status, detail) = match env.kind.as_str() {
        FlashOrderPlaced::KIND => {
            match serde_json::from_value::<FlashOrderPlaced>(env.payload.clone()) {
                Ok(m) => (m.ticket_id, m.sale_id, TicketStatus::Ordered, m.order_id),
                Err(e) => return unreadable(env, e),
            }
        }
        FlashOrderRefused::KIND => {
            match serde_json::from_value::<FlashOrderRefused>(env.payload.clone()) {
                Ok(m) => (
                    m.ticket_id,
                    m.sale_id,
                    TicketStatus::Failed,
                    m.reason.as_str().to_owned(),
                ),
                Err(e) => return unreadable(env, e),
            }
        }
        _ => return Ok(false),
    };
    let store = Store::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    settle(&store, &ticket, &sale, status, &detail)?;
    Ok(true)
}

/// Runs ticket.lua: `status` (ORDERED or FAILED) with `detail` (the order id or the reason).
pub fn settle(
    store: &Store,
    ticket: &str,
    sale: &str,
    status: TicketStatus,
    detail: &str,
) -> anyhow::Result<Vec<String>> {
    let tkey = keys::ticket(ticket);
    let rid = store
        .hmget(&tkey, &["reservation_id"])
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?
        .pop()
        .flatten()
        .unwrap_or_default();
    let retention = RETENTION_MS.to_string();
    store
        .run(
            &TICKET,
            &[
                &tkey,
                &keys::sale_pending(sale),
                &keys::reservation(&rid),
                keys::EXPIRIES,
                &keys::sale(sale),
                &keys::sale_buyers(sale),
            ],
            &[
                status.as_str(),
                detail,
                ticket,
                &retention,
                TicketStatus::Pending.as_str(),
                TicketStatus::Failed.as_str(),
                keys::PRODUCT_PREFIX,
            ],
        )
        .map_err(|p| anyhow::anyhow!("{}", p.detail))
}

fn unreadable(env: &Envelope, e: serde_json::Error) -> anyhow::Result<bool> {
    eprintln!(
        "stock-events: ALERT {} {} has an unreadable payload: {e}",
        env.kind, env.message_id
    );
    Ok(true)
}
