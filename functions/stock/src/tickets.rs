//! The order context's answer to a flash ticket (the stock receiver applies it): the ticket
//! becomes ORDERED with its order id, or FAILED with the reason, its unit back in the sale
//! (ticket.lua, one atomic step, idempotent: only a PENDING ticket changes).

use shop_domain::flash::{FlashOrderPlaced, FlashOrderRefused, TicketStatus};

use crate::redis::{keys, Store, TICKET};
use crate::settle::RETENTION_MS;

/// `FlashOrderPlaced`: the ticket is ORDERED with its order id.
pub fn placed(m: &FlashOrderPlaced) -> anyhow::Result<()> {
    let store = Store::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    settle(
        &store,
        &m.ticket_id,
        &m.sale_id,
        TicketStatus::Ordered,
        &m.order_id,
    )
    .map(drop)
}

/// `FlashOrderRefused`: the ticket is FAILED with the reason, its unit back in the sale.
pub fn refused(m: &FlashOrderRefused) -> anyhow::Result<()> {
    let store = Store::open().map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let (status, why) = (TicketStatus::Failed, m.reason.as_str());
    settle(&store, &m.ticket_id, &m.sale_id, status, why).map(drop)
}

/// Runs ticket.lua: `status` (ORDERED or FAILED) with `detail` (the order id or the reason).
pub fn settle(
    store: &Store,
    ticket: &str,
    sale: &str,
    status: TicketStatus,
    detail: &str,
) -> anyhow::Result<Vec<String>> {
    let tkey = keys::ticket(ticket);
    let rid = store
        .hmget(&tkey, &["reservation_id"])
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?
        .pop()
        .flatten()
        .unwrap_or_default();
    let retention = RETENTION_MS.to_string();
    store
        .run(
            &TICKET,
            &[
                &tkey,
                &keys::sale_pending(sale),
                &keys::reservation(&rid),
                keys::EXPIRIES,
                &keys::sale(sale),
                &keys::sale_buyers(sale),
            ],
            &[
                status.as_str(),
                detail,
                ticket,
                &retention,
                TicketStatus::Pending.as_str(),
                TicketStatus::Failed.as_str(),
                keys::PRODUCT_PREFIX,
            ],
        )
        .map_err(|p| anyhow::anyhow!("{}", p.detail))
}
