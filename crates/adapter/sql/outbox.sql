-- Transactional outbox, the same table in every context that sends messages.
-- Guarantees: a message is inserted in the same transaction as the state change it announces, so
-- it exists if and only if that change was committed. `seq` numbers the messages of one aggregate
-- 1, 2, 3, ... (UNIQUE per aggregate). `topic` names the Redis stream it goes to
-- (`events:<topic>`). Delivery state: `published_at` NULL until a sender (the request's fast path
-- or the relay) has had the stream take it; `next_attempt_ms` is when the relay may try it (the
-- fast path's grace at first, then jittered exponential backoff); `lease_token` /
-- `lease_until_ms` mark the relay run that holds it, so two runs never send the same row at the
-- same time; `dead_at` is set after too many failed attempts (the row then waits for an operator's
-- replay). The partial index serves the relay's due-rows query without scanning delivered rows.
CREATE TABLE IF NOT EXISTS outbox (
    message_id      TEXT    NOT NULL PRIMARY KEY,
    topic           TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    payload         TEXT    NOT NULL,
    trace_id        TEXT,
    created_at      TEXT    NOT NULL,
    published_at    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    dead_at         TEXT,
    last_error      TEXT,
    UNIQUE (aggregate_id, seq)
);

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_ms) WHERE published_at IS NULL AND dead_at IS NULL;

CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_token) WHERE lease_token IS NOT NULL;

CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (dead_at) WHERE dead_at IS NOT NULL;
