//! runc and crun driven as a container engine would: inside the test's host namespace (`nsenter --net`,
//! never `ip netns exec`, which remounts /sys and hides the cgroup mounts), with their state in the
//! test's scratch directory. Containers are force-deleted on drop, which runs their poststop hooks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::netns::NetNs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Runc,
    Crun,
}

impl RuntimeKind {
    pub fn binary(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        }
    }
}

pub struct OciRuntime {
    kind: RuntimeKind,
    host: NetNs,
    /// `--root`: the runtime's own state directory.
    root: PathBuf,
}

/// What `run -d` did: its exit status and everything it (and its hooks) wrote.
pub struct RunOutcome {
    pub success: bool,
    pub log: String,
}

impl OciRuntime {
    /// Panics with the package to install when the runtime is missing: a test that needs it must not
    /// pass without it.
    pub fn new(kind: RuntimeKind, host: &NetNs, root: &Path) -> OciRuntime {
        let found = Command::new(kind.binary()).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{} not found; install Debian's `{}` package (.ci/run does)",
            kind.binary(),
            kind.binary()
        );
        std::fs::create_dir_all(root).unwrap();
        OciRuntime {
            kind,
            host: host.clone(),
            root: root.to_path_buf(),
        }
    }

    /// `<runtime> --root R <args>` inside the host namespace. crun refuses hybrid cgroup hosts: it
    /// runs in a private mount namespace without the unified hierarchy and without cgroup management.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.path_str())).arg("--");
        match self.kind {
            RuntimeKind::Runc => {
                cmd.arg("runc");
            }
            RuntimeKind::Crun => {
                cmd.args([
                    "unshare",
                    "-m",
                    "sh",
                    "-c",
                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --cgroup-manager=disabled \"$@\"",
                    "crun",
                ]);
            }
        }
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// `run -d`: the container's stdio goes to a log file, not a pipe, so nothing waits on it.
    pub fn run_detached(&self, id: &str, bundle: &Path) -> RunOutcome {
        let log_path = self.root.join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let status = self
            .command(&["run", "-d", "--bundle", &bundle.display().to_string(), id])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.kind.binary()));
        RunOutcome {
            success: status.success(),
            log: std::fs::read_to_string(&log_path).unwrap_or_default(),
        }
    }

    pub fn exec(&self, id: &str, args: &[&str]) -> Output {
        let mut full = vec!["exec", id];
        full.extend_from_slice(args);
        self.command(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawning {} exec: {e}", self.kind.binary()))
    }

    /// `delete -f`: kills the container and runs its poststop hooks.
    pub fn delete(&self, id: &str) -> Output {
        self.command(&["delete", "-f", id])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawning {} delete: {e}", self.kind.binary()))
    }

    /// `state`: the OCI state as the runtime reports it; None when it does not know the container.
    pub fn state(&self, id: &str) -> Option<Value> {
        let out = self
            .command(&["state", id])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn pid(&self, id: &str) -> u32 {
        self.state(id)
            .and_then(|s| s["pid"].as_u64())
            .unwrap_or_else(|| panic!("{} has no pid for {id}", self.kind.binary())) as u32
    }
}

/// A container that is force-deleted when dropped (panic or not).
pub struct RunningContainer<'r> {
    pub runtime: &'r OciRuntime,
    pub id: String,
}

impl<'r> RunningContainer<'r> {
    pub fn pid(&self) -> u32 {
        self.runtime.pid(&self.id)
    }

    /// The container's network namespace, for `nsenter`.
    pub fn netns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }

    /// Runs `args` inside the container; returns (success, stdout + stderr).
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = self.runtime.exec(&self.id, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Deletes it now; returns the runtime's output when that failed.
    pub fn delete(mut self) -> Result<(), String> {
        let id = std::mem::take(&mut self.id);
        let out = self.runtime.delete(&id);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for RunningContainer<'_> {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = self.runtime.delete(&self.id);
        }
    }
}
