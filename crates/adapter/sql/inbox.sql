-- Inbox of a receiving context: one row per message (or provider event) already applied.
-- Guarantees: a message's effect and its inbox row are written in one transaction, so a message
-- delivered twice (at-least-once queues, provider retries) has its effect exactly once: the
-- second delivery finds the row and changes nothing. `received_ms` serves the retention purge.
CREATE TABLE IF NOT EXISTS inbox (
    message_id  TEXT    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    received_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS inbox_by_age ON inbox (received_ms);
