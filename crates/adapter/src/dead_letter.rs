//! The receivers' dead letters, for the operator: listed, replayed one by one, purged past their
//! retention. A receiver moves a message it failed to apply [`DrainOptions::max_deliveries`]
//! times to its group's dead-letter stream `dead:<topic>:<group>` (settle.lua, with the error
//! and the delivery count); every such stream is named in the index [`INDEX`].
//!
//! A receiver dead letter is named `rcv:<topic>:<group>:<entry id>` ([`DeadLetterId`]): an
//! outbox dead letter is named by its message id (`msg_...`), and the same message can be dead in
//! two places at once (published by its outbox, then dead-lettered by one or more receivers), so
//! the message id alone cannot say which one to replay.
//!
//! [`DrainOptions::max_deliveries`]: crate::receiver::DrainOptions::max_deliveries

use serde::Serialize;
use spin_sdk::redis::Connection;

use crate::outbox::{doorbell, stream_key};
use crate::redis::Script;

/// The set of every dead-letter stream that holds (or held) a dead letter.
pub const INDEX: &str = "dead:index";

/// The dead-letter stream of a group: what it could not apply, with the last error.
pub fn stream(topic: &str, group: &str) -> String {
    format!("dead:{topic}:{group}")
}

const LIST: Script = Script {
    name: "dead_letters_list",
    source: include_str!("../lua/dead_letters_list.lua"),
};

const REPLAY: Script = Script {
    name: "dead_letter_replay",
    source: include_str!("../lua/dead_letter_replay.lua"),
};

const PURGE: Script = Script {
    name: "dead_letters_purge",
    source: include_str!("../lua/dead_letters_purge.lua"),
};

/// Where a listed dead letter waits: an outbox row, or a receiver's dead-letter stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Outbox,
    Receiver,
}

/// The name of one receiver dead letter: `rcv:<topic>:<group>:<entry id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterId {
    pub topic: String,
    pub group: String,
    /// The entry id in the dead-letter stream (`<ms>-<seq>`).
    pub entry: String,
}

const PREFIX: &str = "rcv:";

impl DeadLetterId {
    /// `None` for anything that is not a receiver dead letter's name (an outbox message id, or
    /// a malformed one): names only what [`DeadLetterId::to_string`] writes.
    pub fn parse(s: &str) -> Option<DeadLetterId> {
        let mut parts = s.strip_prefix(PREFIX)?.split(':');
        let (topic, group, entry) = (parts.next()?, parts.next()?, parts.next()?);
        let name = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let (ms, seq) = entry.split_once('-')?;
        let number = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok();
        let valid =
            parts.next().is_none() && name(topic) && name(group) && number(ms) && number(seq);
        valid.then(|| DeadLetterId {
            topic: topic.to_owned(),
            group: group.to_owned(),
            entry: entry.to_owned(),
        })
    }
}

impl std::fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}:{}:{}", self.topic, self.group, self.entry)
    }
}

/// One receiver dead letter as the operator sees it.
#[derive(Debug, Serialize)]
pub struct ReceiverDeadLetter {
    /// What `POST /api/ops/dead-letters/{id}/replay` takes.
    pub id: String,
    pub topic: String,
    pub group: String,
    /// The message's own id, type and aggregate (from the envelope).
    pub message_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub aggregate_id: Option<String>,
    /// The envelope as it travelled (JSON; a string when it is not JSON, which is why it died).
    pub message: serde_json::Value,
    pub last_error: String,
    /// How often the receiver was handed it before giving up.
    pub deliveries: Option<u32>,
    pub dead_at: String,
}

/// The length of one dead-letter stream (all its entries, listed or not).
#[derive(Debug, Serialize)]
pub struct StreamCount {
    pub topic: String,
    pub group: String,
    pub count: u64,
}

/// Every dead-letter stream's length and its oldest `limit` entries.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    pub streams: Vec<StreamCount>,
    pub dead_letters: Vec<ReceiverDeadLetter>,
}

/// The receivers' dead letters, oldest first per stream (at most `limit` per stream).
pub fn list(conn: &Connection, limit: u32) -> anyhow::Result<Listing> {
    let flat = crate::redis::run(conn, &LIST, &[INDEX], &[limit.to_string().as_str()])?;
    let count: usize = flat.first().and_then(|n| n.parse().ok()).unwrap_or(0);
    let rest = flat.get(1..).unwrap_or_default();
    let (heads, entries) = rest.split_at((count * 2).min(rest.len()));
    let mut listing = Listing::default();
    for pair in heads.chunks_exact(2) {
        let (topic, group) = topic_group(&pair[0]);
        listing.streams.push(StreamCount {
            topic,
            group,
            count: pair[1].parse().unwrap_or(0),
        });
    }
    for e in entries.chunks_exact(7) {
        listing.dead_letters.push(entry(e));
    }
    Ok(listing)
}

/// `dead:<topic>:<group>` split (an entry written before settle.lua stored them has neither).
fn topic_group(stream: &str) -> (String, String) {
    let rest = stream.strip_prefix("dead:").unwrap_or(stream);
    let (topic, group) = rest.split_once(':').unwrap_or((rest, ""));
    (topic.to_owned(), group.to_owned())
}

/// One listed entry: {stream, entry id, topic, group, deliveries, last error, envelope}.
fn entry(e: &[String]) -> ReceiverDeadLetter {
    let (topic, group) = match (e[2].is_empty(), e[3].is_empty()) {
        (false, false) => (e[2].clone(), e[3].clone()),
        _ => topic_group(&e[0]),
    };
    let message = serde_json::from_str::<serde_json::Value>(&e[6])
        .unwrap_or_else(|_| serde_json::Value::String(e[6].clone()));
    let field = |k: &str| message.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let dead_ms = e[1].split('-').next().and_then(|ms| ms.parse::<i64>().ok());
    let id = DeadLetterId {
        topic: topic.clone(),
        group: group.clone(),
        entry: e[1].clone(),
    };
    ReceiverDeadLetter {
        id: id.to_string(),
        message_id: field("message_id"),
        kind: field("type"),
        aggregate_id: field("aggregate_id"),
        topic,
        group,
        last_error: e[5].clone(),
        deliveries: e[4].parse().ok(),
        dead_at: dead_ms.map(crate::ids::rfc3339).unwrap_or_default(),
        message,
    }
}

/// Puts the dead letter `id` back on its topic's stream (and rings the topic's doorbell);
/// `None` when there is no such dead letter, else the new entry's id. One dead letter is
/// replayed once: the same call again answers `None`.
pub fn replay(conn: &Connection, id: &DeadLetterId) -> anyhow::Result<Option<String>> {
    let (dead, events) = (stream(&id.topic, &id.group), stream_key(&id.topic));
    let ring = doorbell(&id.topic);
    let keys = [dead.as_str(), INDEX, events.as_str()];
    let reply = crate::redis::run(conn, &REPLAY, &keys, &[id.entry.as_str(), ring.as_str()])?;
    match reply.as_slice() {
        [outcome, entry] if outcome == "REPLAYED" => Ok(Some(entry.clone())),
        [outcome] if outcome == "UNKNOWN" => Ok(None),
        other => anyhow::bail!("dead_letter_replay.lua answered {other:?}"),
    }
}

/// Deletes the receivers' dead letters dead-lettered before `before_ms`; returns how many.
pub fn purge(conn: &Connection, before_ms: i64) -> anyhow::Result<i64> {
    let cutoff = before_ms.max(0).to_string();
    let reply = crate::redis::run(conn, &PURGE, &[INDEX], &[cutoff.as_str()])?;
    Ok(reply.first().and_then(|n| n.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_dead_letter_name_round_trips_and_nothing_else_parses() {
        let id = DeadLetterId::parse("rcv:orders:stock:1733540000000-0").expect("valid");
        assert_eq!((id.topic.as_str(), id.group.as_str()), ("orders", "stock"));
        assert_eq!(id.entry, "1733540000000-0");
        assert_eq!(id.to_string(), "rcv:orders:stock:1733540000000-0");
        for bad in [
            "msg_0123",
            "rcv:orders:stock",
            "rcv:orders:stock:1-",
            "rcv:orders:stock:x-0",
            "rcv:orders:stock:1-0:extra",
            "rcv:or ders:stock:1-0",
            "rcv::stock:1-0",
            "rcv:orders:st*ck:1-0",
            "rcv:orders:stock:99999999999999999999-0",
        ] {
            assert_eq!(DeadLetterId::parse(bad), None, "{bad}");
        }
    }
}
