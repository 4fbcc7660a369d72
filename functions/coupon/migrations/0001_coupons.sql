-- The coupon context: the coupons an admin defines and their redemptions (TCC).
--
-- Guarantees:
-- * One redemption per (coupon, redemption id): an order redeems a coupon at most once, and a
--   retried try finds the first one.
-- * Capacity: `coupons.holding` counts the redemptions that hold one (HELD or CONFIRMED); a try
--   takes one with a conditional UPDATE (`holding < max_redemptions`) in the transaction that
--   inserts the hold, and a cancel of a held one gives it back in its own. Per customer, the
--   holding redemptions are counted through an index in the try's transaction. Writers are
--   serialised (BEGIN IMMEDIATE), so concurrent tries never take more than the capacity.
-- * A cancel that arrives before its try is a row too (status CANCELLED, no customer): the late
--   try finds it and is refused, so no hold is left behind that nobody will cancel.
CREATE TABLE IF NOT EXISTS coupons (
    code            TEXT PRIMARY KEY,
    percent_off     INTEGER,
    amount_off      INTEGER,
    currency        TEXT NOT NULL,
    min_subtotal    INTEGER,
    max_redemptions INTEGER,
    per_customer    INTEGER NOT NULL,
    starts_at_ms    INTEGER,
    ends_at_ms      INTEGER,
    holding         INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    CHECK ((percent_off IS NULL) <> (amount_off IS NULL))
);

CREATE TABLE IF NOT EXISTS redemptions (
    code          TEXT NOT NULL,
    redemption_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    user_id       TEXT,
    subtotal      INTEGER,
    currency      TEXT,
    discount      INTEGER,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (code, redemption_id)
);

-- Per customer capacity, and the usage counts of a coupon by status.
CREATE INDEX IF NOT EXISTS redemptions_by_customer ON redemptions (code, user_id, status);
