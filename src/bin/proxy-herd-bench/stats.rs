//! Latency figures: percentiles over every recorded sample.
//!
//! Runs are short and bounded (a few million samples at most), so every
//! latency is kept and sorted: exact percentiles, no histogram buckets to
//! explain.

use serde::Serialize;

/// Percentiles of a set of latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest sample.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl Latency {
    /// Summarises latencies given in nanoseconds; `None` when there are
    /// none.
    pub fn from_nanos(mut samples: Vec<u64>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |ns: u64| ns as f64 / 1e3;
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(Latency {
            p50_us: us(percentile(&samples, 50.0)),
            p99_us: us(percentile(&samples, 99.0)),
            p999_us: us(percentile(&samples, 99.9)),
            max_us: us(samples[samples.len() - 1]),
            mean_us: sum as f64 / samples.len() as f64 / 1e3,
        })
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample
/// that at least `p` percent of the samples do not exceed.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    // The epsilon keeps float error (99.9 / 100 * 1000 = 999.0000000000001)
    // from pushing the rank one sample up.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest rank: with 1000 samples 1..=1000, p50 is 500, p99 990 and
    /// p99.9 999; with one sample, every percentile is that sample.
    #[test]
    fn nearest_rank() {
        let s: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&s, 50.0), 500);
        assert_eq!(percentile(&s, 99.0), 990);
        assert_eq!(percentile(&s, 99.9), 999);
        assert_eq!(percentile(&s, 100.0), 1000);
        assert_eq!(percentile(&[7], 0.0), 7);
        assert_eq!(percentile(&[7], 99.9), 7);
    }

    /// Figures come out ordered and in microseconds, whatever the input
    /// order.
    #[test]
    fn summary() {
        let l = Latency::from_nanos(vec![3000, 1000, 2000, 4000]).unwrap();
        assert_eq!(l.p50_us, 2.0);
        assert_eq!(l.max_us, 4.0);
        assert_eq!(l.mean_us, 2.5);
        assert!(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us);
        assert!(Latency::from_nanos(Vec::new()).is_none());
    }
}
