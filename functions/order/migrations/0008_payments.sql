-- Payments as the order context sees them, and the indexes of its periodic sweep.
-- Guarantees: a PAID order remembers the payment (provider payment id, when) that paid it, so a
-- second success for the same payment is recognised as a repeat and one for another payment as a
-- double charge (RefundRequired). The partial indexes serve the sweep's queries (unpaid orders
-- past their deadline; claims still in progress; finished claims past retention) without
-- scanning the rest.
ALTER TABLE orders ADD COLUMN payment_id TEXT;
ALTER TABLE orders ADD COLUMN paid_ms INTEGER;
CREATE INDEX IF NOT EXISTS orders_payment_due ON orders (expires_ms) WHERE status = 'PENDING_PAYMENT';
CREATE INDEX IF NOT EXISTS idempotency_in_progress ON idempotency_keys (claimed_ms) WHERE state = 'in-progress';
CREATE INDEX IF NOT EXISTS idempotency_finished ON idempotency_keys (updated_ms) WHERE state IN ('completed', 'failed');
