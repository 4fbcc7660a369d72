//! Idempotency-Key leases in Redis: which request is working on a key right now, and which
//! reservation a request that died may have left behind.
//!
//! A request takes the key's lease before it reserves and drops it once its outcome is in
//! SQLite (completed or failed) or it stored nothing. So a new request costs no SQLite write
//! before the one transaction that writes the order and completes the claim
//! ([`crate::store::claims`]): concurrency is decided here, durability there. The lease lives in
//! the Redis that holds the reservations: if Redis loses its data, it loses the leases together
//! with the reservations they guard, and there is nothing left to settle.
//!
//! Every lease also leaves an *open-lease member* (`<attempt> <token> <fingerprint> <owner>
//! <key>`) in a sorted set,
//! scored by when it was taken; a holder drops it with the lease. One that is still there long
//! after (the holder died between reserving and writing) is settled by the sweep
//! ([`crate::sweep::sweep`], in the customer's shard), which gives the reservation of `<attempt>` back unless an
//! order was written with it.

use std::sync::LazyLock;

use shop_adapter::outbox::{publish_call, Outgoing, Ring, PUBLISH_LUA};
use shop_adapter::redis::{run, Script};
use shop_domain::idempotency::ClaimKey;
use spin_sdk::redis::{Connection, RedisParameter};

const TAKE: Script = Script {
    name: "lease_take",
    source: include_str!("../../lua/lease_take.lua"),
};
const MOVE: Script = Script {
    name: "lease_move",
    source: include_str!("../../lua/lease_move.lua"),
};
const DROP: Script = Script {
    name: "lease_drop",
    source: concat!(
        include_str!("../../lua/lease_drop.lua"),
        "\nreturn drop_lease(KEYS, ARGV)\n"
    ),
};

/// The adapter's `publish`, `drop_lease`, then the step that runs both.
static PUBLISH_AND_DROP: LazyLock<String> = LazyLock::new(|| {
    let parts = [
        PUBLISH_LUA,
        include_str!("../../lua/lease_drop.lua"),
        include_str!("../../lua/publish_and_drop_lease.lua"),
    ];
    parts.join("\n")
});

/// The sorted set of open-lease members of customers' keys.
const OPEN: &str = "order:open-leases";

/// The names from before keys were scoped to their customer: the leases of unscoped claims (a
/// retry of a request begun before the upgrade, or one left open across it) keep them, so the
/// sweep settles what an old holder left as well.
const LEGACY_OPEN: &str = "order:leases";

/// The open-lease set `key`'s leases are recorded in.
fn open_set(key: &ClaimKey) -> &'static str {
    match key.is_scoped() {
        true => OPEN,
        false => LEGACY_OPEN,
    }
}

/// A user id holds no space, so `<owner> <key>` names one (owner, key) pair.
fn lease_key(key: &ClaimKey) -> String {
    match key.is_scoped() {
        true => format!("order:key-lease:{} {}", key.owner_str(), key.key().as_str()),
        false => format!("order:lease:{}", key.key().as_str()),
    }
}

/// A lease on a key at one attempt, as recorded in the open-lease set.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub key: ClaimKey,
    pub token: String,
    /// The fingerprint of the holder's request.
    pub fingerprint: String,
    pub attempt: i64,
}

impl Lease {
    /// `<attempt> <token> <fingerprint> <owner> <key>` (unscoped: no owner): the key last, as
    /// it may contain spaces.
    fn member(&self) -> String {
        let (a, t, f) = (self.attempt, &self.token, &self.fingerprint);
        let key = self.key.key().as_str();
        match self.key.is_scoped() {
            true => format!("{a} {t} {f} {} {key}", self.key.owner_str()),
            false => format!("{a} {t} {f} {key}"),
        }
    }

    /// A member of the open-lease set `set`.
    fn parse(set: &str, member: &str) -> Option<Lease> {
        let mut parts = member.splitn(if set == OPEN { 5 } else { 4 }, ' ');
        let attempt = parts.next()?.parse().ok()?;
        let token = parts.next()?.to_owned();
        let fingerprint = parts.next()?.to_owned();
        let owner = if set == OPEN { parts.next()? } else { "" };
        let key = ClaimKey::from_stored(owner, parts.next()?)?;
        Some(Lease {
            key,
            token,
            fingerprint,
            attempt,
        })
    }
}

/// What taking a lease found.
pub enum Taken {
    Taken,
    /// Another request holds the key, for a request with this fingerprint.
    Held {
        fingerprint: String,
    },
}

/// The instance's one Redis connection ([`shop_adapter::redis::connect`]).
fn open() -> anyhow::Result<std::rc::Rc<Connection>> {
    let url = shop_adapter::vars::get("redis_url")?;
    Ok(shop_adapter::redis::connect(&url)?)
}

/// Takes `lease` for `lease_ms`, unless another request holds the key.
pub fn take(lease: &Lease, lease_ms: i64, now: i64) -> anyhow::Result<Taken> {
    let (key, member) = (lease_key(&lease.key), lease.member());
    let args = [
        lease.token.as_str(),
        &lease.fingerprint,
        &member,
        &lease_ms.to_string(),
        &now.to_string(),
    ];
    let reply = run(&*open()?, &TAKE, &[&key, open_set(&lease.key)], &args)?;
    Ok(match reply.first().map(String::as_str) {
        Some("TAKEN") => Taken::Taken,
        _ => Taken::Held {
            fingerprint: reply.get(1).cloned().unwrap_or_default(),
        },
    })
}

/// Moves a held lease to `attempt`; `false` when it is no longer this holder's.
pub fn move_to(lease: &mut Lease, attempt: i64) -> anyhow::Result<bool> {
    let next = Lease {
        attempt,
        ..lease.clone()
    };
    let key = lease_key(&lease.key);
    let args = [lease.token.as_str(), &lease.member(), &next.member()];
    let reply = run(&*open()?, &MOVE, &[&key, open_set(&lease.key)], &args)?;
    let moved = reply.first().map(String::as_str) == Some("MOVED");
    if moved {
        *lease = next;
    }
    Ok(moved)
}

/// Drops the lease and its open-lease member (a lease taken over meanwhile stays its new
/// holder's). Best effort: an error leaves the lease to run out and the member to the sweep.
pub fn drop(lease: &Lease) {
    let key = lease_key(&lease.key);
    let result = open().and_then(|c| {
        let keys = [key.as_str(), open_set(&lease.key)];
        run(&c, &DROP, &keys, &[&lease.token, &lease.member()]).map_err(Into::into)
    });
    if let Err(e) = result {
        eprintln!(
            "order: could not drop the lease of {}: {e:#}",
            lease.key.key().as_str()
        );
    }
}

/// [`drop`], after sending `rows` (of one topic, committed by this request) to their stream in
/// the same round trip. Best effort, like both: on error the relay sends the rows after their
/// grace, the lease runs out and the sweep settles the member.
pub fn drop_publishing(lease: &Lease, rows: &[Outgoing], ring: Ring) {
    let Some(topic) = rows.first().map(|r| r.topic.as_str()) else {
        return drop(lease);
    };
    debug_assert!(rows.iter().all(|r| r.topic == topic));
    let ([stream, pending], publish_args) = publish_call(topic, rows, ring);
    let (key, member) = (lease_key(&lease.key), lease.member());
    let mut args = vec![lease.token.as_str(), member.as_str()];
    args.extend(publish_args.iter().map(|a| a.as_ref()));
    let script = Script {
        name: "publish_and_drop_lease",
        source: PUBLISH_AND_DROP.as_str(),
    };
    let keys = [key.as_str(), open_set(&lease.key), &stream, &pending];
    let result = open().and_then(|c| run(&c, &script, &keys, &args).map_err(Into::into));
    if let Err(e) = result {
        eprintln!(
            "order: could not send {topic} messages and drop the lease of {} (left to the relay and the lease's expiry): {e:#}",
            lease.key.key().as_str()
        );
    }
}

/// Frees the key's lease if it is still this holder's, keeping the open-lease member for the
/// sweep. Best effort, like [`drop`].
pub fn free(lease: &Lease) {
    let key = lease_key(&lease.key);
    let result = open().and_then(|c| {
        let keys = [key.as_str(), open_set(&lease.key)];
        run(&c, &DROP, &keys, &[&lease.token, ""]).map_err(Into::into)
    });
    if let Err(e) = result {
        eprintln!(
            "order: could not free the lease of {}: {e:#}",
            lease.key.key().as_str()
        );
    }
}

/// Whether the key's lease is still held by this holder.
pub fn held(lease: &Lease) -> anyhow::Result<bool> {
    let value = open()?.get(&lease_key(&lease.key))?;
    let prefix = format!("{} ", lease.token);
    Ok(value.is_some_and(|v| v.starts_with(prefix.as_bytes())))
}

/// Up to `limit` open-lease members of each set taken at or before `taken_before`, oldest first.
pub fn stale(taken_before: i64, limit: i64) -> anyhow::Result<Vec<Lease>> {
    let conn = open()?;
    let mut leases = Vec::new();
    for set in [OPEN, LEGACY_OPEN] {
        let (before, limit) = (taken_before.to_string(), limit.to_string());
        let args = [set, "-inf", &before, "LIMIT", "0", &limit];
        let reply = conn.execute("ZRANGEBYSCORE", &args.map(bin))?;
        let members = reply.into_iter().map(shop_adapter::redis::text);
        leases.extend(members.filter_map(|m| Lease::parse(set, &m)));
    }
    Ok(leases)
}

/// Forgets an open-lease member the sweep has settled.
pub fn forget(lease: &Lease) -> anyhow::Result<()> {
    let member = lease.member();
    open()?.execute("ZREM", &[open_set(&lease.key), member.as_str()].map(bin))?;
    Ok(())
}

fn bin(s: &str) -> RedisParameter {
    RedisParameter::Binary(s.as_bytes().to_vec())
}
