//! `<state>/overlay-store.json`: which kind of cluster store tetherd's control plane last ran with, for the
//! plugin. With a store that agrees on every block through an authority (etcd), an ADD that needs a new
//! block and gets no agreement fails with "try again later" instead of using the block unconfirmed. The
//! marker stays while tetherd is down: an etcd cluster never sees a guessed block.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state_file::{self, StateFileError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoreMarker {
    /// No block is used before the store confirmed it.
    requires_agreement: bool,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("overlay-store.json")
}

/// Written by tetherd's control plane at start.
pub fn write_store_kind(state_dir: &Path, requires_agreement: bool) -> Result<(), StateFileError> {
    state_file::write_json(&path(state_dir), &StoreMarker { requires_agreement })
}

/// Whether a new block must be confirmed before use (false without a marker: the gossip default).
pub fn requires_agreement(state_dir: &Path) -> bool {
    state_file::read_json::<StoreMarker>(&path(state_dir))
        .ok()
        .flatten()
        .is_some_and(|m| m.requires_agreement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_its_absence_means_gossip() {
        let dir = std::env::temp_dir().join(format!("tether-marker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!requires_agreement(&dir));
        write_store_kind(&dir, true).unwrap();
        assert!(requires_agreement(&dir));
        write_store_kind(&dir, false).unwrap();
        assert!(!requires_agreement(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
