//! The report of a run: JSON for scripts (`--json`), text for people.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::flash::FlashOutcome;
use crate::orders::OrdersOutcome;
use crate::stats::{self, Bucket, Latency, Sample};
use crate::Ctx;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `orders` or `flash`.
    pub mode: String,
    pub base: String,
    pub concurrency: usize,
    /// Distinct customers the requests came from.
    pub customers: usize,
    /// The measured requests: order creations, or purchases (ticket polls are not).
    pub requests: u64,
    pub duration_s: f64,
    pub requests_per_s: f64,
    pub latency_ms: Latency,
    /// Requests per status; `error` for no answer.
    pub status: BTreeMap<String, u64>,
    /// The first answer of each status other than 2xx (truncated), to tell why.
    pub first_answers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders: Option<OrdersOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash: Option<FlashOutcome>,
    /// `GET /api/products/{sku}` after the run (its stock levels).
    pub product: Option<Value>,
    /// Latency by start time, as plotted.
    pub timeline: Vec<Bucket>,
}

impl Report {
    /// The figures of `answers` (each sample with its answer's text), measured from `began`
    /// (after the setup: minting tokens, creating the product or sale) to now.
    pub(crate) fn new(
        mode: &str,
        ctx: &Ctx,
        answers: &[(Sample, String)],
        began: Instant,
        customers: usize,
    ) -> Report {
        let span = began.elapsed();
        // The timeline starts with the measured requests, not with the setup.
        let offset = began.saturating_duration_since(ctx.start);
        let samples: Vec<Sample> = answers
            .iter()
            .map(|(s, _)| Sample {
                at: s.at.saturating_sub(offset),
                ..*s
            })
            .collect();
        let mut first_answers = BTreeMap::new();
        for (s, text) in answers {
            if !s.status.is_some_and(|c| (200..300).contains(&c)) {
                let key = s
                    .status
                    .map_or_else(|| stats::NO_ANSWER.to_owned(), |c| c.to_string());
                first_answers
                    .entry(key)
                    .or_insert_with(|| text.chars().take(300).collect());
            }
        }
        let secs = span.as_secs_f64();
        Report {
            mode: mode.to_owned(),
            base: ctx.http.base().to_owned(),
            concurrency: ctx.concurrency,
            customers,
            requests: samples.len() as u64,
            duration_s: secs,
            requests_per_s: if secs > 0.0 {
                samples.len() as f64 / secs
            } else {
                0.0
            },
            latency_ms: stats::latency(&samples),
            status: stats::status_counts(&samples),
            first_answers,
            orders: None,
            flash: None,
            product: None,
            timeline: stats::timeline(&samples, stats::bucket_width(span)),
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "{} against {}: {} requests from {} customers, {} at once, in {:.2} s",
            self.mode, self.base, self.requests, self.customers, self.concurrency, self.duration_s
        );
        let _ = writeln!(out, "  throughput  {:.1} requests/s", self.requests_per_s);
        let _ = writeln!(
            out,
            "  latency     p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.p50, l.p95, l.p99, l.max
        );
        let counts: Vec<String> = self
            .status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "  status      {}", counts.join(", "));
        for (status, text) in &self.first_answers {
            let _ = writeln!(out, "  first {status}: {text}");
        }
        if let Some(o) = &self.orders {
            let _ = writeln!(
                out,
                "  orders      {} created (201) of {}",
                o.created, o.sku
            );
        }
        if let Some(f) = &self.flash {
            f.write_text(&mut out);
        }
        if let Some(p) = &self.product {
            let _ = writeln!(
                out,
                "  stock       {}: available {}, reserved {}, sold {}",
                p["sku"].as_str().unwrap_or("?"),
                p["available"],
                p["reserved"],
                p["sold"]
            );
        }
        out
    }
}
