//! The figures of a run, from its samples: latency percentiles, status counts, units per buyer
//! and the latency timeline the plot draws. Pure functions, tested beside the code.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// One request: when it started (since the run began), how long it took, and its status
/// (`None`: no answer at all, a connection error or a timeout).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Duration,
    pub latency: Duration,
    pub status: Option<u16>,
}

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending): the smallest value
/// with at least p% of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency figures in milliseconds (0 for no samples).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The latency figures of every sample, answered or not (a timeout took that long too).
pub fn latency(samples: &[Sample]) -> Latency {
    let mut sorted: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    sorted.sort_unstable();
    let at = |p| percentile(&sorted, p).map(ms).unwrap_or(0.0);
    let total: Duration = sorted.iter().sum();
    Latency {
        p50: at(50.0),
        p95: at(95.0),
        p99: at(99.0),
        max: sorted.last().copied().map(ms).unwrap_or(0.0),
        mean: if sorted.is_empty() {
            0.0
        } else {
            ms(total) / sorted.len() as f64
        },
    }
}

/// The key of requests that got no answer in [`status_counts`].
pub const NO_ANSWER: &str = "error";

/// How many samples got each status (`"201"`, `"409"`, ...; [`NO_ANSWER`] for none).
pub fn status_counts(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for s in samples {
        let key = s
            .status
            .map_or_else(|| NO_ANSWER.to_owned(), |c| c.to_string());
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Units each buyer got, from one entry per unit (the buyer of each ORDERED ticket).
pub fn units_per_buyer<'a>(buyers: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, u64> {
    let mut units = BTreeMap::new();
    for b in buyers {
        *units.entry(b).or_insert(0) += 1;
    }
    units
}

/// The buyers who got more than `limit` units, sorted.
pub fn buyers_over<'a>(units: &BTreeMap<&'a str, u64>, limit: u64) -> Vec<&'a str> {
    units
        .iter()
        .filter(|(_, n)| **n > limit)
        .map(|(b, _)| *b)
        .collect()
}

/// The samples that started in one slice of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Start of the slice, seconds since the run began.
    pub start_s: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The samples cut into slices of `width` by start time; slices without a sample are left out
/// (the plot joins its neighbours). A zero width is taken as one millisecond.
pub fn timeline(samples: &[Sample], width: Duration) -> Vec<Bucket> {
    let width = width.max(Duration::from_millis(1));
    let mut slices: BTreeMap<u128, Vec<Duration>> = BTreeMap::new();
    for s in samples {
        let k = s.at.as_nanos() / width.as_nanos();
        slices.entry(k).or_default().push(s.latency);
    }
    slices
        .into_iter()
        .map(|(k, mut lat)| {
            lat.sort_unstable();
            Bucket {
                start_s: k as f64 * width.as_secs_f64(),
                requests: lat.len() as u64,
                p50_ms: percentile(&lat, 50.0).map(ms).unwrap_or(0.0),
                p99_ms: percentile(&lat, 99.0).map(ms).unwrap_or(0.0),
            }
        })
        .collect()
}

/// The slice width for a run of `span`: about 60 slices, at least 100 ms each.
pub fn bucket_width(span: Duration) -> Duration {
    (span / 60).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    fn sample(at_ms: u64, lat_ms: u64, status: Option<u16>) -> Sample {
        Sample {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(lat_ms),
            status,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = ms_list(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        // 10 values: p95 is the 10th (ceil(9.5)), p50 the 5th.
        let ten = ms_list(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&ten, 95.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(5)));
    }

    #[test]
    fn percentile_of_one_value_and_of_none() {
        let one = ms_list(&[7]);
        for p in [0.1, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&one, p), Some(Duration::from_millis(7)));
        }
        assert_eq!(percentile(&[], 50.0), None);
        // p = 0 still names a value (the smallest), never index -1.
        assert_eq!(
            percentile(&ms_list(&[3, 4]), 0.0),
            Some(Duration::from_millis(3))
        );
    }

    #[test]
    fn latency_sorts_before_ranking() {
        let samples: Vec<Sample> = [30, 10, 20, 40]
            .iter()
            .map(|&l| sample(0, l, Some(201)))
            .collect();
        let l = latency(&samples);
        assert_eq!(l.p50, 20.0);
        assert_eq!(l.p99, 40.0);
        assert_eq!(l.max, 40.0);
        assert_eq!(l.mean, 25.0);
        assert_eq!(latency(&[]), Latency::default());
    }

    #[test]
    fn status_counts_count_unanswered_requests_apart() {
        let samples = [
            sample(0, 1, Some(201)),
            sample(0, 1, Some(201)),
            sample(0, 1, Some(409)),
            sample(0, 1, None),
        ];
        let counts = status_counts(&samples);
        assert_eq!(counts.get("201"), Some(&2));
        assert_eq!(counts.get("409"), Some(&1));
        assert_eq!(counts.get(NO_ANSWER), Some(&1));
        assert_eq!(counts.values().sum::<u64>(), 4);
    }

    #[test]
    fn double_buyers_are_those_over_the_limit() {
        let units = units_per_buyer(["b1", "b2", "b1", "b3", "b3", "b3"]);
        assert_eq!(units["b1"], 2);
        assert_eq!(units["b3"], 3);
        assert_eq!(buyers_over(&units, 1), vec!["b1", "b3"]);
        assert_eq!(buyers_over(&units, 2), vec!["b3"]);
        assert!(buyers_over(&units, 3).is_empty());
        assert!(buyers_over(&units_per_buyer([]), 1).is_empty());
    }

    #[test]
    fn timeline_slices_by_start_time() {
        let samples = [
            sample(0, 10, Some(200)),
            sample(999, 30, Some(200)),
            sample(1000, 5, Some(200)),
            sample(3500, 7, None),
        ];
        let t = timeline(&samples, Duration::from_secs(1));
        let starts: Vec<f64> = t.iter().map(|b| b.start_s).collect();
        assert_eq!(starts, vec![0.0, 1.0, 3.0]);
        assert_eq!(t[0].requests, 2);
        assert_eq!(t[0].p50_ms, 10.0);
        assert_eq!(t[0].p99_ms, 30.0);
        assert_eq!(t[1].p99_ms, 5.0);
        assert_eq!(t[2].requests, 1);
        assert_eq!(timeline(&samples, Duration::ZERO).len(), 4);
    }

    #[test]
    fn bucket_width_is_about_a_sixtieth_never_under_100_ms() {
        assert_eq!(
            bucket_width(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            bucket_width(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
