//! Flash mode (issue 15's API): optionally create the sale, then `--buyers` customers each
//! `POST /api/flash-sales/{id}/purchase` (`--attempts` times, fresh Idempotency-Keys); every
//! accepted ticket (202 `{ticket_id, status}`) is polled at
//! `GET /api/flash-sales/{id}/tickets/{ticket_id}` until ORDERED or FAILED, or the poll timeout;
//! then the sale (`{remaining, sold, ...}`) and its product are read back.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shop_domain::timestamp::Timestamp;

use crate::cli::FlashArgs;
use crate::report::Report;
use crate::stats;
use crate::Ctx;

/// What flash mode adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct FlashOutcome {
    pub sale_id: String,
    pub sku: Option<String>,
    /// The sale's quantity and per-user limit, as `GET /api/flash-sales/{id}` says.
    pub quantity: Option<u64>,
    pub per_user_limit: Option<u64>,
    /// The sale's counters after the run (and the tickets resolved).
    pub sold: Option<i64>,
    pub remaining: Option<i64>,
    /// Purchases answered with a ticket (2xx).
    pub accepted: u64,
    pub ordered: u64,
    pub failed: u64,
    /// Tickets still PENDING (or unreadable) when the poll timeout ran out.
    pub pending: u64,
    pub failed_reasons: BTreeMap<String, u64>,
    /// Buyers with at least one ORDERED ticket; with two or more; with more than the limit.
    pub buyers_with_units: u64,
    pub buyers_with_two_or_more: u64,
    pub buyers_over_limit: Option<u64>,
    /// More units ordered or sold than the sale had, or a negative remainder.
    pub oversold: bool,
    pub polls: u64,
    pub poll_duration_s: f64,
    /// `GET /api/flash-sales/{id}` after the run, as it came.
    pub sale: Option<Value>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum TicketStatus {
    Pending,
    Ordered,
    Failed,
}

#[derive(Deserialize)]
struct TicketView {
    status: TicketStatus,
    #[serde(default)]
    reason: Option<Value>,
}

#[derive(Deserialize)]
struct Accepted {
    ticket_id: String,
}

/// One accepted purchase: its buyer (index into the customers) and ticket.
struct Ticket {
    buyer: usize,
    id: String,
}

/// Every buyer opens the sale's page signed in (untimed): `GET /api/flash-sales/{id}` with
/// their token, so the app has seen and verified every token before the sale.
async fn sign_in(ctx: &Arc<Ctx>, sale_path: &str, bearers: &Arc<Vec<String>>) -> Result<()> {
    let answers = ctx
        .drive(bearers.len() as u64, "sign-ins", |i| {
            let (ctx, bearers, path) = (ctx.clone(), bearers.clone(), sale_path.to_owned());
            async move {
                let headers = [("authorization", bearers[i as usize].as_str())];
                let reply = ctx.http.send(Method::GET, &path, &headers, None).await?;
                let signed_in = serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|v| v["you"]["customer"].is_string());
                Ok(reply.status == Some(200) && signed_in)
            }
        })
        .await?;
    let refused = answers.iter().filter(|ok| !**ok).count();
    anyhow::ensure!(
        refused == 0,
        "{refused} of {} buyers' sale pages (GET {sale_path} signed in) did not answer 200 with `you`",
        answers.len()
    );
    Ok(())
}

/// Where a ticket ended: its last status (`None`: never readable) and why it failed.
struct Resolved {
    buyer: usize,
    status: Option<TicketStatus>,
    reason: Option<String>,
    polls: u64,
}

pub(crate) async fn run(ctx: Arc<Ctx>, args: &FlashArgs) -> Result<Report> {
    let sale_path = format!("/api/flash-sales/{}", args.sale);
    let sku = args
        .sku
        .clone()
        .unwrap_or_else(|| format!("FLASH-{}", args.sale));
    ctx.setup_product(&sku, &args.product).await?;
    if args.create {
        ctx.admin_put(&sale_path, &sale_body(args, &sku)?).await?;
    }
    let users = ctx.customers(args.buyers.max(1));
    let bearers = Arc::new(ctx.minter.bearers(&users)?);
    if args.signed_in {
        sign_in(&ctx, &sale_path, &bearers).await?;
    }
    let began = Instant::now();
    let total = args.buyers.max(1) * args.attempts.max(1);
    let answers = ctx
        .drive(total, "purchases", |i| {
            let (ctx, bearers, path) = (
                ctx.clone(),
                bearers.clone(),
                format!("{sale_path}/purchase"),
            );
            async move {
                // Every buyer's first attempt comes before anyone's second.
                let buyer = (i % bearers.len() as u64) as usize;
                let key = ctx.idempotency_key("purchase", i);
                let headers = [
                    ("authorization", bearers[buyer].as_str()),
                    ("idempotency-key", &key),
                ];
                let reply = ctx.http.send(Method::POST, &path, &headers, None).await?;
                let ticket = serde_json::from_slice::<Accepted>(&reply.body)
                    .ok()
                    .filter(|_| reply.status.is_some_and(|s| (200..300).contains(&s)))
                    .map(|a| Ticket {
                        buyer,
                        id: a.ticket_id,
                    });
                Ok(((ctx.sample(&reply), reply.text()), ticket))
            }
        })
        .await?;
    let (answers, tickets): (Vec<_>, Vec<_>) = answers.into_iter().unzip();
    let tickets: Vec<Ticket> = tickets.into_iter().flatten().collect();
    let mut report = Report::new("flash", &ctx, &answers, began, users.len());

    let poll_began = Instant::now();
    let resolved = resolve_all(&ctx, &sale_path, &bearers, tickets, args.poll_timeout_secs).await?;
    let sale = ctx.get_json(&sale_path).await.ok();
    let sku = sale
        .as_ref()
        .and_then(|s| s["sku"].as_str().map(str::to_owned))
        .unwrap_or(sku);
    report.product = ctx.get_json(&format!("/api/products/{sku}")).await.ok();
    report.flash = Some(outcome(
        args,
        &users,
        sku,
        sale,
        &resolved,
        poll_began.elapsed(),
    ));
    Ok(report)
}

/// `PUT /api/flash-sales/{id}`'s body from the options: open from now + starts_in for lasts.
fn sale_body(args: &FlashArgs, sku: &str) -> Result<Value> {
    let now = devtools::unix_now() * 1000;
    let at = |secs: i64| -> Result<String> {
        Ok(Timestamp::from_millis(now + secs * 1000)
            .map_err(|e| anyhow::anyhow!("sale window: {e:?}"))?
            .to_rfc3339())
    };
    Ok(json!({
        "sku": sku, "price": args.price, "currency": args.product.currency,
        "quantity": args.quantity, "per_user_limit": args.per_user_limit,
        "starts_at": at(args.starts_in_secs)?,
        "ends_at": at(args.starts_in_secs + args.lasts_secs)?,
    }))
}

/// Polls every ticket (as its buyer) until it leaves PENDING or `timeout_secs` from now.
async fn resolve_all(
    ctx: &Arc<Ctx>,
    sale_path: &str,
    bearers: &Arc<Vec<String>>,
    tickets: Vec<Ticket>,
    timeout_secs: f64,
) -> Result<Vec<Resolved>> {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_secs);
    let tickets = Arc::new(tickets);
    ctx.drive(tickets.len() as u64, "tickets", |i| {
        let (ctx, bearers, tickets) = (ctx.clone(), bearers.clone(), tickets.clone());
        let sale_path = sale_path.to_owned();
        async move {
            let t = &tickets[i as usize];
            let path = format!("{sale_path}/tickets/{}", t.id);
            resolve(&ctx, &path, &bearers[t.buyer], t.buyer, deadline).await
        }
    })
    .await
}

async fn resolve(
    ctx: &Ctx,
    path: &str,
    bearer: &str,
    buyer: usize,
    deadline: Instant,
) -> Result<Resolved> {
    let mut wait = Duration::from_millis(20);
    let mut polls = 0;
    let mut last = None;
    loop {
        let reply = ctx
            .http
            .send(Method::GET, path, &[("authorization", bearer)], None)
            .await?;
        polls += 1;
        if let Some(view) = (reply.status == Some(200))
            .then(|| serde_json::from_slice::<TicketView>(&reply.body).ok())
            .flatten()
        {
            last = Some(view.status);
            if view.status != TicketStatus::Pending {
                let reason = view
                    .reason
                    .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned));
                return Ok(Resolved {
                    buyer,
                    status: last,
                    reason,
                    polls,
                });
            }
        }
        if Instant::now() >= deadline {
            return Ok(Resolved {
                buyer,
                status: last,
                reason: None,
                polls,
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    }
}

fn outcome(
    args: &FlashArgs,
    users: &[String],
    sku: String,
    sale: Option<Value>,
    resolved: &[Resolved],
    polling: Duration,
) -> FlashOutcome {
    let field = |name: &str| sale.as_ref().and_then(|s| s[name].as_i64());
    let quantity = field("quantity").and_then(|q| u64::try_from(q).ok());
    let per_user_limit = field("per_user_limit").and_then(|q| u64::try_from(q).ok());
    let (sold, remaining) = (field("sold"), field("remaining"));
    let ordered: Vec<&str> = resolved
        .iter()
        .filter(|r| r.status == Some(TicketStatus::Ordered))
        .map(|r| users[r.buyer].as_str())
        .collect();
    let units = stats::units_per_buyer(ordered.iter().copied());
    let mut failed_reasons = BTreeMap::new();
    for r in resolved
        .iter()
        .filter(|r| r.status == Some(TicketStatus::Failed))
    {
        let why = r.reason.clone().unwrap_or_else(|| "(no reason)".to_owned());
        *failed_reasons.entry(why).or_insert(0) += 1;
    }
    let failed = failed_reasons.values().sum();
    let cap = quantity.unwrap_or(args.quantity);
    let oversold = ordered.len() as u64 > cap
        || sold.is_some_and(|s| s > cap as i64)
        || remaining.is_some_and(|r| r < 0);
    FlashOutcome {
        sale_id: args.sale.clone(),
        sku: Some(sku),
        quantity,
        per_user_limit,
        sold,
        remaining,
        accepted: resolved.len() as u64,
        ordered: ordered.len() as u64,
        failed,
        pending: resolved.len() as u64 - ordered.len() as u64 - failed,
        failed_reasons,
        buyers_with_units: units.len() as u64,
        buyers_with_two_or_more: stats::buyers_over(&units, 1).len() as u64,
        buyers_over_limit: per_user_limit.map(|l| stats::buyers_over(&units, l).len() as u64),
        oversold,
        polls: resolved.iter().map(|r| r.polls).sum(),
        poll_duration_s: polling.as_secs_f64(),
        sale,
    }
}

impl FlashOutcome {
    pub(crate) fn write_text(&self, out: &mut String) {
        let show = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "  sale        {}: quantity {}, sold {}, remaining {}{}",
            self.sale_id,
            show(self.quantity.map(|q| q as i64)),
            show(self.sold),
            show(self.remaining),
            if self.oversold { "  OVERSOLD" } else { "" }
        );
        let _ = writeln!(
            out,
            "  tickets     {} accepted: {} ORDERED, {} FAILED, {} still PENDING (polled {} times in {:.1} s)",
            self.accepted, self.ordered, self.failed, self.pending, self.polls, self.poll_duration_s
        );
        for (why, n) in &self.failed_reasons {
            let _ = writeln!(out, "  failed      {n} x {why}");
        }
        let _ = writeln!(
            out,
            "  buyers      {} with a unit, {} with two or more{}",
            self.buyers_with_units,
            self.buyers_with_two_or_more,
            self.buyers_over_limit
                .map(|n| format!(", {n} over the per-user limit"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> FlashArgs {
        let argv = ["shop-load", "flash", "--sale", "s1"].iter().chain(extra);
        match crate::parse_args(argv).expect("valid arguments").mode {
            crate::Mode::Flash(f) => f,
            other => panic!("not flash: {other:?}"),
        }
    }

    fn ticket(buyer: usize, status: Option<TicketStatus>, reason: Option<&str>) -> Resolved {
        let reason = reason.map(str::to_owned);
        Resolved {
            buyer,
            status,
            reason,
            polls: 1,
        }
    }

    #[test]
    fn counts_units_per_buyer_and_flags_an_oversold_sale() {
        let users: Vec<String> = (0..4).map(|i| format!("b{i}")).collect();
        let sale =
            json!({"sku": "F-1", "quantity": 2, "per_user_limit": 1, "sold": 0, "remaining": 0});
        let resolved = [
            ticket(0, Some(TicketStatus::Ordered), None),
            ticket(0, Some(TicketStatus::Ordered), None),
            ticket(1, Some(TicketStatus::Ordered), None),
            ticket(2, Some(TicketStatus::Failed), Some("expired")),
            ticket(3, Some(TicketStatus::Pending), None),
            ticket(3, None, None),
        ];
        let o = outcome(
            &args(&[]),
            &users,
            "F-1".into(),
            Some(sale),
            &resolved,
            Duration::ZERO,
        );
        assert_eq!((o.accepted, o.ordered, o.failed, o.pending), (6, 3, 1, 2));
        assert_eq!(o.failed_reasons.get("expired"), Some(&1));
        assert_eq!((o.buyers_with_units, o.buyers_with_two_or_more), (2, 1));
        assert_eq!(o.buyers_over_limit, Some(1));
        assert!(o.oversold, "3 ORDERED tickets for 2 units");
    }

    #[test]
    fn a_sale_that_held_is_not_oversold() {
        let users = vec!["b0".to_owned(), "b1".to_owned()];
        let sale = json!({"quantity": 2, "per_user_limit": 2, "sold": 2, "remaining": 0});
        let resolved = [
            ticket(0, Some(TicketStatus::Ordered), None),
            ticket(0, Some(TicketStatus::Ordered), None),
        ];
        let o = outcome(
            &args(&[]),
            &users,
            "F-1".into(),
            Some(sale),
            &resolved,
            Duration::ZERO,
        );
        assert!(!o.oversold);
        assert_eq!(o.buyers_with_two_or_more, 1);
        assert_eq!(
            o.buyers_over_limit,
            Some(0),
            "two units are within a limit of two"
        );
        // Without the sale's answer, the requested quantity is the bound.
        let o = outcome(
            &args(&["--quantity", "1"]),
            &users,
            "F-1".into(),
            None,
            &resolved,
            Duration::ZERO,
        );
        assert!(o.oversold);
        assert_eq!(o.buyers_over_limit, None);
    }

    #[test]
    fn a_negative_remainder_is_oversold() {
        let sale = json!({"quantity": 5, "sold": 0, "remaining": -1});
        let o = outcome(
            &args(&[]),
            &[],
            "F-1".into(),
            Some(sale),
            &[],
            Duration::ZERO,
        );
        assert!(o.oversold);
    }
}
