-- Idempotency-Key claims are scoped to the customer who sent the key: the primary key becomes
-- (user_id, idem_key), so two customers' equal keys are two claims (one cannot learn that the
-- other used a key, nor block the other's order by claiming a predictable key first).
-- Guarantees: runs in the migration's one transaction (all or nothing); every existing row is
-- kept with its state, attempt and stored response; a row whose order exists takes the order's
-- customer as owner (its replays keep working for that customer); a row without an order
-- (failed, or in progress from an old version) gets the owner '' (unscoped: no user id is
-- empty), which keeps the reservation ids it was made with, so the sweep still releases the
-- right one. The sweep's partial indexes are rebuilt on the new table. From this version on,
-- `orders.idempotency_key` (UNIQUE) holds `<user_id>` newline `<key>` (a key is visible ASCII
-- and holds no newline), so it stays unique per customer's key and never equals an older row's
-- plain key.
CREATE TABLE IF NOT EXISTS idempotency_claims (
    user_id         TEXT    NOT NULL,
    idem_key        TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('in-progress', 'completed', 'failed')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT    NOT NULL,
    claimed_ms      INTEGER NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    order_id        TEXT,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
INSERT INTO idempotency_claims (user_id, idem_key, fingerprint, state, attempt, claim_token,
    claimed_ms, response_status, response_body, order_id, updated_ms)
SELECT COALESCE((SELECT o.user_id FROM orders o WHERE o.order_id = k.order_id), ''),
    k.idem_key, k.fingerprint, k.state, k.attempt, k.claim_token, k.claimed_ms,
    k.response_status, k.response_body, k.order_id, k.updated_ms
FROM idempotency_keys k;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_claims RENAME TO idempotency_keys;
CREATE INDEX IF NOT EXISTS idempotency_in_progress ON idempotency_keys (claimed_ms) WHERE state = 'in-progress';
CREATE INDEX IF NOT EXISTS idempotency_finished ON idempotency_keys (updated_ms) WHERE state IN ('completed', 'failed')
