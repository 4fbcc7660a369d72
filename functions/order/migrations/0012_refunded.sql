-- Orders can be REFUNDED (issue 16): the status CHECK gains it, and `refund_reason` says why a
-- paid order's money must go back (the RefundRequired reason, e.g. `out-of-stock`), shown in
-- the order's view. SQLite cannot change a CHECK in place, so the table is rebuilt.
-- Guarantees: runs in the migration's one transaction (all or nothing); every row is copied
-- with every column; the indexes are rebuilt on the new table; the tables that reference
-- `orders` by name (order_lines, flash_orders) reference the new one, whose name is the same
-- (foreign keys are not enforced on these connections, so the drop does not touch them).
CREATE TABLE orders_v12 (
    order_id        TEXT    NOT NULL PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'SHIPPED', 'COMPLETED', 'CANCELLED', 'EXPIRED', 'REFUNDED')),
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
    version         INTEGER NOT NULL CHECK (version >= 1),
    payment_id      TEXT,
    paid_ms         INTEGER,
    refund_reason   TEXT
);
INSERT INTO orders_v12 (order_id, user_id, status, currency, subtotal, discount, total,
    coupon_code, idempotency_key, reservation_id, created_ms, expires_ms, updated_ms, version,
    payment_id, paid_ms)
SELECT order_id, user_id, status, currency, subtotal, discount, total, coupon_code,
    idempotency_key, reservation_id, created_ms, expires_ms, updated_ms, version, payment_id,
    paid_ms
FROM orders;
DROP TABLE orders;
ALTER TABLE orders_v12 RENAME TO orders;
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_ms DESC, order_id DESC);
CREATE INDEX IF NOT EXISTS orders_payment_due ON orders (expires_ms) WHERE status = 'PENDING_PAYMENT';
