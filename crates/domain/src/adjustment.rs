//! A stock adjustment: an admin's signed change of a product's `available` units (a delivery, a
//! count correction, breakage), named by the caller so a retry never applies it twice.
//!
//! Adjustments are the only way to change the stock of an existing product: unlike "set stock to
//! N", a delta read-modify-writes nothing, so it cannot undo a reservation made between the
//! admin's read and write.

use std::fmt;

use crate::field::FieldError;
use crate::reservation::ReservationId;
use crate::stock::StockDelta;

/// A caller-chosen id with the alphabet and length of a reservation id (1-128 characters of
/// `A-Z a-z 0-9 - _ . :`), so it is safe inside a Redis key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct AdjustmentId(String);

impl AdjustmentId {
    pub fn parse(s: &str) -> Result<Self, String> {
        ReservationId::parse(s).map(|id| AdjustmentId(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdjustmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /api/products/{sku}/stock-adjustments` as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAdjustment {
    pub adjustment_id: String,
    pub delta: i64,
    pub reason: String,
}

/// A valid adjustment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub id: AdjustmentId,
    pub delta: StockDelta,
    /// Trimmed, 1..=MAX_REASON_CHARS characters, no control characters: it is shown to people.
    pub reason: String,
}

impl Adjustment {
    pub const MAX_REASON_CHARS: usize = 200;

    pub fn parse(raw: RawAdjustment) -> Result<Self, FieldError> {
        let id = AdjustmentId::parse(&raw.adjustment_id)
            .map_err(|e| FieldError::new("adjustment_id", e))?;
        let delta =
            StockDelta::parse(raw.delta).map_err(|e| FieldError::new("delta", e.to_string()))?;
        let reason = raw.reason.trim();
        if reason.is_empty() {
            return Err(FieldError::new("reason", "must not be blank"));
        }
        if reason.chars().count() > Self::MAX_REASON_CHARS {
            return Err(FieldError::new(
                "reason",
                format!("must be at most {} characters", Self::MAX_REASON_CHARS),
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err(FieldError::new(
                "reason",
                "must not contain control characters",
            ));
        }
        Ok(Adjustment {
            id,
            delta,
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw() -> RawAdjustment {
        RawAdjustment {
            adjustment_id: "delivery-2024-07-01".into(),
            delta: 25,
            reason: " delivery from supplier ".into(),
        }
    }

    fn field(r: RawAdjustment) -> String {
        Adjustment::parse(r).unwrap_err().field
    }

    #[test]
    fn accepts_and_trims() {
        let a = Adjustment::parse(raw()).unwrap();
        assert_eq!(a.id.as_str(), "delivery-2024-07-01");
        assert_eq!(a.delta.get(), 25);
        assert_eq!(a.reason, "delivery from supplier");
        let a = Adjustment::parse(RawAdjustment {
            delta: -3,
            reason: "é".repeat(200),
            ..raw()
        })
        .unwrap();
        assert_eq!(a.delta.get(), -3);
    }

    #[test]
    fn names_the_offending_field() {
        for id in ["", "has space", "a/b", &"x".repeat(129)] {
            let r = RawAdjustment {
                adjustment_id: id.into(),
                ..raw()
            };
            assert_eq!(field(r), "adjustment_id", "{id:?}");
        }
        for delta in [0, 1_000_000_001, -1_000_000_001, i64::MIN, i64::MAX] {
            assert_eq!(field(RawAdjustment { delta, ..raw() }), "delta", "{delta}");
        }
        for reason in ["", "   ", "a\nb", "a\u{0}b", &"x".repeat(201)] {
            let r = RawAdjustment {
                reason: reason.into(),
                ..raw()
            };
            assert_eq!(field(r), "reason", "{reason:?}");
        }
    }

    proptest! {
        /// Every delta in range is accepted unchanged; every other one is refused naming `delta`.
        #[test]
        fn delta_is_accepted_exactly_in_range(delta in any::<i64>()) {
            let in_range = delta != 0 && delta.unsigned_abs() <= StockDelta::MAX;
            match Adjustment::parse(RawAdjustment { delta, ..raw() }) {
                Ok(a) => {
                    prop_assert!(in_range);
                    prop_assert_eq!(a.delta.get(), delta);
                }
                Err(e) => {
                    prop_assert!(!in_range);
                    prop_assert_eq!(e.field, "delta");
                }
            }
        }
    }
}
