//! The OCI state a runtime writes to `tether hook`'s stdin, and the `tether.*` annotations in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::hook::{BundleConfig, HookSettings, OciState};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(state) = OciState::parse(text) {
        let _ = state.live_pid();
        if let Ok(settings) = HookSettings::from_annotations(&state.annotations) {
            // What reaches /etc/hosts is one word per name.
            for name in settings
                .aliases
                .iter()
                .flatten()
                .chain(settings.name.iter())
            {
                assert!(!name.chars().any(|c| c.is_control() || c.is_whitespace()));
            }
        }
    }
    if let Ok(config) = BundleConfig::parse(text) {
        let _ = config.has_network_namespace();
    }
});
