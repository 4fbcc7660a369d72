//! Rate limits shared by every instance: GCRA in one Lua script (`lua/guard.lua`) with the time
//! from Redis (`TIME`), so all instances of all components count against one limit.
//!
//! A request checks all its limits (route-wide and per caller) in ONE script call: one round
//! trip, and a request refused by one limit consumes none of the others. The same call can ask a
//! circuit breaker for admission ([`crate::breaker`]), so guarding a downstream call costs no
//! second round trip before it.
//!
//! Limits come from variables: `"500/s burst 50"` (rate per second, or `/m`; burst: requests
//! admitted at once from idle, default the rate) or `"off"` (no limit: the benchmarks measure
//! the limiter's cost this way). Refused: 429 problem+json with `Retry-After` (integer seconds)
//! and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`; admitted responses carry
//! the three `RateLimit-*` headers of the tightest limit.
//!
//! Redis unreachable: the route's [`FailMode`], from the variables
//! `rate_limit_redis_down_writes` (default `closed`: 503) and `rate_limit_redis_down_reads`
//! (default `open`: admitted without headers).

// `Problem` is the one error a request ends with: boxing it would only add noise.
#![allow(clippy::result_large_err)]

use spin_sdk::http::{Request, Response};
use spin_sdk::redis::Connection;

use crate::breaker::Breaker;
use crate::redis::Script;
use crate::Problem;

pub const GUARD: Script = Script {
    name: "guard",
    source: include_str!("../lua/guard.lua"),
};

/// One limit: at most `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Microseconds between two requests at the sustained rate (GCRA's emission interval).
    pub interval_us: u64,
    pub burst: u64,
}

impl Limit {
    /// `"<rate>/s [burst <n>]"`, `"<rate>/m [burst <n>]"`, or `"off"` (`None`).
    pub fn parse(spec: &str) -> Result<Option<Limit>, String> {
        let spec = spec.trim().to_ascii_lowercase();
        if matches!(spec.as_str(), "off" | "none" | "0") {
            return Ok(None);
        }
        let bad = || format!("{spec:?} is not a limit: write e.g. \"500/s burst 50\" or \"off\"");
        let mut words = spec.split_whitespace();
        let (rate, unit) = words
            .next()
            .and_then(|r| r.split_once('/'))
            .ok_or_else(bad)?;
        let rate: f64 = rate.parse().map_err(|_| bad())?;
        let period_us = match unit {
            "s" => 1e6,
            "m" => 60e6,
            _ => return Err(bad()),
        };
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(bad());
        }
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => rate.ceil() as u64,
            (Some("burst"), Some(n), None) => n.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        if burst == 0 {
            return Err(bad());
        }
        let interval_us = ((period_us / rate).round() as u64).max(1);
        Ok(Some(Limit { interval_us, burst }))
    }

    /// The limit the variable `name` sets (`None`: off). A missing or malformed variable is a
    /// deployment mistake: 500, logged, never a silently unlimited route.
    pub fn from_var(name: &str) -> Result<Option<Limit>, Problem> {
        let spec =
            crate::vars::get(name).map_err(|e| Problem::internal("read rate limit variable", e))?;
        Limit::parse(&spec).map_err(|e| Problem::internal(&format!("variable {name}"), e))
    }
}

/// What a route does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Admit (reads: serving them costs little and refusing them all would be an outage).
    Open,
    /// Refuse with 503 (writes and flash purchases: an unlimited crowd must not get through).
    Closed,
}

/// The kind of route, which picks the variable its [`FailMode`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Read,
    Write,
    /// Flash purchases: always closed, whatever the variables say (a sale without its limits
    /// would let a crowd through).
    Purchase,
}

impl RouteKind {
    pub fn fail_mode(self) -> Result<FailMode, Problem> {
        let name = match self {
            RouteKind::Read => "rate_limit_redis_down_reads",
            RouteKind::Write => "rate_limit_redis_down_writes",
            RouteKind::Purchase => return Ok(FailMode::Closed),
        };
        let value = crate::vars::get(name).map_err(|e| Problem::internal("read variable", e))?;
        match value.trim() {
            "open" => Ok(FailMode::Open),
            "closed" => Ok(FailMode::Closed),
            other => Err(Problem::internal(
                &format!("variable {name}"),
                format!("{other:?}: expected \"open\" or \"closed\""),
            )),
        }
    }
}

/// The limits (and optional breaker) one request passes before its work starts.
pub struct Guard<'a> {
    checks: Vec<(String, Limit)>,
    breaker: Option<&'a Breaker>,
    kind: RouteKind,
}

/// An admitted request: the headers its response carries, and whether it is its breaker's
/// half-open probe (its outcome then closes or reopens the breaker).
#[derive(Debug, Default)]
pub struct Admitted {
    pub headers: Vec<(String, String)>,
    pub probe: bool,
}

impl Admitted {
    /// Adds the `RateLimit-*` headers to `resp`.
    pub fn apply(&self, mut resp: Response) -> Response {
        for (name, value) in &self.headers {
            resp.set_header(name, value);
        }
        resp
    }
}

/// The response of a guarded route: `handler`'s answer with the limits' headers once
/// `admission` admitted the request, or the refusal.
pub fn answer(
    admission: Result<Admitted, Problem>,
    handler: impl FnOnce() -> Result<Response, Problem>,
) -> Response {
    match admission {
        Ok(admitted) => admitted.apply(crate::respond::finish(handler())),
        Err(refused) => refused.into_response(),
    }
}

/// The client address Spin passes (`spin-client-addr`, `ip:port`), without the port: the
/// subject of anonymous routes' limits.
pub fn client_ip(req: &Request) -> String {
    let addr = req
        .header("spin-client-addr")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    match addr.rsplit_once(':') {
        // `[::1]:80` or `1.2.3.4:80`; a bare IPv6 without port has more than one colon.
        Some((ip, port))
            if port.parse::<u16>().is_ok() && (ip.contains('.') || ip.starts_with('[')) =>
        {
            ip.trim_matches(['[', ']']).to_owned()
        }
        _ => addr.to_owned(),
    }
}

impl<'a> Guard<'a> {
    pub fn new(kind: RouteKind) -> Self {
        Guard {
            checks: Vec::new(),
            breaker: None,
            kind,
        }
    }

    /// Adds the limit of variable `var` on `key` (`ratelimit:<key>`), unless it is `off`.
    pub fn limit(mut self, var: &str, key: &str) -> Result<Self, Problem> {
        if let Some(limit) = Limit::from_var(var)? {
            self.checks.push((format!("ratelimit:{key}"), limit));
        }
        Ok(self)
    }

    /// Also asks `breaker` for admission in the same round trip (unless it is `off`).
    pub fn breaker(mut self, breaker: &'a Breaker) -> Self {
        self.breaker = Some(breaker).filter(|b| b.config.enabled);
        self
    }

    /// Runs the checks on `conn` (`None`: Redis could not be reached): admitted, or the 429 /
    /// 503 problem to answer.
    pub fn admit(self, conn: Option<&Connection>) -> Result<Admitted, Problem> {
        if self.checks.is_empty() && self.breaker.is_none() {
            return Ok(Admitted::default());
        }
        let reply = match conn {
            Some(conn) => self.run(conn),
            None => Err("no connection".to_owned()),
        };
        match reply {
            Ok(reply) => self.verdict(&reply),
            Err(e) => self.redis_down(&e),
        }
    }

    fn run(&self, conn: &Connection) -> Result<Vec<String>, String> {
        let mut keys: Vec<String> = self.checks.iter().map(|(k, _)| k.clone()).collect();
        let n = self.checks.len().to_string();
        let mut args = vec![n, "0".to_owned(), "0".to_owned()];
        if let Some(b) = self.breaker {
            keys.extend(b.admission_keys());
            args[1] = "1".to_owned();
            args[2] = b.config.probe_ttl_ms().to_string();
        }
        for (_, limit) in &self.checks {
            args.push(limit.interval_us.to_string());
            args.push(limit.burst.to_string());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::redis::run(conn, &GUARD, &keys, &args).map_err(|e| e.to_string())
    }

    fn verdict(&self, reply: &[String]) -> Result<Admitted, Problem> {
        let at = |i: usize| reply.get(i).map(String::as_str).unwrap_or("0");
        match at(0) {
            "OK" => {
                let headers = match self.checks.is_empty() {
                    true => Vec::new(),
                    false => rate_headers(at(1), at(2), at(3)),
                };
                Ok(Admitted {
                    headers,
                    probe: at(4) == "1",
                })
            }
            "LIMITED" => {
                let mut p = Problem::new(
                    429,
                    "rate-limited",
                    "Too many requests",
                    "this route's rate limit is reached; retry after Retry-After seconds",
                )
                .with_header("retry-after", at(3));
                for (name, value) in rate_headers(at(2), "0", at(4)) {
                    p = p.with_header(&name, value);
                }
                Err(p)
            }
            "OPEN" => Err(self.breaker.map_or_else(
                || Problem::internal("guard", "breaker verdict without a breaker"),
                |b| b.open_problem(at(1)),
            )),
            _ => Err(Problem::internal(
                "unexpected reply from guard.lua",
                format!("{reply:?}"),
            )),
        }
    }

    fn redis_down(&self, err: &str) -> Result<Admitted, Problem> {
        eprintln!("ratelimit: redis unreachable: {err}");
        match self.kind.fail_mode()? {
            // A breaker that cannot be read admits: it protects a downstream, and Redis being
            // down is not that downstream failing.
            FailMode::Open => Ok(Admitted::default()),
            FailMode::Closed => Err(Problem::unavailable(
                "the rate limiter cannot be reached, so this route is closed; retry later",
            )
            .with_header("retry-after", "1")),
        }
    }
}

fn rate_headers(limit: &str, remaining: &str, reset: &str) -> Vec<(String, String)> {
    vec![
        ("ratelimit-limit".to_owned(), limit.to_owned()),
        ("ratelimit-remaining".to_owned(), remaining.to_owned()),
        ("ratelimit-reset".to_owned(), reset.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_bursts_and_off() {
        let l = Limit::parse("500/s burst 50").unwrap().unwrap();
        assert_eq!((l.interval_us, l.burst), (2000, 50));
        let l = Limit::parse("5/s").unwrap().unwrap();
        assert_eq!((l.interval_us, l.burst), (200_000, 5));
        let l = Limit::parse("60/m burst 3").unwrap().unwrap();
        assert_eq!((l.interval_us, l.burst), (1_000_000, 3));
        assert_eq!(Limit::parse(" OFF ").unwrap(), None);
        for bad in [
            "",
            "500",
            "500/h",
            "x/s",
            "5/s burst",
            "5/s burst 0",
            "-1/s",
            "5/s b 2",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
