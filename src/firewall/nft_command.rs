//! Runs an nft script as one transaction (`nft -f -`). Only the rare per-network path uses
//! this; spawning nft costs milliseconds.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::error::FirewallError;

const FALLBACK: &str = "/usr/sbin/nft";

fn locate_nft() -> Result<PathBuf, FirewallError> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nft");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let fallback = PathBuf::from(FALLBACK);
    if fallback.is_file() {
        return Ok(fallback);
    }
    Err(FirewallError::NftMissing)
}

/// Applies `script` atomically; on failure nothing of it is applied.
pub fn apply_script(
    script: &str,
    network: &str,
    action: &'static str,
) -> Result<(), FirewallError> {
    let program = locate_nft()?;
    let spawn_error = |source| FirewallError::NftSpawn {
        program: program.display().to_string(),
        source,
    };
    tracing::debug!(network, action, script, "applying nft script");
    let mut child = Command::new(&program)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(());
    }
    Err(FirewallError::NftFailed {
        network: network.to_string(),
        action,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
