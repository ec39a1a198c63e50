//! tether-overlay across three simulated hosts: three host namespaces whose `ul0` links hang on one bridge
//! in a "fabric" namespace (the underlay, 192.168.77.0/24), each running its own tetherd (own state, run and
//! config) and the plugin, as a runtime on that host would.

#[path = "harness/mod.rs"]
mod harness;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{HostNs, NetNs};
use serde_json::{json, Value};
use tether::daemon::control::Request;

const KEY: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const WRONG_KEY: [u8; 32] = [0x42; 32];
/// SWIM timings of the test clusters: a silent host is down after about two seconds.
const FAILURE_TIMEOUT_MS: u64 = 1500;

/// One simulated host: its namespace, state dirs and (while running) its tetherd.
struct Host {
    ns: HostNs,
    addr: String,
    tetherd: Option<Child>,
}

impl Host {
    fn config_path(&self) -> PathBuf {
        self.ns.dir().join("tetherd.json")
    }

    fn start_tetherd(&mut self) {
        let log = std::fs::File::create(self.ns.dir().join("tetherd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path_str()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_tetherd"))
            .args(["--stay", "--config"])
            .arg(self.config_path())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TETHER_STATE_DIR", self.ns.state_dir())
            .env("TETHER_RUN_DIR", self.ns.run_dir())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tetherd");
        self.tetherd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tether::daemon::notify::answers(&self.ns.run_dir()) {
            assert!(
                Instant::now() < deadline,
                "tetherd of {} did not answer; log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the host vanishes without leaving the cluster.
    fn kill_tetherd(&mut self) {
        if let Some(mut child) = self.tetherd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.ns.dir().join("tetherd.log")).unwrap_or_default()
    }

    fn overlay_status(&self) -> Value {
        let reply = tether::daemon::notify::request(
            &self.ns.run_dir(),
            &Request::Status,
            Duration::from_secs(2),
        )
        .expect("tetherd status");
        reply.status.unwrap_or_default()["services"]["overlay"].clone()
    }

    fn add(&self, conf: &Value, c: &NetNs) -> Value {
        let out = self
            .ns
            .plugin(env!("CARGO_BIN_EXE_tether-overlay"))
            .cmd("ADD")
            .container(c)
            .env(
                "TETHER_DAEMON_CONFIG",
                Some(&self.config_path().display().to_string()),
            )
            .conf(conf)
            .run();
        out.ok().clone()
    }

    fn del(&self, conf: &Value, c: &NetNs) {
        let out = self
            .ns
            .plugin(env!("CARGO_BIN_EXE_tether-overlay"))
            .cmd("DEL")
            .container(c)
            .env(
                "TETHER_DAEMON_CONFIG",
                Some(&self.config_path().display().to_string()),
            )
            .conf(conf)
            .run();
        out.ok();
    }

    /// The static FDB entries of `dev`: (mac, dst).
    fn fdb(&self, dev: &str) -> Vec<(String, String)> {
        let out = self.ns.exec(&["bridge", "-j", "fdb", "show", "dev", dev]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        harness::netns::as_vec(v)
            .iter()
            .filter_map(|e| {
                Some((
                    e["mac"].as_str()?.to_string(),
                    e["dst"].as_str()?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_tetherd();
    }
}

/// The fabric and its hosts; dropped hosts first, then the fabric.
struct Cluster {
    hosts: Vec<Host>,
    fabric: HostNs,
}

impl Cluster {
    fn new(label: &str, n: usize) -> Cluster {
        let fabric = HostNs::new(&format!("{label}f"));
        fabric.ip(&["link", "add", "fab0", "type", "bridge"]);
        fabric.ip(&["link", "set", "fab0", "up"]);
        // Counts VXLAN packets crossing the underlay.
        let rules = "table bridge ovtest {\n chain vxlan_count {\n  type filter hook forward priority 0;\n  udp dport 4789 counter\n }\n}\n";
        let out = Command::new("nsenter")
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
        assert!(out.success(), "installing the fabric counter failed");
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
            let config = json!({
                "stay": true,
                "overlay": {
                    "bind": format!("{addr}:7946"),
                    "peers": peers,
                    "key": KEY,
                    "probePeriodMs": 300,
                    "failureTimeoutMs": FAILURE_TIMEOUT_MS,
                    "syncIntervalMs": 1000,
                    "reconcileIntervalMs": 300,
                    "claimGraceMs": 60000
                }
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
        let cluster = Cluster { hosts, fabric };
        cluster.wait_for_members(n - 1);
        cluster
    }

    /// Waits until every host sees `n` others up.
    fn wait_for_members(&self, n: usize) {
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

    fn vxlan_packets(&self) -> u64 {
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
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn overlay_conf(name: &str, vni: u32, subnet: &str) -> Value {
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

/// The container's overlay address (without prefix) and MAC from an ADD result.
fn overlay_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn overlay_mac(result: &Value) -> String {
    result["interfaces"][2]["mac"].as_str().unwrap().to_string()
}

#[test]
fn containers_on_three_hosts_ping_and_connect_over_vxlan_and_del_removes_their_entries_everywhere()
{
    let cluster = Cluster::new("ova", 3);
    let conf = overlay_conf("ovl", 100, "10.210.0.0/16");
    let (h1, h2, h3) = (&cluster.hosts[0], &cluster.hosts[1], &cluster.hosts[2]);
    let c1 = h1.ns.container("c1");
    let c2 = h2.ns.container("c2");
    let c3 = h3.ns.container("c3");
    let r1 = h1.add(&conf, &c1);
    let r2 = h2.add(&conf, &c2);
    let r3 = h3.add(&conf, &c3);
    let (ip1, ip2, ip3) = (overlay_ip(&r1), overlay_ip(&r2), overlay_ip(&r3));
    assert!(
        ip1 != ip2 && ip2 != ip3 && ip1 != ip3,
        "hosts handed out one address twice: {ip1} {ip2} {ip3}"
    );
    assert_eq!(
        c1.mtu("eth0"),
        1450,
        "underlay MTU 1500 minus the VXLAN overhead"
    );

    let before = cluster.vxlan_packets();
    assert!(
        c1.ping_retry(&ip2, 10),
        "c1 on host 1 cannot ping c2 ({ip2}) on host 2"
    );
    assert!(
        c3.ping_retry(&ip1, 10),
        "c3 on host 3 cannot ping c1 ({ip1}) on host 1"
    );
    assert!(
        c2.ping_retry(&ip3, 10),
        "c2 on host 2 cannot ping c3 ({ip3}) on host 3"
    );
    harness::tcp::exchange(&c1, &ip1, 8080, &c2).expect("TCP from c2 to c1 over the overlay");
    assert!(
        cluster.vxlan_packets() > before,
        "no VXLAN (UDP 4789) packet crossed the fabric"
    );

    // Each remote container: one static FDB entry MAC -> its host's VTEP, and no flood entry.
    let fdb1 = h1.fdb("tvx100");
    assert!(
        fdb1.contains(&(overlay_mac(&r2), h2.addr.clone())),
        "host 1 fdb lacks c2: {fdb1:?}"
    );
    assert!(
        fdb1.contains(&(overlay_mac(&r3), h3.addr.clone())),
        "host 1 fdb lacks c3: {fdb1:?}"
    );
    assert!(
        !fdb1.iter().any(|(mac, _)| mac == "00:00:00:00:00:00"),
        "flood entry installed: {fdb1:?}"
    );

    // A deleted kernel entry is restored by the reconcile loop.
    h1.ns.exec_ok(&[
        "bridge",
        "fdb",
        "del",
        &overlay_mac(&r2),
        "dev",
        "tvx100",
        "dst",
        &h2.addr,
        "self",
    ]);
    wait_until(
        "host 1 restores c2's fdb entry",
        Duration::from_secs(5),
        || {
            h1.fdb("tvx100")
                .contains(&(overlay_mac(&r2), h2.addr.clone()))
        },
    );

    h2.del(&conf, &c2);
    let mac2 = overlay_mac(&r2);
    for h in [h1, h3] {
        wait_until(
            &format!("{} forgets c2", h.addr),
            Duration::from_secs(5),
            || !h.fdb("tvx100").iter().any(|(mac, _)| *mac == mac2),
        );
    }
    assert!(
        !h2.ns.has_link("tvx100"),
        "host 2's last container left but its vxlan device stayed"
    );
    assert!(
        !h2.ns.has_link("tob100"),
        "host 2's last container left but its bridge stayed"
    );
    assert!(c1.ping_retry(&ip3, 5), "c1 lost c3 after c2 left");
}

#[test]
fn two_overlay_networks_with_different_vnis_cannot_reach_each_other() {
    let cluster = Cluster::new("ovb", 2);
    let (h1, h2) = (&cluster.hosts[0], &cluster.hosts[1]);
    let blue = overlay_conf("blue", 201, "10.211.0.0/16");
    let red = overlay_conf("red", 202, "10.212.0.0/16");
    let blue1 = h1.ns.container("b1");
    let blue2 = h2.ns.container("b2");
    let red2 = h2.ns.container("r2");
    let rb1 = h1.add(&blue, &blue1);
    let rb2 = h2.add(&blue, &blue2);
    let rr2 = h2.add(&red, &red2);
    assert!(
        blue1.ping_retry(&overlay_ip(&rb2), 10),
        "blue containers cannot reach each other"
    );
    assert!(
        !blue1.ping_retry(&overlay_ip(&rr2), 2),
        "blue reached red across VNIs"
    );
    assert!(
        !red2.ping(&overlay_ip(&rb1)),
        "red reached blue across VNIs"
    );
    assert!(
        !h1.fdb("tvx201")
            .iter()
            .any(|(mac, _)| *mac == overlay_mac(&rr2)),
        "red's endpoint was programmed into blue's vxlan device"
    );
}

#[test]
fn a_killed_host_leaves_the_tables_after_the_failure_timeout_and_recovers_on_restart() {
    let mut cluster = Cluster::new("ovc", 3);
    let conf = overlay_conf("ovl", 300, "10.213.0.0/16");
    let c1 = cluster.hosts[0].ns.container("c1");
    let c3 = cluster.hosts[2].ns.container("c3");
    let r1 = cluster.hosts[0].add(&conf, &c1);
    let r3 = cluster.hosts[2].add(&conf, &c3);
    let mac3 = overlay_mac(&r3);
    assert!(
        c1.ping_retry(&overlay_ip(&r3), 10),
        "c1 cannot reach c3 before the failure"
    );

    cluster.hosts[2].kill_tetherd();
    let h1 = &cluster.hosts[0];
    wait_until(
        "host 1 drops the dead host's endpoints",
        Duration::from_millis(FAILURE_TIMEOUT_MS * 6),
        || !h1.fdb("tvx300").iter().any(|(mac, _)| *mac == mac3),
    );

    cluster.hosts[2].start_tetherd();
    cluster.wait_for_members(2);
    let h1 = &cluster.hosts[0];
    wait_until(
        "host 1 relearns the restarted host's endpoints",
        Duration::from_secs(10),
        || h1.fdb("tvx300").iter().any(|(mac, _)| *mac == mac3),
    );
    assert!(
        c3.ping_retry(&overlay_ip(&r1), 10),
        "the restarted host's container cannot reach c1"
    );
}

#[test]
fn a_message_sealed_with_the_wrong_key_is_dropped() {
    let cluster = Cluster::new("ovd", 2);
    let conf = overlay_conf("ovl", 400, "10.214.0.0/16");
    let h1 = &cluster.hosts[0];
    let c1 = h1.ns.container("c1");
    h1.add(&conf, &c1);
    let rejected_before = h1.overlay_status()["datagramsRejected"].as_u64().unwrap();

    // A well-formed record batch that would plant a fake endpoint, sealed with a key the cluster lacks.
    let forged_mac = [2, 0xde, 0xad, 0xbe, 0xef, 1];
    let packet = tether::overlay::Packet::Records {
        records: vec![tether::overlay::Record {
            key: tether::overlay::RecordKey::Endpoint {
                host: "192.168.77.2".parse().unwrap(),
                network: "ovl".into(),
                ip: Ipv4Addr::new(10, 214, 0, 200),
            },
            version: u64::MAX / 2,
            value: Some(tether::overlay::RecordValue::Endpoint {
                vni: 400,
                mac: forged_mac,
                vtep: "192.168.77.2".parse().unwrap(),
            }),
        }],
        reply: false,
    };
    let sealed = tether::overlay::Sealer::new(&WRONG_KEY).seal(&tether::overlay::encode(&packet));
    let target: SocketAddr = format!("{}:7946", h1.addr).parse().unwrap();
    let from = cluster.hosts[1].ns.path();
    std::thread::spawn(move || {
        let file = std::fs::File::open(from).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(&sealed, target).unwrap();
    })
    .join()
    .unwrap();

    wait_until(
        "host 1 counts the rejected datagram",
        Duration::from_secs(5),
        || h1.overlay_status()["datagramsRejected"].as_u64().unwrap() > rejected_before,
    );
    assert!(
        h1.log()
            .contains("dropped an overlay control-plane datagram"),
        "the drop was not logged"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !h1.fdb("tvx400")
            .iter()
            .any(|(mac, _)| mac == "02:de:ad:be:ef:01"),
        "the forged endpoint reached the kernel"
    );
}

#[test]
fn egress_leaves_masqueraded_through_the_gateway_bridge_where_containers_cannot_meet() {
    let cluster = Cluster::new("ove", 1);
    let h1 = &cluster.hosts[0];
    let conf = overlay_conf("ovl", 500, "10.215.0.0/16");
    let outside = h1.ns.outside();
    h1.ns.ip(&["route", "add", "default", "via", outside.addr]);
    let c1 = h1.ns.container("c1");
    let c2 = h1.ns.container("c2");
    let r1 = h1.add(&conf, &c1);
    let r2 = h1.add(&conf, &c2);
    assert!(
        c1.ping_retry(outside.addr, 5),
        "no egress from the overlay container"
    );
    assert!(
        c1.ping_retry(&overlay_ip(&r2), 5),
        "containers of one host cannot talk over their overlay"
    );
    let gw2 = r2["ips"][1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        !c1.ping_retry(&gw2, 2),
        "containers met through the gateway bridge"
    );
    assert_eq!(
        c1.default_gateway("-4").as_deref(),
        r1["ips"][1]["gateway"].as_str(),
        "the default route goes through the gateway bridge"
    );
}
