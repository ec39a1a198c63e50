//! Median and p90 of a set of timings, and how the benches print a duration.

use std::time::Duration;

#[derive(Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub p90: Duration,
}

/// Nearest-rank quantiles of `samples` (at least one).
pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
