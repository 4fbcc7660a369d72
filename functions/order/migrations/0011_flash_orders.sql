-- Orders created for flash sale tickets: one row per ticket (PRIMARY KEY), written in the
-- transaction that inserts the order, so a ticket's request delivered twice (or re-appended by
-- the compensator's reconciliation) creates one order. `sale_id` lets the reconciliation count a
-- sale's orders in each shard.
CREATE TABLE IF NOT EXISTS flash_orders (
    ticket_id  TEXT    NOT NULL PRIMARY KEY,
    sale_id    TEXT    NOT NULL,
    order_id   TEXT    NOT NULL UNIQUE REFERENCES orders (order_id),
    created_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS flash_orders_by_sale ON flash_orders (sale_id);
