-- The order outbox joins the shared outbox schema (crates/adapter/sql/outbox.sql): every message
-- names its topic (`orders`), and the relay's delivery state (attempts, backoff, lease, dead
-- letter) lives on the row. Existing rows are due at once (next_attempt_ms 0).
-- Guarantees: no row is lost or rewritten; the old index is replaced by the shared partial ones
-- (next migration).
ALTER TABLE outbox ADD COLUMN topic TEXT NOT NULL DEFAULT 'orders';
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
ALTER TABLE outbox ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE outbox ADD COLUMN dead_at TEXT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
DROP INDEX IF EXISTS outbox_unpublished;
