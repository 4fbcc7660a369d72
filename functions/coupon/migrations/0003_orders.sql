-- The coupon context as a receiver of the order context's messages (`coupon-events`).
--
-- Guarantees:
-- * `redemptions.ordered_ms`: when the order a hold was tried for was seen to exist (its
--   `OrderCreated`, or any later message of it). A HELD redemption without it, older than the
--   hold timeout, had its order never written (a crash or a failed write between the try and
--   the order): the sweep cancels it through the TCC table, so its capacity comes back.
-- * The inbox: a message's effect and its inbox row are one transaction (shared layout, see
--   crates/adapter/sql/inbox.sql).
ALTER TABLE redemptions ADD COLUMN ordered_ms INTEGER;

-- The sweep's scan: held redemptions by age.
CREATE INDEX IF NOT EXISTS redemptions_by_status_age ON redemptions (status, created_ms);
