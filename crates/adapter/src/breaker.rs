//! Circuit breakers shared in Redis by every instance: a sliding window of per-second outcome
//! buckets, an error-ratio and a slow-call-ratio threshold, a minimum number of calls, an open
//! duration, and half-open with exactly one probe granted by `SET NX PX`.
//!
//! A guarded call costs two round trips at most: admission rides on the rate limiter's script
//! ([`crate::ratelimit::Guard::breaker`], `lua/guard.lua`), and [`Breaker::record`] runs
//! `lua/breaker_record.lua` once the call's outcome is known. Open: 503 problem+json with
//! `Retry-After` at once, without calling downstream. [`within`] bounds the call itself: a
//! timed-out call counts as an error (and as slow).
//!
//! A breaker's settings come from one variable, e.g.
//! `"errors 50% over 10s, slow 50% over 5s above 1000ms, min 20, open 30s, timeout 3000ms"`
//! ([`Config::parse`]; every part optional, defaulting to that example).

// `Problem` is the one error a request ends with: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::Poll;

use spin_sdk::redis::Connection;

use crate::redis::Script;
use crate::Problem;

/// How both scripts read a breaker's window (a Lua library joined in front of each).
const WINDOW_LUA: &str = include_str!("../lua/breaker_window.lua");
static RECORD_LUA: LazyLock<String> =
    LazyLock::new(|| [WINDOW_LUA, include_str!("../lua/breaker_record.lua")].join("\n"));
static STATUS_LUA: LazyLock<String> =
    LazyLock::new(|| [WINDOW_LUA, include_str!("../lua/breaker_status.lua")].join("\n"));

fn record_script() -> Script {
    Script {
        name: "breaker_record",
        source: RECORD_LUA.as_str(),
    }
}

fn status_script() -> Script {
    Script {
        name: "breaker_status",
        source: STATUS_LUA.as_str(),
    }
}

/// The set of every breaker's name (for `GET /api/ops/breakers`).
pub const NAMES_KEY: &str = "breaker:names";
pub const STATE_PREFIX: &str = "breaker:state:";
pub const WINDOW_PREFIX: &str = "breaker:window:";
pub const PROBE_PREFIX: &str = "breaker:probe:";

/// A breaker's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `off`: no admission check and no recording (the benchmarks measure the breaker's cost
    /// this way); the timeout still bounds every call.
    pub enabled: bool,
    pub error_percent: u32,
    pub error_window_s: u32,
    pub slow_percent: u32,
    pub slow_window_s: u32,
    pub slow_call_ms: u64,
    pub min_calls: u32,
    pub open_ms: u64,
    /// How long a guarded call may take before it is abandoned (and counted as an error).
    pub timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            error_percent: 50,
            error_window_s: 10,
            slow_percent: 50,
            slow_window_s: 5,
            slow_call_ms: 1000,
            min_calls: 20,
            open_ms: 30_000,
            timeout_ms: 3000,
        }
    }
}

/// `"10s"` / `"1500ms"` as milliseconds.
fn duration_ms(word: &str) -> Option<u64> {
    let word = word.trim_end_matches(',');
    if let Some(ms) = word.strip_suffix("ms") {
        return ms.parse().ok();
    }
    word.strip_suffix('s')?
        .parse::<u64>()
        .ok()?
        .checked_mul(1000)
}

fn percent(word: &str) -> Option<u32> {
    word.trim_end_matches(',')
        .strip_suffix('%')?
        .parse()
        .ok()
        .filter(|p| *p <= 100)
}

impl Config {
    /// Phrases, in any order, each optional: `errors <p>% over <d>`, `slow <p>% over <d> above
    /// <d>`, `min <n>`, `open <d>`, `timeout <d>` (`<d>`: `10s` or `1500ms`), and `off` (no
    /// breaker, the timeout alone).
    pub fn parse(spec: &str) -> Result<Config, String> {
        let mut c = Config::default();
        let words: Vec<&str> = spec.split_whitespace().collect();
        let bad = |at: &str| {
            format!("{spec:?}: cannot read {at:?}; e.g. \"errors 50% over 10s, slow 50% over 5s above 1000ms, min 20, open 30s, timeout 3000ms\"")
        };
        let mut i = 0;
        let secs = |w: &str| {
            duration_ms(w)
                .map(|ms| (ms / 1000) as u32)
                .filter(|s| *s > 0)
        };
        while i < words.len() {
            let get = |k: usize| words.get(i + k).copied().unwrap_or("");
            let used = match get(0).trim_end_matches(',') {
                "errors" if get(2) == "over" => {
                    c.error_percent = percent(get(1)).ok_or_else(|| bad(get(1)))?;
                    c.error_window_s = secs(get(3)).ok_or_else(|| bad(get(3)))?;
                    4
                }
                "slow" if get(2) == "over" && get(4) == "above" => {
                    c.slow_percent = percent(get(1)).ok_or_else(|| bad(get(1)))?;
                    c.slow_window_s = secs(get(3)).ok_or_else(|| bad(get(3)))?;
                    c.slow_call_ms = duration_ms(get(5)).ok_or_else(|| bad(get(5)))?;
                    6
                }
                "min" => {
                    c.min_calls = get(1)
                        .trim_end_matches(',')
                        .parse()
                        .map_err(|_| bad(get(1)))?;
                    2
                }
                "open" => {
                    c.open_ms = duration_ms(get(1)).ok_or_else(|| bad(get(1)))?;
                    2
                }
                "off" => {
                    c.enabled = false;
                    1
                }
                "timeout" => {
                    c.timeout_ms = duration_ms(get(1))
                        .filter(|t| *t > 0)
                        .ok_or_else(|| bad(get(1)))?;
                    2
                }
                other => return Err(bad(other)),
            };
            i += used;
        }
        Ok(c)
    }

    /// A probe that never reports back (its instance died) frees the half-open slot after this.
    pub fn probe_ttl_ms(&self) -> u64 {
        self.timeout_ms + 2000
    }
}

/// One breaker, named after the call it guards (e.g. `order.stock-reserve`).
#[derive(Debug, Clone)]
pub struct Breaker {
    pub name: String,
    pub config: Config,
}

/// How a guarded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A 5xx, a transport error or a timeout: the downstream failed.
    Failure,
}

impl Breaker {
    /// The breaker `name` with the settings of variable `var`; a malformed value is a deployment
    /// mistake (500, logged).
    pub fn from_var(name: &str, var: &str) -> Result<Breaker, Problem> {
        let spec =
            crate::vars::get(var).map_err(|e| Problem::internal("read breaker variable", e))?;
        let config =
            Config::parse(&spec).map_err(|e| Problem::internal(&format!("variable {var}"), e))?;
        Ok(Breaker {
            name: name.to_owned(),
            config,
        })
    }

    /// The state hash and probe key `guard.lua` reads.
    pub fn admission_keys(&self) -> [String; 2] {
        [
            format!("{STATE_PREFIX}{}", self.name),
            format!("{PROBE_PREFIX}{}", self.name),
        ]
    }

    /// 503 for a request the open breaker refused.
    pub fn open_problem(&self, retry_after: &str) -> Problem {
        Problem::unavailable(format!(
            "{} is failing; this call is refused without trying it until the circuit closes",
            self.name
        ))
        .with("breaker", &self.name)
        .with_header("retry-after", retry_after)
    }

    /// Records one call's outcome (and its duration: slow calls count towards the slow ratio);
    /// `probe`: this call was the half-open probe. Best effort: a Redis error is logged, the
    /// call's own answer stands.
    pub fn record(&self, conn: &Connection, outcome: Outcome, elapsed_ms: u64, probe: bool) {
        let c = &self.config;
        if !c.enabled {
            return;
        }
        let keys = [
            format!("{STATE_PREFIX}{}", self.name),
            format!("{WINDOW_PREFIX}{}", self.name),
            format!("{PROBE_PREFIX}{}", self.name),
            NAMES_KEY.to_owned(),
        ];
        let args = [
            self.name.clone(),
            match outcome {
                Outcome::Success => "ok",
                Outcome::Failure => "error",
            }
            .to_owned(),
            u8::from(elapsed_ms >= c.slow_call_ms).to_string(),
            u8::from(probe).to_string(),
            c.error_window_s.to_string(),
            c.slow_window_s.to_string(),
            c.min_calls.to_string(),
            c.error_percent.to_string(),
            c.slow_percent.to_string(),
            c.open_ms.to_string(),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match crate::redis::run(conn, &record_script(), &keys, &args) {
            Ok(reply) if reply.get(1).map(String::as_str) == Some("1") => {
                eprintln!("breaker {}: now {}", self.name, reply[0]);
            }
            Ok(_) => {}
            Err(e) => eprintln!("breaker {}: could not record an outcome: {e}", self.name),
        }
    }
}

/// One breaker as `GET /api/ops/breakers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub name: String,
    /// `closed`, `open`, or `half_open` (open past its duration: the next call probes).
    pub state: String,
    /// When it may half-open (RFC 3339), if it was ever opened.
    pub open_until: Option<String>,
    pub error_window: WindowCounts,
    pub slow_window: WindowCounts,
    pub probe_in_flight: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowCounts {
    pub calls: u64,
    /// Errors (error window) or slow calls (slow window).
    pub failed: u64,
}

/// Every breaker's state and counts (`breaker_status.lua`).
pub fn statuses(conn: &Connection) -> anyhow::Result<Vec<Status>> {
    let reply = crate::redis::run(
        conn,
        &status_script(),
        &[NAMES_KEY],
        &[STATE_PREFIX, WINDOW_PREFIX, PROBE_PREFIX],
    )?;
    let num = |s: &String| s.parse::<u64>().unwrap_or(0);
    Ok(reply
        .chunks_exact(9)
        .map(|r| Status {
            name: r[0].clone(),
            state: r[1].clone(),
            open_until: r[2]
                .parse::<i64>()
                .ok()
                .and_then(|ms| shop_domain::timestamp::Timestamp::from_millis(ms).ok())
                .map(|t| t.to_rfc3339()),
            error_window: WindowCounts {
                calls: num(&r[3]),
                failed: num(&r[4]),
            },
            slow_window: WindowCounts {
                calls: num(&r[5]),
                failed: num(&r[6]),
            },
            probe_in_flight: r[7] == "1",
        })
        .collect())
}

/// Milliseconds on the monotonic clock (for a call's duration).
pub fn monotonic_ms() -> u64 {
    wasi::clocks::monotonic_clock::now() / 1_000_000
}

/// `fut`, or `None` once `timeout_ms` passed first. Races the call against a wasi clock
/// pollable in the guest, so it bounds a call the same way under every host, service chaining
/// (`*.spin.internal`, which Spin dispatches in-process without applying wasi:http's request
/// options) included.
pub async fn within<F: Future>(timeout_ms: u64, fut: F) -> Option<F::Output> {
    let deadline = wasi::clocks::monotonic_clock::now() + timeout_ms * 1_000_000;
    let mut fut = pin!(fut);
    // The timer registered by the last poll; dropping it unregisters it from the executor.
    let mut timer: Option<spin_executor::CancelOnDropToken> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if wasi::clocks::monotonic_clock::now() >= deadline {
            return Poll::Ready(None);
        }
        // Wake the executor at the deadline even if the call never answers.
        let pollable = wasi::clocks::monotonic_clock::subscribe_instant(deadline);
        let token = spin_executor::push_waker_and_get_token(pollable, cx.waker().clone());
        timer.replace(token.into());
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phrases_and_keeps_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("errors 20% over 2s, min 4, open 1500ms, timeout 200ms").unwrap();
        assert_eq!(
            (
                c.error_percent,
                c.error_window_s,
                c.min_calls,
                c.open_ms,
                c.timeout_ms
            ),
            (20, 2, 4, 1500, 200)
        );
        assert_eq!(c.slow_call_ms, 1000);
        let c = Config::parse("slow 60% over 5s above 250ms").unwrap();
        assert_eq!(
            (c.slow_percent, c.slow_window_s, c.slow_call_ms),
            (60, 5, 250)
        );
        let c = Config::parse("off, timeout 2s").unwrap();
        assert!(!c.enabled && c.timeout_ms == 2000);
        assert!(Config::parse("min 3").unwrap().enabled);
        for bad in [
            "errors 50 over 10s",
            "errors 150% over 1s",
            "min x",
            "open soon",
            "fast",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
