//! Diagnostics for plugins. A plugin's stdout belongs to the CNI protocol,
//! so logs go to stderr, and only when asked for: runtimes often capture
//! stderr into their own error messages.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `TETHER_LOG`'s filter: a level (`debug`) or comma-separated `target=level` pairs (`tether=trace,info`),
/// `fallback` when it does not parse. Not tracing's EnvFilter: that compiles regular expressions at start,
/// which keeps a regex engine's worth of code resident in tetherd for a filter nobody writes.
pub fn filter(directive: &str, fallback: LevelFilter) -> Targets {
    directive
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(fallback))
}

/// Installs a `tracing` subscriber when `TETHER_LOG` is set (a [`filter`]
/// such as `debug` or `tether=trace`). With `TETHER_LOG_FILE` the
/// lines are appended to that file instead of stderr. Does nothing when a
/// subscriber is already installed.
pub fn init_from_env() {
    let Ok(directive) = std::env::var("TETHER_LOG") else {
        return;
    };
    if directive.is_empty() {
        return;
    }
    let filter = filter(&directive, LevelFilter::DEBUG);
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_target(true);
    let file = std::env::var("TETHER_LOG_FILE")
        .ok()
        .filter(|path| !path.is_empty())
        .and_then(|path| OpenOptions::new().create(true).append(true).open(path).ok());
    // try_init: a second call (tests, a binary that set up its own) is fine.
    let _ = match file {
        Some(file) => builder
            .with_writer(Mutex::new(file))
            .finish()
            .with(filter)
            .try_init(),
        None => builder
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_level_or_target_pairs_filter_and_anything_else_falls_back() {
        let level = filter("debug", LevelFilter::INFO);
        assert!(level.would_enable("tether::dns", &Level::DEBUG));
        assert!(!level.would_enable("tether::dns", &Level::TRACE));

        let pairs = filter("tether::dns=trace,warn", LevelFilter::INFO);
        assert!(pairs.would_enable("tether::dns::cache", &Level::TRACE));
        assert!(!pairs.would_enable("tether::overlay", &Level::INFO));
        assert!(pairs.would_enable("tether::overlay", &Level::WARN));

        let garbage = filter("tether=[span]{x}", LevelFilter::INFO);
        assert!(garbage.would_enable("tether", &Level::INFO));
        assert!(!garbage.would_enable("tether", &Level::DEBUG));
    }
}
