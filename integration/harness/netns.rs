//! One named network namespace (`/run/netns/<name>`): run commands in it and read its kernel state.
//! Creation and cleanup belong to `HostNs`; a `NetNs` is only a handle.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

#[derive(Clone, Debug)]
pub struct NetNs {
    /// The short label the test chose ("c1"); used as the CNI container id.
    pub label: String,
    /// The netns name, a file in /run/netns.
    pub name: String,
}

impl NetNs {
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// Runs `args` inside this namespace. nsenter, not `ip netns exec`: the latter remounts /sys.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path_str()))
            .arg("--")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("spawning nsenter for {args:?} in {}: {e}", self.name))
    }

    /// Runs `args` and panics with its stderr when it fails; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in netns {} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.ip_raw(args, false);
        assert!(
            out.status.success(),
            "ip -n {} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n <ns> -batch -` fed `batch` (one command per line): many links in one process, panicking on failure.
    pub fn ip_batch(&self, batch: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawning ip");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(batch.as_bytes())
            .expect("writing the batch");
        drop(stdin);
        let status = child.wait().expect("waiting for ip");
        assert!(status.success(), "ip -n {} -batch failed", self.name);
    }

    fn ip_raw(&self, args: &[&str], json: bool) -> Output {
        let mut cmd = Command::new("ip");
        if json {
            cmd.arg("-j");
        }
        cmd.args(["-n", &self.name]).args(args);
        cmd.output().expect("spawning ip")
    }

    /// `ip -j -n <ns> <args>` parsed; None when ip fails (e.g. the device does not exist).
    pub fn try_ip_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.ip_raw(args, true);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Some(Value::Array(vec![]));
        }
        Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}")))
    }

    pub fn ip_json(&self, args: &[&str]) -> Value {
        self.try_ip_json(args)
            .unwrap_or_else(|| panic!("ip -j -n {} {args:?} failed", self.name))
    }

    /// Runs `work` on the calling thread inside this namespace, through tether's own enter-and-restore
    /// guard; a socket `work` opens (a firewall or netlink handle, a listener) stays in this namespace.
    pub fn run_inside<T>(&self, work: impl FnOnce() -> T) -> T {
        tether::netns::NetNs::open(self.path())
            .and_then(|ns| ns.run(work))
            .unwrap_or_else(|e| panic!("entering netns {}: {e}", self.name))
    }

    /// `nft ARGS` in this namespace: (succeeded, stdout as text).
    pub fn nft(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["nft"];
        full.extend_from_slice(args);
        let out = self.exec(&full);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `nft ARGS` in this namespace, panicking with its stderr when it fails; returns stdout.
    pub fn nft_ok(&self, args: &[&str]) -> String {
        let mut full = vec!["nft"];
        full.extend_from_slice(args);
        self.exec_ok(&full)
    }

    /// `nft -j list table inet tether` in this namespace; None when the table does not exist.
    pub fn nft_json(&self) -> Option<Value> {
        super::nft::table(self)
    }

    /// Every link as `ip -j link show` reports it.
    pub fn links(&self) -> Vec<Value> {
        as_vec(self.ip_json(&["link", "show"]))
    }

    pub fn link_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .links()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    pub fn link(&self, ifname: &str) -> Option<Value> {
        self.try_ip_json(&["link", "show", "dev", ifname])
            .and_then(|v| as_vec(v).into_iter().next())
    }

    pub fn has_link(&self, ifname: &str) -> bool {
        self.link(ifname).is_some()
    }

    pub fn mtu(&self, ifname: &str) -> u64 {
        self.link(ifname)
            .and_then(|l| l["mtu"].as_u64())
            .unwrap_or_else(|| panic!("no mtu for {ifname} in {}", self.name))
    }

    pub fn mac(&self, ifname: &str) -> String {
        self.link(ifname)
            .and_then(|l| l["address"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no MAC for {ifname} in {}", self.name))
    }

    /// The bridge a port is enslaved to, if any.
    pub fn master(&self, ifname: &str) -> Option<String> {
        self.link(ifname)
            .and_then(|l| l["master"].as_str().map(str::to_owned))
    }

    /// Addresses on `ifname` as "addr/prefix", in kernel order (link-local v6 included).
    pub fn addresses(&self, ifname: &str) -> Vec<String> {
        let Some(v) = self.try_ip_json(&["addr", "show", "dev", ifname]) else {
            return vec![];
        };
        as_vec(v)
            .iter()
            .flat_map(|l| as_vec(l["addr_info"].clone()))
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect()
    }

    /// Global (non link-local) addresses on `ifname`.
    pub fn global_addresses(&self, ifname: &str) -> Vec<String> {
        self.addresses(ifname)
            .into_iter()
            .filter(|a| !a.starts_with("fe80:"))
            .collect()
    }

    /// Routes of one family: `family` is "-4" or "-6".
    pub fn routes(&self, family: &str) -> Vec<Value> {
        as_vec(self.ip_json(&[family, "route", "show"]))
    }

    /// The gateway of the default route of one family, if there is one.
    pub fn default_gateway(&self, family: &str) -> Option<String> {
        self.routes(family)
            .into_iter()
            .find(|r| r["dst"] == "default")
            .and_then(|r| r["gateway"].as_str().map(str::to_owned))
    }

    /// One ICMP echo; true when a reply came back within two seconds (one echo only, so an address that was
    /// not usable when it was sent fails). `-6` picked from the address.
    pub fn ping(&self, ip: &str) -> bool {
        let mut args = vec!["ping", "-c1", "-W2"];
        if ip.contains(':') {
            args.push("-6");
        }
        args.push(ip);
        self.exec(&args).status.success()
    }

    /// Pings up to `tries` times (ARP/ND of a fresh port may eat the first echo).
    pub fn ping_retry(&self, ip: &str, tries: u32) -> bool {
        (0..tries).any(|_| self.ping(ip))
    }

    /// A sysctl as this namespace sees it (net.* sysctls are per namespace).
    pub fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec_ok(&["cat", &path]).trim().to_owned()
    }
}

pub fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => vec![],
        other => vec![other],
    }
}
