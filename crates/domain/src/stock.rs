//! Inventory counts of one SKU and the only moves between them.
//!
//! A SKU's units are in exactly one of three buckets: `available` (can be reserved), `reserved`
//! (held for a pending order until confirmed, released or expired) and `sold`. Reserving,
//! confirming and releasing move units between buckets, so `available + reserved + sold` is
//! constant; only the initial stock of a new product and an admin's adjustment (a signed delta
//! on `available`, see [`StockLevels::adjust`]) change it. `available` never goes below zero.
//!
//! The Redis Lua scripts of the stock component perform these moves atomically; this type is the
//! specification they follow, property-tested below.

use std::fmt;

/// Units of one SKU in one reservation or order line: `1..=Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

/// A stock level an admin sets: `0..=StockCount::MAX` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct StockCount(u64);

/// A signed change of `available` by an admin adjustment: non-zero, `|delta| <= StockDelta::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StockDelta(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountError {
    NotPositive,
    Negative,
    TooLarge(u64),
    Zero,
}

impl fmt::Display for CountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountError::NotPositive => write!(f, "must be a positive integer"),
            CountError::Negative => write!(f, "must not be negative"),
            CountError::TooLarge(max) => write!(f, "must be at most {max}"),
            CountError::Zero => write!(f, "must not be zero"),
        }
    }
}

impl std::error::Error for CountError {}

impl Quantity {
    /// Per line. Large enough for any cart, small enough that sums of many lines stay exact in
    /// Lua's double-precision numbers.
    pub const MAX: u32 = 1_000_000;

    pub fn parse(n: i64) -> Result<Self, CountError> {
        if n <= 0 {
            return Err(CountError::NotPositive);
        }
        if n > i64::from(Self::MAX) {
            return Err(CountError::TooLarge(u64::from(Self::MAX)));
        }
        Ok(Quantity(n as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl StockCount {
    /// Well inside 2^53, so Lua arithmetic on counts is exact.
    pub const MAX: u64 = 1_000_000_000_000;

    pub fn parse(n: i64) -> Result<Self, CountError> {
        if n < 0 {
            return Err(CountError::Negative);
        }
        if n as u64 > Self::MAX {
            return Err(CountError::TooLarge(Self::MAX));
        }
        Ok(StockCount(n as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl StockDelta {
    /// One adjustment moves at most a billion units either way: more is a typo, not a delivery.
    pub const MAX: u64 = 1_000_000_000;

    pub fn parse(n: i64) -> Result<Self, CountError> {
        if n == 0 {
            return Err(CountError::Zero);
        }
        if n.unsigned_abs() > Self::MAX {
            return Err(CountError::TooLarge(Self::MAX));
        }
        Ok(StockDelta(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The three buckets of one SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StockLevels {
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

/// Not enough units in the bucket a move takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    pub requested: u64,
    pub on_hand: u64,
}

/// Why an adjustment was refused; nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustRefused {
    /// `available` would drop below zero (units held by reservations are never taken back).
    Short { available: u64 },
    /// `available` would exceed [`StockCount::MAX`], past which Lua arithmetic is not exact.
    OverMax { available: u64 },
}

impl StockLevels {
    pub fn total(&self) -> u64 {
        self.available + self.reserved + self.sold
    }

    /// available -> reserved, refused (nothing changes) if fewer than `q` are available.
    pub fn reserve(self, q: Quantity) -> Result<Self, Short> {
        let q = u64::from(q.get());
        let available = self.available.checked_sub(q).ok_or(Short {
            requested: q,
            on_hand: self.available,
        })?;
        Ok(StockLevels {
            available,
            reserved: self.reserved + q,
            ..self
        })
    }

    /// reserved -> sold.
    pub fn confirm(self, q: Quantity) -> Result<Self, Short> {
        let q = u64::from(q.get());
        let reserved = self.reserved.checked_sub(q).ok_or(Short {
            requested: q,
            on_hand: self.reserved,
        })?;
        Ok(StockLevels {
            reserved,
            sold: self.sold + q,
            ..self
        })
    }

    /// reserved -> available (explicit release or expiry).
    pub fn release(self, q: Quantity) -> Result<Self, Short> {
        let q = u64::from(q.get());
        let reserved = self.reserved.checked_sub(q).ok_or(Short {
            requested: q,
            on_hand: self.reserved,
        })?;
        Ok(StockLevels {
            reserved,
            available: self.available + q,
            ..self
        })
    }

    /// The admin's "stock" is the number of units on sale *now*, on top of what is held for
    /// pending orders: it replaces `available` and keeps `reserved` and `sold`, so outstanding
    /// reservations can still be confirmed or released and the history of sales survives.
    pub fn set_available(self, stock: StockCount) -> Self {
        StockLevels {
            available: stock.get(),
            ..self
        }
    }

    /// An admin adjustment: adds `delta` to `available` only, so `reserved` and `sold` (units
    /// outstanding reservations and sales rely on) are never touched, and the total changes by
    /// exactly `delta`. Refused, changing nothing, if `available` would leave `0..=StockCount::MAX`.
    pub fn adjust(self, delta: StockDelta) -> Result<Self, AdjustRefused> {
        let available = i128::from(self.available) + i128::from(delta.get());
        if available < 0 {
            return Err(AdjustRefused::Short {
                available: self.available,
            });
        }
        if available > i128::from(StockCount::MAX) {
            return Err(AdjustRefused::OverMax {
                available: self.available,
            });
        }
        Ok(StockLevels {
            available: available as u64,
            ..self
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(n: i64) -> Quantity {
        Quantity::parse(n).unwrap()
    }

    #[test]
    fn quantity_is_positive_and_bounded() {
        assert_eq!(Quantity::parse(0), Err(CountError::NotPositive));
        assert_eq!(Quantity::parse(-3), Err(CountError::NotPositive));
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(1_000_000).unwrap().get(), 1_000_000);
        assert!(matches!(
            Quantity::parse(1_000_001),
            Err(CountError::TooLarge(_))
        ));
        assert!(matches!(
            Quantity::parse(i64::MAX),
            Err(CountError::TooLarge(_))
        ));
    }

    #[test]
    fn stock_count_allows_zero_not_negative() {
        assert_eq!(StockCount::parse(0).unwrap().get(), 0);
        assert_eq!(StockCount::parse(-1), Err(CountError::Negative));
        assert!(StockCount::parse(i64::MAX).is_err());
    }

    #[test]
    fn moves_between_buckets() {
        let s = StockLevels::default().set_available(StockCount::parse(10).unwrap());
        let s = s.reserve(q(4)).unwrap();
        assert_eq!((s.available, s.reserved, s.sold), (6, 4, 0));
        let s = s.confirm(q(3)).unwrap();
        assert_eq!((s.available, s.reserved, s.sold), (6, 1, 3));
        let s = s.release(q(1)).unwrap();
        assert_eq!((s.available, s.reserved, s.sold), (7, 0, 3));
        assert_eq!(
            s.reserve(q(8)),
            Err(Short {
                requested: 8,
                on_hand: 7
            })
        );
        assert!(s.confirm(q(1)).is_err());
    }

    #[test]
    fn set_available_keeps_reserved_and_sold() {
        let s = StockLevels {
            available: 2,
            reserved: 5,
            sold: 9,
        };
        let s = s.set_available(StockCount::parse(40).unwrap());
        assert_eq!((s.available, s.reserved, s.sold), (40, 5, 9));
    }

    #[test]
    fn delta_is_non_zero_and_bounded() {
        assert_eq!(StockDelta::parse(0), Err(CountError::Zero));
        assert_eq!(StockDelta::parse(-1).unwrap().get(), -1);
        assert_eq!(
            StockDelta::parse(1_000_000_000).unwrap().get(),
            1_000_000_000
        );
        assert_eq!(
            StockDelta::parse(-1_000_000_000).unwrap().get(),
            -1_000_000_000
        );
        for n in [1_000_000_001, -1_000_000_001, i64::MAX, i64::MIN] {
            assert_eq!(
                StockDelta::parse(n),
                Err(CountError::TooLarge(StockDelta::MAX))
            );
        }
    }

    #[test]
    fn adjust_moves_available_only_and_never_below_zero() {
        let d = |n| StockDelta::parse(n).unwrap();
        let s = StockLevels {
            available: 2,
            reserved: 5,
            sold: 9,
        };
        assert_eq!(s.adjust(d(-2)).unwrap(), StockLevels { available: 0, ..s });
        assert_eq!(s.adjust(d(3)).unwrap(), StockLevels { available: 5, ..s });
        // The 5 reserved units are not on sale: they cannot be taken back by an adjustment.
        assert_eq!(s.adjust(d(-3)), Err(AdjustRefused::Short { available: 2 }));
        let full = StockLevels {
            available: StockCount::MAX,
            ..s
        };
        assert_eq!(
            full.adjust(d(1)),
            Err(AdjustRefused::OverMax {
                available: StockCount::MAX
            })
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reserve(i64),
        Confirm(i64),
        Release(i64),
        Adjust(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1i64..20).prop_map(Op::Reserve),
            (1i64..20).prop_map(Op::Confirm),
            (1i64..20).prop_map(Op::Release),
            (-20i64..20)
                .prop_filter("non-zero", |n| *n != 0)
                .prop_map(Op::Adjust),
        ]
    }

    proptest! {
        #[test]
        /// The total on hand changes by exactly the applied adjustments: reservations, confirms
        /// and releases only move units, refused steps change nothing.
        fn moves_keep_the_total_and_never_go_negative(start in 0i64..100, ops in proptest::collection::vec(op(), 0..60)) {
            let mut s = StockLevels::default().set_available(StockCount::parse(start).unwrap());
            let mut total = s.total() as i64;
            for o in ops {
                let before = s;
                let next = match o {
                    Op::Reserve(n) => s.reserve(q(n)).map_err(|_| ()),
                    Op::Confirm(n) => s.confirm(q(n)).map_err(|_| ()),
                    Op::Release(n) => s.release(q(n)).map_err(|_| ()),
                    Op::Adjust(n) => s.adjust(StockDelta::parse(n).unwrap()).map_err(|_| ()),
                };
                match next {
                    Ok(n) => {
                        if let Op::Adjust(d) = o {
                            total += d;
                        }
                        s = n
                    }
                    Err(()) => prop_assert_eq!(s, before),
                }
                prop_assert_eq!(s.total() as i64, total);
            }
        }
    }
}
