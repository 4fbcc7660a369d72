-- Refunds the provider made for `RefundRequired` messages, one row per message.
-- Guarantees: written only after the provider answered the refund with success, in the same
-- transaction as the message's inbox row, so a redelivered message is not sent again once its
-- row exists; before that a retry sends the same `idempotency_key` (derived from the message
-- id), so the provider answers the refund it already made instead of making a second one.
-- Money is integer minor units (0 to 2^53-1) with an upper-case ISO 4217 currency; `*_ms` are
-- Unix milliseconds of our clock.
CREATE TABLE IF NOT EXISTS refunds (
    message_id         TEXT    NOT NULL PRIMARY KEY,
    order_id           TEXT    NOT NULL,
    payment_intent_id  TEXT    NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount BETWEEN 0 AND 9007199254740991),
    currency           TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    reason             TEXT    NOT NULL,
    idempotency_key    TEXT    NOT NULL,
    refund_id          TEXT    NOT NULL,
    created_ms         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_by_intent ON refunds (payment_intent_id);
