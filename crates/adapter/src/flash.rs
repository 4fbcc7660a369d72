//! Where the stock context keeps flash sales in Redis: the key layout its scripts use, shared
//! with the compensator's reconciliation (which reads the sales and re-appends lost order
//! requests). Ids are restricted to `A-Z a-z 0-9 - _ . :` (sale ids by
//! `shop_domain::flash::SaleId`, ticket ids are `tkt_` and hex), so they are safe inside keys.

pub const SALE_PREFIX: &str = "stock:flash:sale:";
pub const TICKET_PREFIX: &str = "stock:flash:ticket:";
/// SET of every flash sale id.
pub const SALES: &str = "stock:flash:sales";
/// ZSET of the sales not closed yet, scored by ends_at (ms): the stock sweep closes them.
pub const SALE_ENDS: &str = "stock:flash:ends";

/// Hash: sku, price, currency, quantity, per_user_limit, starts_at, ends_at (ms), remaining,
/// sold, created_at.
pub fn sale(id: &str) -> String {
    format!("{SALE_PREFIX}{id}")
}

/// Hash: customer "\n" Idempotency-Key -> ticket id.
pub fn sale_keys(id: &str) -> String {
    format!("{SALE_PREFIX}{id}:keys")
}

/// Hash: customer -> units taken (tickets not FAILED).
pub fn sale_buyers(id: &str) -> String {
    format!("{SALE_PREFIX}{id}:buyers")
}

/// ZSET of the sale's PENDING ticket ids scored by creation time (ms; the reconciliation
/// moves a re-appended ticket's score to the time of its re-append).
pub fn sale_pending(id: &str) -> String {
    format!("{SALE_PREFIX}{id}:pending")
}

/// Hash: sale, customer, status, reservation_id, created_at, message_id, request (the
/// FlashOrderRequested envelope as appended), reappended, order_id or reason.
pub fn ticket(id: &str) -> String {
    format!("{TICKET_PREFIX}{id}")
}
