-- Stock reservations that must be released but whose release call has not succeeded yet.
-- Guarantees: a reservation that the order component gave up on (the order write failed, or the
-- order was cancelled) is recorded here before or independently of the release call, so if that
-- call fails (or the instance dies) the compensator finds it and retries the idempotent release
-- until `released_ms` is set. A reservation id is never reused for another order: the
-- idempotency claim moves to a new attempt (and so a new reservation id) first.
CREATE TABLE IF NOT EXISTS pending_releases (
    reservation_id TEXT    NOT NULL PRIMARY KEY,
    order_id       TEXT,
    reason         TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    released_ms    INTEGER
);

CREATE INDEX IF NOT EXISTS pending_releases_open ON pending_releases (released_ms, created_ms);
