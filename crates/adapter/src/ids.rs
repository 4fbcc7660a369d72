//! Random identifiers and the clock, shared by every function.

/// `prefix` and 32 lowercase hex digits from wasi:random (128 random bits).
pub fn random_id(prefix: &str) -> String {
    let bytes = wasi::random::random::get_random_bytes(16);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// `prefix` and 32 lowercase hex digits that sort by creation time: 12 of the clock's
/// milliseconds, then 20 from wasi:random (80 random bits, so still unguessable).
///
/// For primary keys of rows inserted at a high rate (orders, outbox messages): consecutive rows
/// land on the same B-tree leaf pages, so a commit group writes those pages once for all its
/// members instead of one scattered page per row and index (docs/benchmarks.md).
pub fn sortable_id(prefix: &str) -> String {
    let millis = u64::try_from(now_ms()).unwrap_or(0) & 0xffff_ffff_ffff;
    let bytes = wasi::random::random::get_random_bytes(10);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{millis:012x}{hex}")
}

/// A random number in `0..bound` (0 when `bound` is 0), for jitter.
pub fn random_below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    wasi::random::random::get_random_u64() % bound
}

/// Milliseconds since the Unix epoch, from the host's wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    shop_domain::timestamp::Timestamp::from_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}
