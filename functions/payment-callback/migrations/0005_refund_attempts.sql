-- The refunds receiver's calls to the provider per RefundRequired message, for its backoff: a
-- failed refund is tried again only from `next_attempt_ms` on, the wait doubling per attempt,
-- and after the last attempt the message is a dead letter (functions/payment-callback/src/refunds.rs).
-- Guarantees: an attempt is claimed (attempts + 1, next_attempt_ms moved on) in its own
-- committed statement BEFORE the provider is called, conditionally on the row being as read
-- and due, so two receivers never call for the same attempt and a call that never reports
-- back (a trap, a kill) still counts; `last_error` is the provider's last failure. `*_ms` are
-- Unix milliseconds of our clock.
CREATE TABLE IF NOT EXISTS refund_attempts (
    message_id       TEXT    NOT NULL PRIMARY KEY,
    attempts         INTEGER NOT NULL CHECK (attempts >= 1),
    attempted_ms     INTEGER NOT NULL,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT
);
