//! Running the build machine's tools (apt-get, dpkg, ldd, strip, cpio) with failures that say what to do.

use std::process::{Command, Stdio};

/// Runs `cmd` to completion and returns its stdout; panics naming `what`, the exit status and stderr.
/// `hint` says how to fix the likely cause (a missing package, a stale apt list).
pub fn run(cmd: &mut Command, what: &str, hint: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}; {hint}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}): {}; {hint}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first of `candidates` that exists, or a panic naming the package that provides it.
pub fn find_tool(candidates: &[&str], package: &str) -> std::path::PathBuf {
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} exists; install the Debian package `{package}` (.ci/run does)")
        })
}
