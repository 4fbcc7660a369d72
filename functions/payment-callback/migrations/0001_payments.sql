-- What the shop knows of each payment, one row per provider payment intent.
-- Guarantees: a payment intent has one row (the PRIMARY KEY), written only by a verified webhook
-- event in the same transaction as the event's inbox row (so a redelivered event never writes it
-- twice) and as the outbox message that announces the change. `status` only moves forward
-- (FAILED -> SUCCEEDED -> REFUNDED; the rule is `shop_domain::payment::PaymentStatus::after`),
-- so a late delivery of an older event cannot undo a payment. Money is integer minor units
-- (0 to 2^53-1) with an upper-case ISO 4217 currency; `amount_refunded` is the provider's running
-- total of refunds and never shrinks. `last_event_id` / `last_event_created` (provider Unix
-- seconds) name the event that last changed the row; `*_ms` are our clock, Unix milliseconds.
-- The index serves look-ups of an order's payments.
CREATE TABLE IF NOT EXISTS payments (
    payment_intent_id  TEXT    NOT NULL PRIMARY KEY,
    order_id           TEXT    NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount BETWEEN 0 AND 9007199254740991),
    currency           TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    status             TEXT    NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED', 'REFUNDED')),
    amount_refunded    INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded BETWEEN 0 AND 9007199254740991),
    charge_id          TEXT,
    failure_reason     TEXT,
    last_event_id      TEXT    NOT NULL,
    last_event_created INTEGER NOT NULL,
    created_ms         INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS payments_by_order ON payments (order_id);
