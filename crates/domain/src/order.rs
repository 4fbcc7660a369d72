//! The order life cycle as a state machine, with a `version` for optimistic concurrency.
//!
//! ```text
//! PENDING_PAYMENT --pay--> PAID --ship--> SHIPPED --complete--> COMPLETED
//!        |  \--cancel--> CANCELLED <--unfulfillable--/
//!        \----expire--> EXPIRED
//!
//! PENDING_PAYMENT, PAID, CANCELLED, EXPIRED --refund--> REFUNDED
//! ```
//!
//! `refund`: the provider reports the payment refunded in full (`charge.refunded`): a paid order
//! refunded, a cancelled or expired one whose late payment went back, or an unpaid one whose
//! mismatched payment (wrong amount or currency) the shop gave back (the order context checks
//! that the refunded payment is the one it asked to refund). Nothing leaves REFUNDED.
//!
//! `unfulfillable`: the stock context could not sell a paid order's units (they were released
//! before its payment reached stock, and are gone): the order is cancelled and the payment goes
//! back (`RefundRequired`).
//!
//! Every transition goes through [`OrderState::apply`]: it either yields the next state (one
//! version higher), reports that the command already holds (the same command repeated, e.g. cancelling a
//! cancelled order: idempotent, version unchanged), or refuses. Persistence writes the new state
//! only `WHERE version = <old version>`, so two concurrent writers cannot both win.

use std::fmt;

/// Where an order is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Completed,
    Cancelled,
    Expired,
    /// The payment went back to the customer.
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
        OrderStatus::Refunded,
    ];

    /// The wire and database spelling (`PENDING_PAYMENT`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "PENDING_PAYMENT",
            OrderStatus::Paid => "PAID",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No command of its customer or of the shop changes a terminal order any more; only the
    /// provider's refund moves a cancelled or expired one (to REFUNDED, terminal too).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderStatus::Completed
                | OrderStatus::Cancelled
                | OrderStatus::Expired
                | OrderStatus::Refunded
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for OrderStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for OrderStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrderStatus::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown order status {s:?}")))
    }
}

/// What someone asks of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderCommand {
    Pay,
    Ship,
    Complete,
    Cancel,
    Expire,
    /// A paid order whose units the stock context could not sell.
    Unfulfillable,
    /// The provider refunded the order's payment in full.
    Refund,
}

impl OrderCommand {
    pub const ALL: [OrderCommand; 7] = [
        OrderCommand::Pay,
        OrderCommand::Ship,
        OrderCommand::Complete,
        OrderCommand::Cancel,
        OrderCommand::Expire,
        OrderCommand::Unfulfillable,
        OrderCommand::Refund,
    ];

    /// The status this command leads to.
    pub fn target(&self) -> OrderStatus {
        match self {
            OrderCommand::Pay => OrderStatus::Paid,
            OrderCommand::Ship => OrderStatus::Shipped,
            OrderCommand::Complete => OrderStatus::Completed,
            OrderCommand::Cancel | OrderCommand::Unfulfillable => OrderStatus::Cancelled,
            OrderCommand::Expire => OrderStatus::Expired,
            OrderCommand::Refund => OrderStatus::Refunded,
        }
    }

    /// The statuses from which this command moves the order.
    pub fn sources(&self) -> &'static [OrderStatus] {
        match self {
            OrderCommand::Pay | OrderCommand::Cancel | OrderCommand::Expire => {
                &[OrderStatus::PendingPayment]
            }
            OrderCommand::Ship | OrderCommand::Unfulfillable => &[OrderStatus::Paid],
            OrderCommand::Complete => &[OrderStatus::Shipped],
            OrderCommand::Refund => &[
                OrderStatus::PendingPayment,
                OrderStatus::Paid,
                OrderStatus::Cancelled,
                OrderStatus::Expired,
            ],
        }
    }
}

/// The status of an order and the version its row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub version: i64,
}

/// The result of a command that is not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order moves to this state; persist it with `WHERE version = old.version`.
    Changed(OrderState),
    /// The order is already where the command leads (a repeat): nothing to write.
    Unchanged(OrderState),
}

/// A transition the state machine does not allow (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionRefused {
    pub from: OrderStatus,
    pub command: OrderCommand,
}

impl fmt::Display for TransitionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an order in status {} cannot move to {}",
            self.from,
            self.command.target()
        )
    }
}

impl std::error::Error for TransitionRefused {}

impl OrderState {
    /// A new order: awaiting payment, version 1.
    pub fn new() -> Self {
        OrderState {
            status: OrderStatus::PendingPayment,
            version: 1,
        }
    }

    /// Decides what `command` does to this state.
    pub fn apply(self, command: OrderCommand) -> Result<Outcome, TransitionRefused> {
        if self.status == command.target() {
            return Ok(Outcome::Unchanged(self));
        }
        if command.sources().contains(&self.status) {
            return Ok(Outcome::Changed(OrderState {
                status: command.target(),
                version: self.version + 1,
            }));
        }
        Err(TransitionRefused {
            from: self.status,
            command,
        })
    }
}

impl Default for OrderState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use OrderCommand::*;
    use OrderStatus::*;

    fn at(status: OrderStatus) -> OrderState {
        OrderState { status, version: 7 }
    }

    #[test]
    fn happy_path_walks_to_completed() {
        let mut s = OrderState::new();
        for cmd in [Pay, Ship, Complete] {
            match s.apply(cmd).unwrap() {
                Outcome::Changed(next) => s = next,
                Outcome::Unchanged(_) => panic!("{cmd:?} did nothing"),
            }
        }
        assert_eq!(
            s,
            OrderState {
                status: Completed,
                version: 4
            }
        );
    }

    #[test]
    fn cancel_only_while_pending_and_twice_is_a_no_op() {
        let cancelled = match at(PendingPayment).apply(Cancel).unwrap() {
            Outcome::Changed(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(cancelled.status, Cancelled);
        assert_eq!(cancelled.apply(Cancel), Ok(Outcome::Unchanged(cancelled)));
        for st in [Paid, Shipped, Completed, Expired] {
            assert!(at(st).apply(Cancel).is_err(), "{st}");
        }
    }

    #[test]
    fn only_a_paid_order_is_cancelled_as_unfulfillable() {
        assert_eq!(
            at(Paid).apply(Unfulfillable),
            Ok(Outcome::Changed(OrderState {
                status: Cancelled,
                version: 8
            }))
        );
        assert_eq!(
            at(Cancelled).apply(Unfulfillable),
            Ok(Outcome::Unchanged(at(Cancelled)))
        );
        for st in [PendingPayment, Shipped, Completed, Expired] {
            assert!(at(st).apply(Unfulfillable).is_err(), "{st}");
        }
    }

    #[test]
    fn an_unpaid_paid_cancelled_or_expired_order_is_refunded_and_nothing_leaves_refunded() {
        for st in [PendingPayment, Paid, Cancelled, Expired] {
            let refunded = OrderState {
                status: Refunded,
                version: 8,
            };
            assert_eq!(at(st).apply(Refund), Ok(Outcome::Changed(refunded)), "{st}");
        }
        for st in [Shipped, Completed] {
            assert!(at(st).apply(Refund).is_err(), "{st}");
        }
        assert_eq!(
            at(Refunded).apply(Refund),
            Ok(Outcome::Unchanged(at(Refunded)))
        );
        for cmd in [Pay, Ship, Complete, Cancel, Expire, Unfulfillable] {
            assert!(at(Refunded).apply(cmd).is_err(), "{cmd:?}");
        }
    }

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for st in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(OrderStatus::parse("pending_payment"), None);
    }

    /// The allowed edges, written out independently of `apply`.
    fn allowed(from: OrderStatus, cmd: OrderCommand) -> bool {
        matches!(
            (from, cmd),
            (PendingPayment, Pay)
                | (PendingPayment, Cancel)
                | (PendingPayment, Expire)
                | (Paid, Ship)
                | (Paid, Unfulfillable)
                | (Shipped, Complete)
                | (PendingPayment, Refund)
                | (Paid, Refund)
                | (Cancelled, Refund)
                | (Expired, Refund)
        )
    }

    fn any_status() -> impl Strategy<Value = OrderStatus> {
        proptest::sample::select(OrderStatus::ALL.to_vec())
    }

    fn any_command() -> impl Strategy<Value = OrderCommand> {
        proptest::sample::select(OrderCommand::ALL.to_vec())
    }

    proptest! {
        /// Every single step agrees with the edge list: allowed edges bump the version by one,
        /// repeats change nothing, everything else is refused and names where it came from.
        #[test]
        fn each_step_follows_the_edge_list(status in any_status(), version in 1i64..1_000_000, cmd in any_command()) {
            let s = OrderState { status, version };
            match s.apply(cmd) {
                Ok(Outcome::Changed(next)) => {
                    prop_assert!(allowed(status, cmd));
                    prop_assert_eq!(next.status, cmd.target());
                    prop_assert_eq!(next.version, version + 1);
                }
                Ok(Outcome::Unchanged(same)) => {
                    prop_assert_eq!(same, s);
                    prop_assert_eq!(status, cmd.target());
                }
                Err(refused) => {
                    prop_assert!(!allowed(status, cmd));
                    prop_assert!(status != cmd.target());
                    prop_assert_eq!(refused.from, status);
                }
            }
        }

        /// Any sequence of commands from a new order: the version counts the changes exactly,
        /// a terminal status is never left, and a refused command leaves the state as it was.
        #[test]
        fn sequences_keep_the_invariants(cmds in proptest::collection::vec(any_command(), 0..40)) {
            let mut s = OrderState::new();
            let mut changes = 0;
            for cmd in cmds {
                let before = s;
                match s.apply(cmd) {
                    Ok(Outcome::Changed(next)) => {
                        // Only the provider's refund leaves a terminal status (to REFUNDED).
                        prop_assert!(!before.status.is_terminal() || cmd == OrderCommand::Refund);
                        changes += 1;
                        s = next;
                    }
                    Ok(Outcome::Unchanged(_)) => {}
                    Err(_) => {}
                }
                if before.status.is_terminal() && cmd != OrderCommand::Refund {
                    prop_assert_eq!(s.status, before.status);
                }
            }
            prop_assert_eq!(s.version, 1 + changes);
            prop_assert!(changes <= 3, "the longest path has three edges");
        }

        /// Two writers that read the same state and both change it produce the same next
        /// version, so the `WHERE version = old` write lets exactly one of them through.
        #[test]
        fn concurrent_changes_collide_on_version(status in any_status(), a in any_command(), b in any_command()) {
            let s = OrderState { status, version: 3 };
            if let (Ok(Outcome::Changed(x)), Ok(Outcome::Changed(y))) = (s.apply(a), s.apply(b)) {
                prop_assert_eq!(x.version, y.version);
            }
        }
    }
}
