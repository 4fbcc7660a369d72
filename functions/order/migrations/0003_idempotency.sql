-- Idempotency-Key claims of POST /api/orders.
-- Guarantees: a key is claimed by exactly one request at a time (the PRIMARY KEY, written inside a
-- BEGIN IMMEDIATE transaction that first reads the row); the claim stores the fingerprint of the
-- request, so the key can never be reused for a different body; once `completed` it holds the
-- response (status and body) that every retry gets back. `attempt` picks the stock reservation
-- id (derived from key and attempt): a crashed holder's claim is retaken with the same attempt
-- after `claimed_ms` is older than the lease, so the retry reuses the same reservation instead of
-- deducting again; a `failed` claim (its reservation was released) is retried with attempt + 1.
-- `claim_token` identifies the current holder, so a holder whose claim was retaken cannot
-- complete it.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    idem_key        TEXT    NOT NULL PRIMARY KEY,
    fingerprint     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('in-progress', 'completed', 'failed')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT    NOT NULL,
    claimed_ms      INTEGER NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    order_id        TEXT,
    updated_ms      INTEGER NOT NULL
);
