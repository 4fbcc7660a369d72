//! How much one request or one instance may take: the host's limits, their defaults, and how an
//! instance is held to them.
//!
//! Spin bounds an instance's memory only when asked (`--max-instance-memory`,
//! `SPIN_MAX_INSTANCE_MEMORY`) and its run time not at all; Fermyon Cloud ends a handler after
//! 10 s and SpinKube bounds the whole pod. This host bounds both by default, so one request can
//! neither take the process down nor hold a SQLite write turn for ever:
//!
//! - memory: each linear memory of an instance may grow to `max_instance_memory` (default
//!   128 MiB, Spin's flag and variable name); a refused `memory.grow` fails the guest's
//!   allocation, the instance traps and the request gets a 500 problem.
//! - run time: an instance is interrupted `max_instance_time` after it was created (default
//!   30 s, wall clock): spinning in Wasm it traps at the next epoch check (the engine's epoch
//!   ticks every 10 ms, as in Spin), and waiting in a host call its future is dropped. Either way
//!   its store is dropped, so a SQLite transaction it held is rolled back, and an HTTP request
//!   gets a 503 problem.
//!
//! Between ticks a running instance yields to the async runtime, so a guest that spins cannot
//! starve the other requests of the worker thread it runs on.

use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

/// The engine's epoch period (Spin's `DEFAULT_EPOCH_TICK_INTERVAL`).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits of one instance (any trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Largest size of any one linear memory, in bytes (`None`: unbounded).
    pub max_memory: Option<usize>,
    /// Longest life of an instance, from its creation (`None`: unbounded).
    pub max_time: Option<Duration>,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            max_memory: Some(128 << 20),
            max_time: Some(Duration::from_secs(30)),
        }
    }
}

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body, in bytes (`None`: unbounded). Larger bodies get a 413 while they
    /// are read; the rest is never read.
    pub max_request_body: Option<u64>,
    /// How long a connection may take to send a request's headers, counted from the moment it
    /// has no request in flight (the whole header of a new connection, or the next request on a
    /// kept-alive one).
    pub header_read_timeout: Option<Duration>,
    /// How long a request body may send nothing while the component waits for it.
    pub body_idle_timeout: Option<Duration>,
    /// Most connections served at once; further ones wait in the listen backlog.
    pub max_connections: Option<usize>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_body: Some(10 << 20),
            header_read_timeout: Some(Duration::from_secs(10)),
            body_idle_timeout: Some(Duration::from_secs(10)),
            max_connections: Some(512),
        }
    }
}

/// Why the host ended an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceFault {
    /// A linear memory would have grown past `max_memory`.
    Memory,
    /// The instance outlived `max_time`.
    Time,
}

impl InstanceFault {
    /// How the host reports it in its log.
    pub fn describe(self) -> &'static str {
        match self {
            InstanceFault::Memory => "the instance exceeded its memory limit",
            InstanceFault::Time => "the instance exceeded its run time limit",
        }
    }
}

/// The store's resource limiter: Spin's accounting (each linear memory may grow up to the
/// limit), remembering whether it refused, so the trap that follows is reported as what it is.
#[derive(Debug, Default)]
pub struct InstanceLimiter {
    max_memory: Option<usize>,
    refused: bool,
}

impl InstanceLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: &InstanceLimits) -> Self {
        InstanceLimiter {
            max_memory: limits.max_memory,
            refused: false,
        }
    }

    /// Whether a memory growth was refused.
    pub fn refused(&self) -> bool {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.max_memory.is_none_or(|max| desired <= max);
        if !allowed {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Arms the run time limit on a fresh store: at each epoch tick the instance yields, and past
/// the deadline it traps. Returns the deadline, for the caller's own wall-clock bound.
pub fn arm_deadline<T: 'static>(store: &mut Store<T>, limits: &InstanceLimits) -> Option<Instant> {
    let deadline = Instant::now() + limits.max_time?;
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
    Some(deadline)
}

/// Runs `work` (a call into an instance) until `deadline`: a call still waiting in a host call
/// then is dropped (the epoch trap covers a call spinning in Wasm).
pub async fn until_deadline<F>(deadline: Option<Instant>, work: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    match deadline {
        None => work.await,
        Some(at) => tokio::time::timeout_at(at.into(), work)
            .await
            .unwrap_or_else(|_| Err(anyhow::Error::new(wasmtime::Trap::Interrupt))),
    }
}

/// What ended a failed call, if it was one of the host's limits.
pub fn fault_of(err: &anyhow::Error, memory_refused: bool) -> Option<InstanceFault> {
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        Some(InstanceFault::Time)
    } else if memory_refused {
        Some(InstanceFault::Memory)
    } else {
        None
    }
}

/// A failed call's error, saying first which instance limit ended it, if one did.
pub fn explain(result: anyhow::Result<()>, memory_refused: bool) -> anyhow::Result<()> {
    result.map_err(|e| match fault_of(&e, memory_refused) {
        Some(fault) => e.context(fault.describe()),
        None => e,
    })
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, for as long as the
/// engine lives.
pub fn start_epoch_ticker(engine: &wasmtime::Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("spin-host-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`, `KB`, `MB`, `GB`,
/// all binary). `0` stands for no limit (see [`nonzero`]).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, 512KiB, 10MiB, 1GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration: seconds, or a number with `ms`, `s` or `m`. `0` stands for no limit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30, 500ms, 30s, 2m)"))?;
    match unit.trim() {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        other => Err(format!("unknown duration unit {other:?} in {text:?}")),
    }
}

/// A count. `0` stands for no limit.
pub fn parse_count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

/// A limit as configured: zero turns it off.
pub fn nonzero<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn sizes_durations_and_counts_parse_with_zero_as_unbounded() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("0").map(nonzero), Ok(None));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10TB").is_err());
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s").map(nonzero), Ok(None));
        assert!(parse_duration("1h").is_err());
        assert_eq!(parse_count("512").map(nonzero), Ok(Some(512)));
        assert_eq!(parse_count("0").map(nonzero), Ok(None));
        assert!(parse_count("-1").is_err());
    }

    #[test]
    fn the_limiter_refuses_growth_past_the_limit_and_remembers_it() {
        let mut l = InstanceLimiter::new(&InstanceLimits {
            max_memory: Some(1 << 20),
            max_time: None,
        });
        assert_eq!(l.memory_growing(0, 1 << 20, None).ok(), Some(true));
        assert!(!l.refused());
        assert_eq!(l.memory_growing(1 << 20, 2 << 20, None).ok(), Some(false));
        assert!(l.refused());
    }
}
