//! Which shard of the order context holds a customer's orders.
//!
//! The order context spreads customers over `N` SQLite databases (labels `orders-shard0` ..
//! `orders-shard{N-1}`, N the variable `order_shards`). Everything of one order (its lines, outbox
//! rows, Idempotency-Key claim, inbox rows) lives in its customer's shard, so every write stays
//! one local transaction. The shard is FNV-1a 64 of the customer id's UTF-8 bytes, modulo N: a
//! pure function of the id, fixed forever (the tests pin known values), because a change would
//! strand every order stored under the old one. Changing N moves customers too, which is why
//! every shard records the layout it was written under and `spin-shop-dev reshard` moves orders.

use std::fmt;

/// The most shards the manifests grant labels for (`orders-shard0` .. `orders-shard7`): Spin's
/// grants are static, so more would need new labels in spin.toml, spin.receivers.toml and the
/// runtime config.
pub const MAX_SHARDS: u32 = 8;

/// The number of shards, 1..=[`MAX_SHARDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardCount(u32);

/// Why a shard count was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCountError(pub String);

impl fmt::Display for ShardCountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShardCountError {}

impl ShardCount {
    /// A count from the variable's text (surrounding spaces allowed).
    pub fn parse(s: &str) -> Result<ShardCount, ShardCountError> {
        let n: u32 = s.trim().parse().map_err(|_| {
            ShardCountError(format!(
                "order_shards must be a whole number from 1 to {MAX_SHARDS}, not {s:?}"
            ))
        })?;
        ShardCount::new(n)
    }

    pub fn new(n: u32) -> Result<ShardCount, ShardCountError> {
        match n {
            1..=MAX_SHARDS => Ok(ShardCount(n)),
            _ => Err(ShardCountError(format!(
                "order_shards must be from 1 to {MAX_SHARDS}, not {n}"
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Every shard, in index order.
    pub fn all(self) -> impl Iterator<Item = ShardIndex> {
        (0..self.0).map(ShardIndex)
    }

    /// The shard of `customer_id`.
    pub fn shard_of(self, customer_id: &str) -> ShardIndex {
        ShardIndex((fnv1a64(customer_id.as_bytes()) % u64::from(self.0)) as u32)
    }
}

impl fmt::Display for ShardCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One shard, `0..N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardIndex(u32);

impl ShardIndex {
    /// The authority on the layout: the shard every other one consults before it records one.
    pub const FIRST: ShardIndex = ShardIndex(0);

    /// Index `i` of a layout of `count` shards.
    pub fn new(i: u32, count: ShardCount) -> Option<ShardIndex> {
        (i < count.get()).then_some(ShardIndex(i))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The SQLite label of this shard (`orders-shard<i>`), as the manifests grant it.
    pub fn label(self) -> String {
        format!("{LABEL_PREFIX}{}", self.0)
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The labels of the order context's shards are this prefix and the index (`orders-shard3`). Not
/// `orders-3`: Spin 4.0.2 refuses a label whose hyphen-separated word starts with a digit.
pub const LABEL_PREFIX: &str = "orders-shard";

/// FNV-1a, 64 bits: small, fast, well spread over short ids and specified exactly (the
/// parameters below are the published ones), so any implementation finds the same shard.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// What a shard's database records about the layout it was written under, against the layout
/// configured now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutCheck {
    /// The same number of shards: orders are where their customers hash.
    Matches,
    /// Nothing recorded: a fresh database (or one from before sharding); it takes the layout.
    Unrecorded,
    /// Written under another number of shards: customers would hash elsewhere and their orders
    /// would be stranded, until `spin-shop-dev reshard` moves them.
    Mismatch { recorded: ShardCount },
}

impl LayoutCheck {
    pub fn of(recorded: Option<u32>, configured: ShardCount) -> LayoutCheck {
        match recorded {
            None => LayoutCheck::Unrecorded,
            Some(n) if n == configured.get() => LayoutCheck::Matches,
            Some(n) => LayoutCheck::Mismatch {
                // A recorded count is one we wrote, so it is in range; clamp defensively.
                recorded: ShardCount(n.clamp(1, MAX_SHARDS)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(k: u32) -> ShardCount {
        ShardCount::new(k).unwrap()
    }

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Pinned: a change here strands every stored order (see the module comment).
    #[test]
    fn known_customers_land_on_known_shards() {
        let cases: [(&str, [u32; 5]); 6] = [
            ("u1", [0, 1, 2, 3, 3]),
            ("u2", [0, 0, 0, 2, 6]),
            ("alice", [0, 1, 2, 3, 7]),
            ("bob", [0, 0, 0, 0, 4]),
            ("u", [0, 0, 1, 0, 0]),
            ("", [0, 1, 2, 1, 5]),
        ];
        for (id, expected) in cases {
            let got = [1, 2, 3, 4, 8].map(|k| n(k).shard_of(id).get());
            assert_eq!(got, expected, "{id:?}");
        }
        assert_eq!(n(4).shard_of("u1").label(), "orders-shard3");
    }

    #[test]
    fn counts_outside_one_to_eight_are_refused() {
        for bad in ["0", "9", "-1", "", "four", "2.5"] {
            assert!(ShardCount::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ShardCount::parse(" 8 ").unwrap().get(), 8);
        assert_eq!(
            n(3).all().map(ShardIndex::label).collect::<Vec<_>>(),
            ["orders-shard0", "orders-shard1", "orders-shard2"]
        );
        assert_eq!(ShardIndex::new(3, n(3)), None);
    }

    #[test]
    fn a_layout_is_checked_against_the_configured_count() {
        assert_eq!(LayoutCheck::of(None, n(4)), LayoutCheck::Unrecorded);
        assert_eq!(LayoutCheck::of(Some(4), n(4)), LayoutCheck::Matches);
        assert_eq!(
            LayoutCheck::of(Some(2), n(4)),
            LayoutCheck::Mismatch { recorded: n(2) }
        );
    }

    /// Many ids over 8 shards: each within 20% of an even share.
    #[test]
    fn customers_spread_roughly_evenly() {
        let mut counts = [0u32; 8];
        for i in 0..16_000 {
            counts[n(8).shard_of(&format!("customer-{i}")).get() as usize] += 1;
        }
        for c in counts {
            assert!((1_600..=2_400).contains(&c), "{counts:?}");
        }
    }

    proptest! {
        #[test]
        fn the_shard_is_stable_and_in_range(id in ".{0,64}", k in 1u32..=8) {
            let count = n(k);
            let shard = count.shard_of(&id);
            prop_assert!(shard.get() < k);
            prop_assert_eq!(shard, count.shard_of(&id.clone()));
            prop_assert_eq!(shard.get() as u64, fnv1a64(id.as_bytes()) % k as u64);
        }
    }
}
