//! Coupons and their redemptions (`coupons`, `redemptions`): domain values in, domain values
//! out. Every TCC step is one `BEGIN IMMEDIATE` transaction that reads the redemption, decides
//! with the domain's table ([`RedemptionStatus::on`]) and writes the outcome; statuses are bound
//! from [`RedemptionStatus::as_str`], never spelled in SQL.

use shop_adapter::sqlite::{
    changes, col_i64, col_opt_i64, col_opt_str, col_str, int, int_or_null, text, text_or_null, Tx,
};
use shop_domain::coupon::{
    Coupon, CouponRefused, Discount, Held, RawCoupon, Redemption, RedemptionAction, RedemptionId,
    RedemptionRefused, RedemptionStatus, RedemptionStep,
};
use shop_domain::new_order::{CouponCode, UserId};
use shop_domain::{Currency, Money};
use spin_sdk::sqlite::{Connection, RowResult, Value};

/// How often a coupon is held and used right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub held: i64,
    pub confirmed: i64,
}

/// A try, decided.
pub enum Tried {
    /// Held now.
    Held(Redemption),
    /// The same try again: what the first one decided.
    Replay(Redemption),
    /// The redemption id was tried for another customer or subtotal.
    Reused,
    /// The coupon cannot be used for this order.
    Refused(CouponRefused),
    /// The TCC table refuses it (cancelled before this try arrived).
    Late(RedemptionRefused),
    UnknownCoupon,
}

/// A confirm or cancel, decided.
pub enum Settled {
    Changed(Redemption),
    Unchanged(Redemption),
    Refused(RedemptionRefused),
    UnknownCoupon,
}

/// Creates or replaces `coupon`; true when it is new.
pub fn put(conn: &Connection, coupon: &Coupon, now: i64) -> anyhow::Result<bool> {
    let tx = Tx::begin(conn)?;
    let existed = exists(conn, &coupon.code)?;
    let (percent, amount) = match coupon.discount {
        Discount::Percent(p) => (Some(i64::from(p)), None),
        Discount::Amount(m) => (None, Some(m.minor())),
    };
    conn.execute(
        "INSERT INTO coupons (code, percent_off, amount_off, currency, min_subtotal,
                              max_redemptions, per_customer, starts_at_ms, ends_at_ms,
                              created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (code) DO UPDATE SET
             percent_off = excluded.percent_off, amount_off = excluded.amount_off,
             currency = excluded.currency, min_subtotal = excluded.min_subtotal,
             max_redemptions = excluded.max_redemptions, per_customer = excluded.per_customer,
             starts_at_ms = excluded.starts_at_ms, ends_at_ms = excluded.ends_at_ms,
             updated_ms = excluded.updated_ms",
        &[
            text(coupon.code.as_str()),
            int_or_null(percent),
            int_or_null(amount),
            text(coupon.currency.as_str()),
            int_or_null(coupon.min_subtotal.map(|m| m.minor())),
            int_or_null(coupon.max_redemptions.map(i64::from)),
            int(i64::from(coupon.per_customer)),
            int_or_null(coupon.starts_at_ms),
            int_or_null(coupon.ends_at_ms),
            int(now),
            int(now),
        ],
    )?;
    tx.commit()?;
    Ok(!existed)
}

/// Whether there is a coupon `code` (whatever its rules).
fn exists(conn: &Connection, code: &CouponCode) -> anyhow::Result<bool> {
    let rows = conn.execute(
        "SELECT 1 FROM coupons WHERE code = ?",
        &[text(code.as_str())],
    )?;
    Ok(!rows.rows.is_empty())
}

/// The coupon `code`, if there is one.
pub fn load(conn: &Connection, code: &CouponCode) -> anyhow::Result<Option<Coupon>> {
    let rows = conn.execute(
        "SELECT percent_off, amount_off, currency, min_subtotal, max_redemptions, per_customer,
                starts_at_ms, ends_at_ms
         FROM coupons WHERE code = ?",
        &[text(code.as_str())],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let raw = RawCoupon {
        percent_off: col_opt_i64(row, 0),
        amount_off: col_opt_i64(row, 1),
        currency: col_str(row, 2),
        min_subtotal: col_opt_i64(row, 3),
        max_redemptions: col_opt_i64(row, 4),
        per_customer: col_opt_i64(row, 5),
        starts_at_ms: col_opt_i64(row, 6),
        ends_at_ms: col_opt_i64(row, 7),
    };
    // Stored only after Coupon::parse accepted it.
    Coupon::parse(code.clone(), raw)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("stored coupon {} is invalid: {e}", code.as_str()))
}

/// How often `code` is held and confirmed.
pub fn usage(conn: &Connection, code: &CouponCode) -> anyhow::Result<Usage> {
    let rows = conn.execute(
        "SELECT COALESCE(SUM(status = ?), 0), COALESCE(SUM(status = ?), 0)
         FROM redemptions WHERE code = ?",
        &[
            text(RedemptionStatus::Held.as_str()),
            text(RedemptionStatus::Confirmed.as_str()),
            text(code.as_str()),
        ],
    )?;
    Ok(rows.rows.first().map_or(Usage::default(), |r| Usage {
        held: col_i64(r, 0),
        confirmed: col_i64(r, 1),
    }))
}

/// The redemption `id` of `code`, if there is one.
pub fn redemption(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
) -> anyhow::Result<Option<Redemption>> {
    let rows = conn.execute(
        "SELECT status, user_id, subtotal, currency, discount
         FROM redemptions WHERE code = ? AND redemption_id = ?",
        &[text(code.as_str()), text(id.as_str())],
    )?;
    rows.rows
        .first()
        .map(|row| from_row(code, id, row))
        .transpose()
}

fn from_row(code: &CouponCode, id: &RedemptionId, row: &RowResult) -> anyhow::Result<Redemption> {
    let status = RedemptionStatus::parse(&col_str(row, 0))
        .ok_or_else(|| anyhow::anyhow!("redemption {} has an unknown status", id.as_str()))?;
    let held = match col_opt_str(row, 1) {
        None => None,
        Some(user) => {
            let currency = Currency::parse(&col_str(row, 3))?;
            Some(Held {
                user: UserId::parse(&user).map_err(anyhow::Error::msg)?,
                subtotal: Money::new(col_i64(row, 2), currency)?,
                discount: Money::new(col_i64(row, 4), currency)?,
            })
        }
    };
    Ok(Redemption {
        code: code.clone(),
        id: id.clone(),
        status,
        held,
    })
}

/// Try: hold one redemption of `code` for order `id` of `user` (subtotal `subtotal`), if the
/// coupon allows it now and has capacity left, in one transaction.
pub fn try_hold(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    user: &UserId,
    subtotal: Money,
    now: i64,
) -> anyhow::Result<Tried> {
    let tx = Tx::begin(conn)?;
    let existing = redemption(conn, code, id)?;
    match (
        RedemptionStatus::on(existing.as_ref().map(|r| r.status), RedemptionAction::Try),
        existing,
    ) {
        (Err(refused), _) => return tx.end(Tried::Late(refused)),
        (Ok(RedemptionStep::Unchanged), Some(first)) => {
            return tx.end(match first.is_retry_of(user, subtotal) {
                true => Tried::Replay(first),
                false => Tried::Reused,
            });
        }
        // `Unchanged` always has a record (the table answers it only from a status).
        (Ok(_), _) => {}
    }
    let Some(coupon) = load(conn, code)? else {
        return tx.end(Tried::UnknownCoupon);
    };
    let discount = match coupon.discount_for(subtotal, now) {
        Ok(d) => d,
        Err(refused) => return tx.end(Tried::Refused(refused)),
    };
    if let Some(refused) = take_capacity(conn, &coupon, user)? {
        return tx.end(Tried::Refused(refused));
    }
    let held = Held {
        user: user.clone(),
        subtotal,
        discount,
    };
    insert(conn, code, id, RedemptionStatus::Held, Some(&held), now)?;
    tx.commit()?;
    Ok(Tried::Held(Redemption {
        code: code.clone(),
        id: id.clone(),
        status: RedemptionStatus::Held,
        held: Some(held),
    }))
}

/// Takes one unit of the coupon's capacity for `user`, or says which limit refuses it (read
/// and written inside the try's transaction).
fn take_capacity(
    conn: &Connection,
    coupon: &Coupon,
    user: &UserId,
) -> anyhow::Result<Option<CouponRefused>> {
    let rows = conn.execute(
        "SELECT COUNT(*) FROM redemptions WHERE code = ? AND user_id = ? AND status <> ?",
        &[
            text(coupon.code.as_str()),
            text(user.as_str()),
            text(RedemptionStatus::Cancelled.as_str()),
        ],
    )?;
    let mine = rows.rows.first().map_or(0, |r| col_i64(r, 0));
    if mine >= i64::from(coupon.per_customer) {
        return Ok(Some(CouponRefused::CustomerLimit));
    }
    conn.execute(
        "UPDATE coupons SET holding = holding + 1
         WHERE code = ? AND (max_redemptions IS NULL OR holding < max_redemptions)",
        &[text(coupon.code.as_str())],
    )?;
    Ok((changes(conn)? != 1).then_some(CouponRefused::SoldOut))
}

/// Confirm or cancel the redemption `id` of `code`, in one transaction. A cancel of a
/// redemption never tried is recorded, so its try is refused if it comes later.
pub fn settle(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    action: RedemptionAction,
    now: i64,
) -> anyhow::Result<Settled> {
    let tx = Tx::begin(conn)?;
    let settled = settle_in(conn, code, id, action, now)?;
    tx.commit()?;
    Ok(settled)
}

/// [`settle`] inside the caller's transaction (a receiver's, with its inbox row).
pub fn settle_in(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    action: RedemptionAction,
    now: i64,
) -> anyhow::Result<Settled> {
    if !exists(conn, code)? {
        return Ok(Settled::UnknownCoupon);
    }
    let existing = redemption(conn, code, id)?;
    let status = existing.as_ref().map(|r| r.status);
    let (to, held) = match (RedemptionStatus::on(status, action), existing) {
        (Err(refused), _) => return Ok(Settled::Refused(refused)),
        (Ok(RedemptionStep::Unchanged), Some(current)) => return Ok(Settled::Unchanged(current)),
        // The table answers `Unchanged` only from a status, so there is a record.
        (Ok(RedemptionStep::Unchanged), None) => {
            anyhow::bail!("redemption {} unchanged without a record", id.as_str())
        }
        (Ok(RedemptionStep::To(to)), found) => (to, found.and_then(|r| r.held)),
    };
    if held.is_some() && !to.holds_capacity() {
        conn.execute(
            "UPDATE coupons SET holding = holding - 1 WHERE code = ?",
            &[text(code.as_str())],
        )?;
    }
    match held {
        Some(_) => {
            conn.execute(
                "UPDATE redemptions SET status = ?, updated_ms = ?
                 WHERE code = ? AND redemption_id = ?",
                &[
                    text(to.as_str()),
                    int(now),
                    text(code.as_str()),
                    text(id.as_str()),
                ],
            )?;
        }
        None => insert(conn, code, id, to, None, now)?,
    }
    Ok(Settled::Changed(Redemption {
        code: code.clone(),
        id: id.clone(),
        status: to,
        held,
    }))
}

/// Records that the order of redemption `id` exists (the first time only), inside the caller's
/// transaction: the sweep leaves its hold to the order's own messages.
pub fn mark_ordered(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    now: i64,
) -> anyhow::Result<()> {
    conn.execute(
        "UPDATE redemptions SET ordered_ms = ?
         WHERE code = ? AND redemption_id = ? AND ordered_ms IS NULL",
        &[int(now), text(code.as_str()), text(id.as_str())],
    )?;
    Ok(())
}

/// Up to `limit` held redemptions tried before `before_ms` whose order was never seen, oldest
/// first: the sweep's candidates.
pub fn orphans(
    conn: &Connection,
    before_ms: i64,
    limit: i64,
) -> anyhow::Result<Vec<(CouponCode, RedemptionId)>> {
    let rows = conn.execute(
        "SELECT code, redemption_id FROM redemptions
         WHERE status = ? AND ordered_ms IS NULL AND created_ms < ?
         ORDER BY created_ms LIMIT ?",
        &[
            text(RedemptionStatus::Held.as_str()),
            int(before_ms),
            int(limit),
        ],
    )?;
    let mut found = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let code = CouponCode::parse(&col_str(row, 0)).map_err(anyhow::Error::msg)?;
        let id = RedemptionId::parse(&col_str(row, 1)).map_err(anyhow::Error::msg)?;
        found.push((code, id));
    }
    Ok(found)
}

/// Cancels redemption `id` if it is still an orphan (held, its order unseen, tried before
/// `before_ms`), in one transaction that checks and cancels: a sweep overlapping another, or an
/// `OrderCreated` applied meanwhile, makes it change nothing. Whether it cancelled.
pub fn cancel_orphan(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    before_ms: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let tx = Tx::begin(conn)?;
    let rows = conn.execute(
        "SELECT 1 FROM redemptions WHERE code = ? AND redemption_id = ? AND status = ?
         AND ordered_ms IS NULL AND created_ms < ?",
        &[
            text(code.as_str()),
            text(id.as_str()),
            text(RedemptionStatus::Held.as_str()),
            int(before_ms),
        ],
    )?;
    if rows.rows.is_empty() {
        return tx.end(false);
    }
    let settled = settle_in(conn, code, id, RedemptionAction::Cancel, now)?;
    tx.commit()?;
    Ok(matches!(settled, Settled::Changed(_)))
}

fn insert(
    conn: &Connection,
    code: &CouponCode,
    id: &RedemptionId,
    status: RedemptionStatus,
    held: Option<&Held>,
    now: i64,
) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO redemptions (code, redemption_id, status, user_id, subtotal, currency,
                                  discount, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            text(code.as_str()),
            text(id.as_str()),
            text(status.as_str()),
            text_or_null(held.map(|h| h.user.as_str())),
            int_or_null(held.map(|h| h.subtotal.minor())),
            held.map_or(Value::Null, |h| text(h.subtotal.currency().as_str())),
            int_or_null(held.map(|h| h.discount.minor())),
            int(now),
            int(now),
        ],
    )?;
    Ok(())
}
