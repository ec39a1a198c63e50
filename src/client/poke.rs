//! The overlay control plane's wake-up: an empty datagram on `<run>/overlay.sock` asks it to look at the
//! claims now instead of at its next tick.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Where tetherd's overlay control plane listens for pokes.
pub fn overlay_socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("overlay.sock")
}

/// Asks the control plane to look at the claims now. False when none listens (tetherd down or without
/// an `"overlay"` section).
pub fn poke_control_plane() -> bool {
    let path = overlay_socket_path(&crate::paths::run_dir());
    match UnixDatagram::unbound() {
        Ok(s) => s.send_to(&0u64.to_be_bytes(), &path).is_ok(),
        Err(_) => false,
    }
}
