//! Bench settings read from the environment (`BENCH_SIZES=0,250,1000`, `BENCH_RUNS=20`, ...).

/// A comma-separated list of numbers from `var`, or `default` when it is unset.
pub fn env_list(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{var}={v}: {e}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}
