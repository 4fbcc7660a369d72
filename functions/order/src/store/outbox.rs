//! The order context's messages: appended to the shared transactional outbox
//! (`shop_adapter::outbox`) on topic [`TOPIC`], inside the transaction that makes the change.

pub use shop_adapter::outbox::Ring;
use spin_sdk::sqlite::Connection;

/// The stream the order context publishes to (`events:orders`).
pub const TOPIC: &str = "orders";

/// One message to append (its `topic` is [`TOPIC`]).
pub use shop_adapter::outbox::Message;

/// Inserts `msg` with the next sequence number of its aggregate; returns the message id.
pub fn append(conn: &Connection, msg: &Message<'_>) -> anyhow::Result<String> {
    debug_assert_eq!(msg.topic(), TOPIC);
    shop_adapter::outbox::append(conn, msg)
}

/// [`append`], returning the row as the fast path sends it after the commit
/// ([`crate::store::claims::release_publishing`]).
pub fn append_outgoing(conn: &Connection, msg: &Message<'_>) -> anyhow::Result<Outgoing> {
    debug_assert_eq!(msg.topic(), TOPIC);
    shop_adapter::outbox::append_outgoing(conn, msg)
}

/// A row appended by this request, ready for the fast path.
pub use shop_adapter::outbox::Outgoing;

/// The fast path after a commit: send `message_ids` now, ringing the receivers' doorbell or not
/// (`ring`). Best effort: on failure the relay sends them after their grace, so the caller's
/// answer does not depend on Redis.
pub fn publish(conn: &Connection, message_ids: &[String], ring: Ring) {
    if message_ids.is_empty() {
        return;
    }
    let sent = shop_adapter::vars::get("redis_url")
        .map_err(anyhow::Error::from)
        .and_then(|url| shop_adapter::outbox::publish_now(conn, &url, message_ids, ring));
    if let Err(e) = sent {
        eprintln!("order: fast-path publish failed, left to the relay: {e:#}");
    }
}
