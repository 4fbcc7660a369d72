-- Orders and their lines.
-- Guarantees: an order id exists once; every order remembers the Idempotency-Key and the stock
-- reservation it was created with (each UNIQUE, so one key or one reservation can never back two
-- orders); `version` starts at 1 and is bumped by every state change, which is written
-- `WHERE version = <read version>` (optimistic concurrency). Money is integer minor units.
-- `created_ms` (Unix milliseconds) orders the per-user listing; the index serves the keyset
-- pagination (user_id, created_ms DESC, order_id DESC) without a sort.
CREATE TABLE IF NOT EXISTS orders (
    order_id        TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'SHIPPED', 'COMPLETED', 'CANCELLED', 'EXPIRED')),
    currency        TEXT    NOT NULL,
    subtotal        INTEGER NOT NULL CHECK (subtotal >= 0),
    discount        INTEGER NOT NULL CHECK (discount >= 0),
    total           INTEGER NOT NULL CHECK (total >= 0),
    coupon_code     TEXT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    reservation_id  TEXT    NOT NULL UNIQUE,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    version         INTEGER NOT NULL CHECK (version >= 1)
);

CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_ms DESC, order_id DESC);

-- One row per SKU of an order (a SKU appears once per order), in the client's item order.
CREATE TABLE IF NOT EXISTS order_lines (
    order_id   TEXT    NOT NULL REFERENCES orders (order_id),
    line_no    INTEGER NOT NULL,
    sku        TEXT    NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    line_total INTEGER NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, sku)
);
