//! The test's "host": a network namespace standing in for the machine a runtime runs on, plus the
//! container and "outside" namespaces it owns and a scratch directory for the plugins' state.

use super::binaries;
use super::netns::NetNs;
use super::plugin::PluginCall;
use super::scratch_dir::ScratchDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The "internet" seen from the host namespace: a namespace behind a veth on TEST-NET-2, with no
/// route back to container subnets, so a container's packet is answered only if it was masqueraded.
pub struct Outside {
    pub ns: NetNs,
    /// The host's own address on the link to the outside (what masquerade must rewrite to).
    pub host_addr: &'static str,
    /// The address of the outside namespace.
    pub addr: &'static str,
}

pub struct HostNs {
    pub ns: NetNs,
    scratch: ScratchDir,
    /// Every namespace made for this test, deleted on drop, containers before the host.
    owned: Mutex<Vec<String>>,
}

impl std::ops::Deref for HostNs {
    type Target = NetNs;
    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl HostNs {
    /// Keep `label` short: it is part of every namespace name this host makes.
    pub fn new(label: &str) -> HostNs {
        // A test that cannot run here fails and says why; it never passes without having run.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces and needs root: run the suite as root"
        );
        let name = unique_name(label);
        let scratch = ScratchDir::new(&name);
        let host = HostNs {
            ns: NetNs {
                label: label.to_owned(),
                name: name.clone(),
            },
            scratch,
            owned: Mutex::new(Vec::new()),
        };
        // Registered before creation: a half-made namespace is still cleaned up.
        host.owned.lock().unwrap().push(name.clone());
        make_netns(&name);
        host
    }

    /// A container namespace (lo up), deleted with the host. `label` becomes the CNI container id.
    pub fn container(&self, label: &str) -> NetNs {
        let name = format!("{}-{label}", self.ns.name);
        self.owned.lock().unwrap().push(name.clone());
        make_netns(&name);
        NetNs {
            label: label.to_owned(),
            name,
        }
    }

    /// Deletes a container namespace now (for "DEL after the netns is gone").
    pub fn delete_container(&self, c: &NetNs) {
        delete_netns(&c.name);
    }

    /// An outside namespace on 198.51.100.0/24 linked to this host by a veth.
    pub fn outside(&self) -> Outside {
        let o = self.container("out");
        // Created from inside the host ns, so the short fixed names cannot clash with the machine's.
        self.ns.ip(&[
            "link", "add", "out0", "type", "veth", "peer", "name", "up0", "netns", &o.name,
        ]);
        self.ns
            .ip(&["addr", "add", "198.51.100.1/24", "dev", "out0"]);
        self.ns.ip(&["link", "set", "out0", "up"]);
        o.ip(&["addr", "add", "198.51.100.2/24", "dev", "up0"]);
        o.ip(&["link", "set", "up0", "up"]);
        Outside {
            ns: o,
            host_addr: "198.51.100.1",
            addr: "198.51.100.2",
        }
    }

    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// TETHER_STATE_DIR for every plugin run on this host.
    pub fn state_dir(&self) -> PathBuf {
        self.scratch.sub("state")
    }

    /// TETHER_RUN_DIR for every plugin run on this host.
    pub fn run_dir(&self) -> PathBuf {
        self.scratch.sub("run")
    }

    /// `ipam.dataDir` for tether-ipam and host-local.
    pub fn data_dir(&self) -> PathBuf {
        self.scratch.sub("ipam")
    }

    pub fn data_dir_str(&self) -> String {
        self.data_dir().display().to_string()
    }

    pub fn plugin(&self, binary: impl Into<PathBuf>) -> PluginCall<'_> {
        PluginCall::new(self, binary.into())
    }

    pub fn tether_bridge(&self) -> PluginCall<'_> {
        self.plugin(binaries::tether_bridge())
    }

    pub fn tether_ipam(&self) -> PluginCall<'_> {
        self.plugin(binaries::tether_ipam())
    }

    pub fn reference(&self, name: &str) -> PluginCall<'_> {
        self.plugin(binaries::reference(name))
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        // Containers first (their veth peers go with them), the host last; errors are ignored
        // because a test may have deleted a namespace itself.
        let owned = std::mem::take(&mut *self.owned.lock().unwrap_or_else(|p| p.into_inner()));
        for name in owned.iter().rev() {
            delete_netns(name);
        }
    }
}

fn unique_name(label: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("tt-{label}-{}-{n}", std::process::id())
}

fn make_netns(name: &str) {
    run(&["ip", "netns", "add", name]);
    run(&["ip", "-n", name, "link", "set", "lo", "up"]);
}

fn delete_netns(name: &str) {
    if Path::new("/run/netns").join(name).exists() {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawning {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
