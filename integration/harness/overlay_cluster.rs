//! Simulated overlay hosts: a "fabric" namespace with one bridge (the underlay, 192.168.77.0/24) and host
//! namespaces whose `ul0` veth hangs on it, each running its own tetherd (own state, run and config dirs,
//! killed on drop) and the overlay plugin as a runtime on that host would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether::client::protocol::Request;

use super::etcd::Etcd;
use super::{HostNs, NetNs};

/// Which cluster store the hosts' tetherds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Gossip,
    /// One etcd member on the fabric.
    Etcd,
    /// Three etcd members on the fabric.
    Etcd3,
    /// One etcd member serving TLS and requiring client certificates.
    EtcdTls,
}

impl Store {
    /// Namespace labels unique per store, so both runs of a test can go at once.
    pub fn label(self, base: &str) -> String {
        match self {
            Store::Gossip => base.to_string(),
            Store::Etcd => format!("{base}e"),
            Store::Etcd3 => format!("{base}t"),
            Store::EtcdTls => format!("{base}s"),
        }
    }
}

/// Runs the test body `NAME(store)` once per cluster store, as `NAME::gossip` and `NAME::etcd`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            #[test]
            fn gossip() {
                super::$name(crate::harness::overlay_cluster::Store::Gossip)
            }
            #[test]
            fn etcd() {
                super::$name(crate::harness::overlay_cluster::Store::Etcd)
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// etcd members listen on these fabric addresses.
const ETCD_ADDRS: [&str; 3] = ["192.168.77.250", "192.168.77.251", "192.168.77.252"];

/// The liveness lease in tests: a killed host leaves the tables within a few seconds.
pub const LEASE_TTL_S_FAST: u64 = 2;

pub const KEY: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
pub const FAILURE_TIMEOUT_MS_FAST: u64 = 1500;

/// The control plane's timings for a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub probe_period_ms: u64,
    pub failure_timeout_ms: u64,
    pub sync_interval_ms: u64,
    pub reconcile_interval_ms: u64,
    /// The safety pass (`repairIntervalMs`); tetherd's default in both sets, so the tests see the work
    /// driven by changes, not a pass that would hide a missed one.
    pub repair_interval_ms: u64,
    pub claim_grace_ms: u64,
}

impl Timings {
    /// Tests: a silent host is down after about two seconds.
    pub const FAST: Timings = Timings {
        probe_period_ms: 300,
        failure_timeout_ms: FAILURE_TIMEOUT_MS_FAST,
        sync_interval_ms: 1000,
        reconcile_interval_ms: 300,
        repair_interval_ms: 30_000,
        claim_grace_ms: 3000,
    };
    /// tetherd's defaults.
    pub const DEFAULT: Timings = Timings {
        probe_period_ms: 1000,
        failure_timeout_ms: 5000,
        sync_interval_ms: 5000,
        reconcile_interval_ms: 1000,
        repair_interval_ms: 30_000,
        claim_grace_ms: 600_000,
    };

    pub fn section(&self, bind: &str, peers: &[String]) -> Value {
        self.section_for(bind, peers, 16)
    }

    pub fn section_for(&self, bind: &str, peers: &[String], expected_hosts: u32) -> Value {
        json!({
            "expectedHosts": expected_hosts,
            "bind": bind,
            "peers": peers,
            "key": KEY,
            "probePeriodMs": self.probe_period_ms,
            "failureTimeoutMs": self.failure_timeout_ms,
            "syncIntervalMs": self.sync_interval_ms,
            "reconcileIntervalMs": self.reconcile_interval_ms,
            "repairIntervalMs": self.repair_interval_ms,
            "claimGraceMs": self.claim_grace_ms
        })
    }
}

/// A tetherd process in a namespace with its own directories; SIGKILLed on drop.
pub struct Tetherd {
    pub child: Child,
}

impl Tetherd {
    pub fn start(netns: &NetNs, dir: &std::path::Path, config: &std::path::Path) -> Tetherd {
        let log = std::fs::File::create(dir.join("tetherd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path_str()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_tetherd"))
            .args(["--stay", "--config"])
            .arg(config)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TETHER_STATE_DIR", dir.join("state"))
            .env("TETHER_RUN_DIR", dir.join("run"))
            .env(
                "TETHER_LOG",
                std::env::var("TETHER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tetherd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tether::client::notify::answers(&dir.join("run")) {
            assert!(
                Instant::now() < deadline,
                "tetherd in {} did not answer",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut t = Tetherd { child };
        // Answered, but by ours? A tetherd that finds another serving its run dir exits at once.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            matches!(t.child.try_wait(), Ok(None)),
            "the tetherd started for {} exited: another one serves that run dir",
            dir.display()
        );
        t
    }

    /// Resident memory in kB (nsenter execs tetherd in place, so the child's pid is tetherd's).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Tetherd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The overlay service's part of `tetherd status` for the tetherd serving `run_dir`.
pub fn overlay_status(run_dir: &std::path::Path) -> Value {
    let reply = tether::client::notify::request(run_dir, &Request::Status, Duration::from_secs(2))
        .expect("tetherd status");
    reply.status.unwrap_or_default()["services"]["overlay"].clone()
}

/// One simulated host: its namespace, state dirs and (while running) its tetherd.
pub struct Host {
    pub ns: HostNs,
    pub addr: String,
    pub tetherd: Option<Tetherd>,
}

impl Host {
    pub fn config_path(&self) -> PathBuf {
        self.ns.dir().join("tetherd.json")
    }

    pub fn start_tetherd(&mut self) {
        self.tetherd = Some(Tetherd::start(&self.ns, self.ns.dir(), &self.config_path()));
    }

    /// SIGKILL: the host vanishes without leaving the cluster.
    pub fn kill_tetherd(&mut self) {
        self.tetherd = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.ns.dir().join("tetherd.log")).unwrap_or_default()
    }

    pub fn overlay_status(&self) -> Value {
        overlay_status(&self.ns.run_dir())
    }

    fn plugin(&self, command: &str, conf: &Value, c: &NetNs) -> super::PluginOutput {
        self.plugin_with_args(command, conf, c, "")
    }

    fn plugin_with_args(
        &self,
        command: &str,
        conf: &Value,
        c: &NetNs,
        args: &str,
    ) -> super::PluginOutput {
        let config = self.config_path().display().to_string();
        let call = self
            .ns
            .plugin(env!("CARGO_BIN_EXE_tether-overlay"))
            .cmd(command)
            .container(c)
            .args(args)
            .env("TETHER_DAEMON_CONFIG", Some(&config))
            .conf(conf);
        // A plugin that finds no tetherd starts one; a test that stopped this host's tetherd wants it to
        // stay stopped (and a tetherd this harness did not start would outlive the test).
        let call = if self.tetherd.is_none() {
            call.env("TETHER_DAEMON_BIN", Some("/bin/true"))
        } else {
            call
        };
        call.run()
    }

    pub fn add(&self, conf: &Value, c: &NetNs) -> Value {
        self.plugin("ADD", conf, c).assert_ok().clone()
    }

    /// ADD that may fail: the plugin's whole answer.
    pub fn try_add(&self, conf: &Value, c: &NetNs) -> super::PluginOutput {
        self.plugin("ADD", conf, c)
    }

    /// ADD with the container name the runtime passes (CNI_ARGS `K8S_POD_NAME`), for DNS.
    pub fn add_named(&self, conf: &Value, c: &NetNs, name: &str) -> Value {
        self.plugin_with_args("ADD", conf, c, &format!("K8S_POD_NAME={name}"))
            .assert_ok()
            .clone()
    }

    /// CHECK of `c`'s attachment, with the ADD result as `prevResult`.
    pub fn check(&self, conf: &Value, c: &NetNs, prev: &Value) -> super::PluginOutput {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.clone();
        self.plugin("CHECK", &conf, c)
    }

    /// This host's own block claims of `network`: (block, state), the state "lost" for a claim that
    /// lost a conflict.
    pub fn own_claims(&self, network: &str) -> Vec<(String, String)> {
        let path = self
            .ns
            .state_dir()
            .join("overlay")
            .join(network)
            .join("claims.json");
        let v: Value = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        super::netns::as_vec(v["claims"].clone())
            .iter()
            .filter_map(|c| {
                let state = if c["lost"].as_bool() == Some(true) {
                    "lost"
                } else {
                    c["state"].as_str().unwrap_or("unconfirmed")
                };
                Some((c["block"].as_str()?.to_string(), state.to_string()))
            })
            .collect()
    }

    pub fn del(&self, conf: &Value, c: &NetNs) {
        self.plugin("DEL", conf, c).assert_ok();
    }

    /// The hosts whose block claims of `network` this host's control plane knows.
    pub fn peer_claim_hosts(&self, network: &str) -> Vec<String> {
        let path = self
            .ns
            .state_dir()
            .join("overlay")
            .join(network)
            .join("peer_claims.json");
        let v: Value = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        super::netns::as_vec(v)
            .iter()
            .filter_map(|c| c["host"].as_str().map(str::to_string))
            .collect()
    }

    /// The neighbour entries of `dev`, both families: (address, mac).
    pub fn neighbours(&self, dev: &str) -> Vec<(String, String)> {
        self.json_pairs(
            &["ip", "-j", "neigh", "show", "dev", dev],
            ("dst", "lladdr"),
        )
    }

    /// The static FDB entries of `dev`: (mac, dst).
    pub fn fdb(&self, dev: &str) -> Vec<(String, String)> {
        self.json_pairs(&["bridge", "-j", "fdb", "show", "dev", dev], ("mac", "dst"))
    }

    /// Two string fields of every object a `-j` listing prints (objects lacking either are left out).
    fn json_pairs(&self, cmd: &[&str], (a, b): (&str, &str)) -> Vec<(String, String)> {
        let out = self.ns.exec(cmd);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        super::netns::as_vec(v)
            .iter()
            .filter_map(|e| Some((e[a].as_str()?.to_string(), e[b].as_str()?.to_string())))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_tetherd();
    }
}

/// The fabric and its hosts; hosts go first on drop, then etcd, then the fabric.
pub struct Cluster {
    pub hosts: Vec<Host>,
    pub etcd: Option<Etcd>,
    pub fabric: HostNs,
    pub store: Store,
}

impl Cluster {
    /// Hosts on the gossip store.
    pub fn new(label: &str, n: usize, timings: Timings) -> Cluster {
        Cluster::on(label, n, timings, Store::Gossip)
    }

    pub fn on(label: &str, n: usize, timings: Timings, store: Store) -> Cluster {
        let fabric = HostNs::new(&format!("{label}f"));
        fabric.ip(&["link", "add", "fab0", "type", "bridge"]);
        fabric.ip(&["link", "set", "fab0", "up"]);
        let etcd_addrs: &[&str] = match store {
            Store::Gossip => &[],
            Store::Etcd | Store::EtcdTls => &ETCD_ADDRS[..1],
            Store::Etcd3 => &ETCD_ADDRS[..],
        };
        for addr in etcd_addrs {
            fabric.ip(&["addr", "add", &format!("{addr}/24"), "dev", "fab0"]);
        }
        let tls = (store == Store::EtcdTls)
            .then(|| super::etcd::EtcdTls::make(&fabric.dir().join("pki"), etcd_addrs));
        let etcd = (!etcd_addrs.is_empty()).then(|| Etcd::start_with(&fabric, etcd_addrs, tls));
        // Counts VXLAN packets crossing the underlay ("fwd" is an nft keyword, hence the chain name).
        let rules = "table bridge ovtest {\n chain vxlan_count {\n  type filter hook forward priority 0;\n  udp dport 4789 counter\n }\n}\n";
        let status = Command::new("nsenter")
            .arg(format!("--net={}", fabric.path_str()))
            .args(["--", "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(rules.as_bytes())?;
                c.wait()
            })
            .expect("nft in fabric");
        assert!(status.success(), "installing the fabric counter failed");
        let addrs: Vec<String> = (1..=n).map(|i| format!("192.168.77.{i}")).collect();
        let peers: Vec<String> = addrs.iter().map(|a| format!("{a}:7946")).collect();
        let mut hosts = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let ns = HostNs::new(&format!("{label}{i}"));
            let port = format!("fp{i}");
            ns.ip(&[
                "link",
                "add",
                "ul0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &fabric.name,
            ]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
            ns.ip(&["link", "set", "ul0", "up"]);
            ns.ip(&["link", "set", "lo", "up"]);
            fabric.ip(&["link", "set", &port, "master", "fab0", "up"]);
            let mut section = timings.section(&format!("{addr}:7946"), &peers);
            if let Some(etcd) = &etcd {
                section["store"] = json!({"etcd": {
                    "endpoints": etcd.endpoints(),
                    "prefix": "/tether",
                    "leaseTtlSeconds": LEASE_TTL_S_FAST,
                }});
                if let Some(t) = &etcd.tls {
                    section["store"]["etcd"]["caFile"] = json!(t.ca);
                    section["store"]["etcd"]["certFile"] = json!(t.client_cert);
                    section["store"]["etcd"]["keyFile"] = json!(t.client_key);
                }
            }
            let config = json!({
                "stay": true,
                "overlay": section,
            });
            std::fs::write(ns.dir().join("tetherd.json"), config.to_string()).unwrap();
            let mut host = Host {
                ns,
                addr: addr.clone(),
                tetherd: None,
            };
            host.start_tetherd();
            hosts.push(host);
        }
        let cluster = Cluster {
            hosts,
            etcd,
            fabric,
            store,
        };
        cluster.wait_for_members(n - 1);
        cluster
    }

    /// Waits until every running host sees `n` others up.
    pub fn wait_for_members(&self, n: usize) {
        for h in &self.hosts {
            if h.tetherd.is_none() {
                continue;
            }
            wait_until(
                &format!("{} sees {n} peers", h.addr),
                Duration::from_secs(15),
                || {
                    h.overlay_status()["membersUp"]
                        .as_array()
                        .map_or(0, Vec::len)
                        == n
                },
            );
        }
    }

    /// VXLAN packets the fabric bridge forwarded so far.
    pub fn vxlan_packets(&self) -> u64 {
        let out = self
            .fabric
            .exec_ok(&["nft", "-j", "list", "table", "bridge", "ovtest"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["rule"]["expr"].as_array())
            .flatten()
            .filter_map(|e| e["counter"]["packets"].as_u64())
            .sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.hosts.clear();
        self.etcd = None;
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An overlay network config on the `ul0` underlay.
pub fn overlay_conf(name: &str, vni: u32, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": name,
        "type": "tether-overlay",
        "vni": vni,
        "subnet": subnet,
        "underlay": "ul0",
        "blockSize": 26
    })
}

/// The container's overlay address (without prefix) from an ADD result.
pub fn overlay_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Every overlay address (without prefix) of an ADD result, IPv4 first: the ones on the container's
/// overlay interface (index 2; the egress address is on another).
pub fn overlay_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ip| ip["interface"] == 2)
        .map(|ip| {
            ip["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The container's MAC from an ADD result.
pub fn overlay_mac(result: &Value) -> String {
    result["interfaces"][2]["mac"].as_str().unwrap().to_string()
}
