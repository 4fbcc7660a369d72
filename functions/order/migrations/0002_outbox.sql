-- Transactional outbox of the order component.
-- Guarantees: a message is written in the same transaction as the state change it announces, so
-- an event exists if and only if the change was committed. `seq` numbers the messages of one
-- aggregate 1, 2, 3, ... (UNIQUE per aggregate, so two writers cannot both append the same
-- number); consumers apply them in that order and drop duplicates by `message_id`.
-- `published_at` stays NULL until a relay (the compensator) has delivered the message.
-- `trace_id` is the W3C trace id of the request that caused the change, when it carried one.
CREATE TABLE IF NOT EXISTS outbox (
    message_id   TEXT    NOT NULL PRIMARY KEY,
    type         TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    payload      TEXT    NOT NULL,
    trace_id     TEXT,
    created_at   TEXT    NOT NULL,
    published_at TEXT,
    UNIQUE (aggregate_id, seq)
);

CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (published_at, created_at);
