//! tetherd and the embedded resolver, end to end: containers made by tether-bridge in a test's own host
//! namespace ask 127.0.0.11 with `dig` (dnsutils) and busybox `nslookup` through nsenter; the tetherd each
//! test starts serves only that test's state and run directories, and forwards only to a fake upstream
//! in a test namespace (TETHER_RESOLV_CONF), never to this machine's resolver.

#[path = "harness/mod.rs"]
mod harness;

use harness::container_dns_server::{ContainerDnsServer, OWN_ANSWER};
use harness::dns_upstream::{in_netns, FakeUpstream, UPSTREAM_ANSWER};
use harness::switch_segment::{SwitchSegment, SEGMENT_GATEWAY, SEGMENT_SUBNET};
use harness::tether_cli::TetherCli;
use harness::{cni_result, network_conf, HostNs, NetNs};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const V: &str = "1.1.0";

/// One test's DNS setup: the resolv.conf and tetherd config every plugin call (and so tetherd) gets.
struct Dns<'h> {
    host: &'h HostNs,
    resolv_conf: PathBuf,
    daemon_conf: PathBuf,
}

impl<'h> Dns<'h> {
    fn new(host: &'h HostNs, upstreams: &[&str]) -> Dns<'h> {
        require_tool("dig", "dnsutils");
        let resolv_conf = host.dir().join("resolv.conf");
        let body: String = upstreams
            .iter()
            .map(|u| format!("nameserver {u}\n"))
            .collect();
        std::fs::write(&resolv_conf, body).unwrap();
        let daemon_conf = host.dir().join("tetherd.json");
        // Short upstream timeout so failover is quick; short idle grace so exit is quick.
        std::fs::write(
            &daemon_conf,
            r#"{"idleGraceMs": 500, "dns": {"upstreamTimeoutMs": 400}}"#,
        )
        .unwrap();
        Dns {
            host,
            resolv_conf,
            daemon_conf,
        }
    }

    /// A tether-bridge network `name` on its own bridge and subnet.
    fn network(&self, name: &str, bridge: &str, subnet: &str) -> Value {
        let mut conf = network_conf::tether_bridge(self.host, V, subnet);
        conf["name"] = json!(name);
        conf["bridge"] = json!(bridge);
        conf
    }

    /// Networks `net1` (bridge `tt0`) and `net2` (`tt1`) for containers on both: `net2` gives no default
    /// route (one per container).
    fn two_networks(&self, subnets: [&str; 2]) -> (Value, Value) {
        let mut net2 = self.network("net2", "tt1", subnets[1]);
        net2["isDefaultGateway"] = json!(false);
        (self.network("net1", "tt0", subnets[0]), net2)
    }

    /// A tether-macvlan network `name` (bridge mode) on the switch segment behind `parent`.
    fn macvlan_network(&self, name: &str, parent: &str) -> Value {
        json!({
            "cniVersion": V,
            "name": name,
            "type": "tether-macvlan",
            "master": parent,
            "mode": "bridge",
            "ipam": {
                "type": "tether-ipam",
                "subnet": SEGMENT_SUBNET,
                "rangeStart": "192.0.2.10",
                "rangeEnd": "192.0.2.99",
                "gateway": SEGMENT_GATEWAY,
                "dataDir": self.host.data_dir_str(),
            }
        })
    }

    /// The `tether` CLI in the host namespace with this test's dirs, resolv.conf and tetherd config;
    /// expects success and returns stdout.
    fn tether_ok(&self, args: &[&str]) -> String {
        TetherCli::new(self.host)
            .with_env("TETHER_RESOLV_CONF", &self.resolv_conf)
            .with_env("TETHER_DAEMON_CONFIG", &self.daemon_conf)
            .ok(args)
    }

    fn call(&self, cmd: &str, c: &NetNs, conf: &Value, name: &str) -> harness::PluginOutput {
        self.call_on(cmd, c, "eth0", conf, name)
    }

    fn call_on(
        &self,
        cmd: &str,
        c: &NetNs,
        ifname: &str,
        conf: &Value,
        name: &str,
    ) -> harness::PluginOutput {
        // The conf's type picks the plugin, as a runtime's CNI_PATH lookup would.
        let plugin = match conf["type"].as_str() {
            Some("tether-macvlan") => PathBuf::from(env!("CARGO_BIN_EXE_tether-macvlan")),
            _ => harness::binaries::tether_bridge(),
        };
        self.host
            .plugin(plugin)
            .cmd(cmd)
            .container(c)
            .ifname(ifname)
            .args(&format!("K8S_POD_NAME={name}"))
            .conf(conf)
            .env(
                "TETHER_RESOLV_CONF",
                Some(&self.resolv_conf.display().to_string()),
            )
            .env(
                "TETHER_DAEMON_CONFIG",
                Some(&self.daemon_conf.display().to_string()),
            )
            .run()
    }

    /// ADD with a name and podman-style aliases; returns the container's IPv4 address.
    fn add(&self, c: &NetNs, conf: &Value, name: &str, aliases: &[&str]) -> String {
        let mut conf = conf.clone();
        let net = conf["name"].as_str().unwrap().to_owned();
        conf["runtimeConfig"] = json!({ "aliases": { net: aliases } });
        let out = self.call("ADD", c, &conf, name);
        let result = out.result();
        assert_eq!(
            result["dns"]["nameservers"],
            json!(["127.0.0.11"]),
            "{result}"
        );
        cni_result::ip(result, "4")
    }

    /// Chains tether-portmap after an ADD whose result is `prev`, publishing `ports` (ADD or DEL).
    fn portmap(&self, cmd: &str, c: &NetNs, network: &str, prev: &Value, ports: &Value) {
        let conf = json!({
            "cniVersion": V,
            "name": network,
            "type": "tether-portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": ports},
            "prevResult": prev,
        });
        self.host
            .plugin(harness::binaries::tether_portmap())
            .cmd(cmd)
            .container(c)
            .conf(&conf)
            .run()
            .assert_ok();
    }

    fn del(&self, c: &NetNs, conf: &Value, name: &str) {
        self.call("DEL", c, conf, name).assert_ok();
    }

    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.host.run_dir().join("tetherd.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

fn alive(pid: i32) -> bool {
    // Not our child (tetherd double-forks), so it never lingers as our zombie.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install Debian's {package} (.ci/run does) to run the DNS tests"
    );
}

/// `dig @127.0.0.11` from inside `c`: (status, answer lines).
fn dig(c: &NetNs, args: &[&str]) -> (String, Vec<String>) {
    dig_at(c, "127.0.0.11", 53, args)
}

/// `dig @server -p port` from inside `c`: (status, answer lines).
fn dig_at(c: &NetNs, server: &str, port: u16, args: &[&str]) -> (String, Vec<String>) {
    let (at, port) = (format!("@{server}"), port.to_string());
    let mut all = vec!["dig", "+time=3", "+tries=1", &at, "-p", &port];
    all.extend_from_slice(args);
    let out = c.exec(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_owned();
    let answers = text
        .split(";; ANSWER SECTION:")
        .nth(1)
        .map(|s| {
            s.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, answers)
}

/// The ports `ss -H -lnut` lists as bound on `address`.
fn local_ports(ss: &str, address: &str) -> Vec<u16> {
    ss.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter_map(|local| local.rsplit_once(':'))
        .filter(|(a, _)| *a == address)
        .filter_map(|(_, p)| p.parse().ok())
        .collect()
}

/// `nft list table ip tether` inside `c`: the resolver redirect; None when the table is absent.
fn resolver_redirect(c: &NetNs) -> Option<String> {
    let out = c.exec(&["nft", "list", "table", "ip", "tether"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sorted_ports(mut v: Vec<u16>) -> Vec<u16> {
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn containers_resolve_each_other_by_name_alias_and_name_dot_network() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.61.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let ip1 = dns.add(&c1, &net, "web1", &["www"]);
    let ip2 = dns.add(&c2, &net, "web2", &["www", "api"]);

    assert_eq!(dig(&c1, &["web2"]), ("NOERROR".into(), vec![ip2.clone()]));
    assert_eq!(dig(&c2, &["WEB1.net1"]).1, vec![ip1.clone()]);
    assert_eq!(dig(&c1, &["api.net1"]).1, vec![ip2.clone()]);
    assert_eq!(dig(&c1, &["+tcp", "web2"]).1, vec![ip2.clone()], "over TCP");
    let (status, www) = dig(&c1, &["www"]);
    assert_eq!(status, "NOERROR");
    assert_eq!(sorted(www.clone()), sorted(vec![ip1.clone(), ip2.clone()]));
    let again = dig(&c1, &["www"]).1;
    assert_ne!(www[0], again[0], "a shared alias answers in rotating order");
    assert_eq!(
        dig(&c1, &["AAAA", "web2"]),
        ("NOERROR".into(), vec![]),
        "AAAA of an IPv4-only name is an empty NOERROR"
    );
    assert_eq!(dig(&c1, &["nobody.net1"]).0, "NXDOMAIN");
    let ptr = dig(&c1, &["-x", &ip2]).1;
    assert_eq!(ptr, vec!["web2.net1.".to_owned()]);

    // busybox's nslookup, as a minimal container image would have it.
    let out = c1.exec_ok(&["busybox", "nslookup", "web2.net1", "127.0.0.11"]);
    assert!(out.contains(&ip2), "{out}");

    dns.del(&c1, &net, "web1");
    dns.del(&c2, &net, "web2");
}

#[test]
fn a_container_on_another_network_cannot_resolve_or_be_resolved() {
    let host = HostNs::new("dns");
    let upstream_ns = host.outside();
    let upstream = FakeUpstream::start(&upstream_ns.ns, upstream_ns.addr);
    let dns = Dns::new(&host, &[upstream_ns.addr]);
    let net1 = dns.network("net1", "tt0", "10.62.0.0/24");
    let net2 = dns.network("net2", "tt1", "10.63.0.0/24");
    let (c1, c3) = (host.container("c1"), host.container("c3"));
    let ip1 = dns.add(&c1, &net1, "web1", &[]);
    let ip3 = dns.add(&c3, &net2, "other", &["shared"]);

    // Not answered locally: forwarded like any outside name, so only the upstream's address comes back.
    let (_, answers) = dig(&c1, &["other"]);
    assert!(!answers.contains(&ip3), "{answers:?}");
    assert_eq!(
        dig(&c1, &["other.net2"]).1,
        vec![UPSTREAM_ANSWER.to_string()]
    );
    assert!(!dig(&c3, &["web1"]).1.contains(&ip1));
    assert_eq!(
        dig(&c3, &["web1.net1"]).1,
        vec![UPSTREAM_ANSWER.to_string()]
    );
    assert!(dig(&c1, &["-x", &ip3]).1.is_empty());
    assert!(upstream.queries() > 0);
    assert_eq!(dig(&c3, &["shared"]).1, vec![ip3]);

    dns.del(&c1, &net1, "web1");
    dns.del(&c3, &net2, "other");
}

#[test]
fn other_names_are_forwarded_with_failover_and_cached() {
    let host = HostNs::new("dns");
    let upstream_ns = host.outside();
    let upstream = FakeUpstream::start(&upstream_ns.ns, upstream_ns.addr);
    // The first server answers nothing (no host has that address): tetherd must move on to the second.
    let dns = Dns::new(&host, &["198.51.100.9", upstream_ns.addr]);
    let net = dns.network("net1", "tt0", "10.64.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "web1", &[]);

    assert_eq!(
        dig(&c1, &["example.test"]),
        ("NOERROR".into(), vec![UPSTREAM_ANSWER.to_string()])
    );
    assert_eq!(upstream.queries(), 1);
    for _ in 0..5 {
        assert_eq!(
            dig(&c1, &["Example.Test"]).1,
            vec![UPSTREAM_ANSWER.to_string()]
        );
    }
    assert_eq!(
        upstream.queries(),
        1,
        "repeated names are answered from the cache within their TTL"
    );
    assert_eq!(
        dig(&c1, &["+tcp", "tcp.example.test"]).1,
        vec![UPSTREAM_ANSWER.to_string()]
    );

    // resolv.conf changes are followed: with no server left, forwarding fails (SERVFAIL), locals still work.
    std::fs::write(&dns.resolv_conf, "# no servers\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(dig(&c1, &["fresh.example.test"]).0, "SERVFAIL");
    assert_eq!(dig(&c1, &["web1"]).0, "NOERROR");
    dns.del(&c1, &net, "web1");
}

/// Issue 12: an upstream with nothing on its port took the whole upstream timeout (3 s here, as a
/// default-like setting) to come back SERVFAIL, so a client waiting 1 s timed out first. Connected
/// sockets see the ICMP port-unreachable: SERVFAIL, or the next server's answer, well within a second.
#[test]
fn a_refusing_upstream_is_noticed_at_once() {
    let host = HostNs::new("dns");
    let upstream_ns = host.outside();
    // A second address in the outside namespace where nothing listens: the kernel there refuses.
    upstream_ns
        .ns
        .ip(&["addr", "add", "198.51.100.3/24", "dev", "up0"]);
    let upstream = FakeUpstream::start(&upstream_ns.ns, upstream_ns.addr);
    let dns = Dns::new(&host, &["198.51.100.3"]);
    std::fs::write(
        &dns.daemon_conf,
        r#"{"idleGraceMs": 500, "dns": {"upstreamTimeoutMs": 3000}}"#,
    )
    .unwrap();
    let net = dns.network("net1", "tt0", "10.65.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "web1", &[]);

    // Only the refusing server: SERVFAIL before a client that waits one second gives up.
    for name in ["one.example.test", "two.example.test", "three.example.test"] {
        let (status, _) = dig(&c1, &["+time=1", "+tries=1", name]);
        assert_eq!(status, "SERVFAIL", "{name}: the client timed out");
    }
    assert_eq!(upstream.queries(), 0);

    // Refusing server first, a live one second: the live one answers in time.
    std::fs::write(
        &dns.resolv_conf,
        format!("nameserver 198.51.100.3\nnameserver {}\n", upstream_ns.addr),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    for i in 0..4 {
        let name = format!("failover{i}.example.test");
        assert_eq!(
            dig(&c1, &["+time=1", "+tries=1", &name]),
            ("NOERROR".into(), vec![UPSTREAM_ANSWER.to_string()]),
            "{name}"
        );
        // Past the back-off, so the refusing server is asked (and refuses) again.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(upstream.queries(), 4);
    dns.del(&c1, &net, "web1");
}

#[test]
fn internal_networks_resolve_their_names_but_forward_nothing() {
    let host = HostNs::new("dns");
    let upstream_ns = host.outside();
    let upstream = FakeUpstream::start(&upstream_ns.ns, upstream_ns.addr);
    let dns = Dns::new(&host, &[upstream_ns.addr]);
    let mut net = dns.network("inner", "tt0", "10.65.0.0/24");
    net["internal"] = json!(true);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    dns.add(&c1, &net, "a", &[]);
    let ip2 = dns.add(&c2, &net, "b", &[]);
    assert_eq!(dig(&c1, &["b"]).1, vec![ip2]);
    assert_eq!(dig(&c1, &["example.test"]).0, "REFUSED");
    assert_eq!(upstream.queries(), 0);
    dns.del(&c1, &net, "a");
    dns.del(&c2, &net, "b");
}

#[test]
fn dns_can_be_turned_off_for_a_network() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let mut net = dns.network("quiet", "tt0", "10.66.0.0/24");
    net["embeddedDns"] = json!(false);
    let c1 = host.container("c1");
    let out = dns.call("ADD", &c1, &net, "a");
    assert!(
        out.result()["dns"]["nameservers"].is_null(),
        "{}",
        out.stdout
    );
    assert_eq!(
        dns.pid(),
        None,
        "no tetherd is started for a network without DNS"
    );
    assert!(!host.run_dir().join("tetherd.sock").exists());
    dns.del(&c1, &net, "a");
}

#[test]
fn killing_tetherd_loses_nothing_and_it_exits_after_the_last_del() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.67.0.0/24");
    let (c1, c2, c3) = (
        host.container("c1"),
        host.container("c2"),
        host.container("c3"),
    );
    dns.add(&c1, &net, "one", &[]);
    let ip2 = dns.add(&c2, &net, "two", &[]);
    let first = dns.pid().expect("ADD started tetherd");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(first) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(first), "tetherd survived SIGKILL");
    // A killed process shows as a zombie once its main thread is gone, but its sockets close with its last
    // thread, which on a loaded machine can come later: a query meanwhile sits unanswered in the old socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let resolver_ports = || local_ports(&c1.exec_ok(&["ss", "-H", "-lnut"]), "127.0.0.11");
    while !resolver_ports().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        resolver_ports(),
        Vec::<u16>::new(),
        "the dead tetherd's sockets stayed open"
    );
    // Its sockets are closed and the redirect stays: a query is refused at once (the port-unreachable
    // quoting the private port is rewritten to quote port 53, else the client's socket ignores it and
    // waits out its timeout), over UDP and TCP.
    for transport in ["+notcp", "+tcp"] {
        let out = c1.exec(&[
            "dig",
            "+time=3",
            "+tries=1",
            transport,
            "@127.0.0.11",
            "two",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("connection refused"),
            "{transport} with tetherd dead: {text}"
        );
    }

    // The next ADD starts a new tetherd, which rebuilds everything from the records.
    let ip3 = dns.add(&c3, &net, "three", &[]);
    let second = dns.pid().expect("the next ADD restarted tetherd");
    assert_ne!(first, second);
    assert_eq!(dig(&c1, &["two"]).1, vec![ip2]);
    assert_eq!(dig(&c1, &["three"]).1, vec![ip3]);
    // The new tetherd's sockets have new ports; its redirect replaced the old one, which is not kept beside.
    let (redirected, listening) = redirect_and_listening_ports(&c1);
    assert_eq!(redirected, listening);

    for (c, n) in [(&c1, "one"), (&c2, "two"), (&c3, "three")] {
        dns.del(c, &net, n);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(second) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(second), "tetherd still runs after the last DEL");
}

#[test]
fn the_resolver_listens_inside_containers_only() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.68.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "one", &[]);
    let pid = dns.pid().expect("tetherd runs");

    let listening = |ns: &NetNs| ns.exec_ok(&["ss", "-H", "-lnut"]);
    let inside = listening(&c1);
    // On 127.0.0.11 at private ports (one UDP, one TCP), never on port 53 itself: that is the container's.
    let resolver_ports = local_ports(&inside, "127.0.0.11");
    assert_eq!(resolver_ports.len(), 2, "{inside}");
    assert!(!resolver_ports.contains(&53), "{inside}");
    let on_host = listening(&host.ns);
    assert!(
        !on_host.contains(":53 "),
        "the host namespace has a DNS socket: {on_host}"
    );
    // tetherd's own namespace (the one it was started in) holds no listening socket but its control socket.
    let own = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
    assert!(
        !own.lines().skip(1).any(|l| l.contains(":0035 ")),
        "tetherd has a UDP socket on port 53 in its own namespace: {own}"
    );
    dns.del(&c1, &net, "one");
}

#[test]
fn garbage_packets_over_udp_and_tcp_leave_it_serving() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.69.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    dns.add(&c1, &net, "one", &[]);
    let ip2 = dns.add(&c2, &net, "two", &[]);
    let pid = dns.pid().expect("tetherd runs");

    in_netns(&c1, || {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        };
        let server = "127.0.0.11:53";
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let valid = tether::dns::wire::build_query(7, "two", 1, true);
        let mut packets: Vec<Vec<u8>> =
            vec![vec![], vec![0], vec![0; 11], vec![0; 12], vec![0xff; 12]];
        for len in [13, 40, 100, 511, 512, 513, 1500, 4096, 65_000] {
            for _ in 0..20 {
                packets.push(random(len));
            }
        }
        for cut in 0..valid.len() {
            packets.push(valid[..cut].to_vec()); // truncated
        }
        let mut looped = valid.clone();
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // a name pointing at itself
        packets.push(looped);
        let mut many_counts = valid.clone();
        many_counts[4..12].fill(0xff);
        packets.push(many_counts);
        for p in &packets {
            let _ = udp.send_to(p, server);
        }
        // TCP: garbage frames, a length promising more than is sent, a frame then a hang-up, a huge frame.
        for body in [
            random(300),
            random(2),
            vec![0xff, 0xff, 1, 2, 3],
            random(70_000),
        ] {
            if let Ok(mut s) = std::net::TcpStream::connect(server) {
                let _ = s.write_all(&body);
            }
        }
        if let Ok(mut s) = std::net::TcpStream::connect(server) {
            let mut frame = (valid.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&valid);
            let _ = s.write_all(&frame[..frame.len() / 2]);
        }
        // Many idle TCP clients at once (more than it accepts).
        let idle: Vec<_> = (0..100)
            .filter_map(|_| std::net::TcpStream::connect(server).ok())
            .collect();
        // It still answers over UDP meanwhile.
        udp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut q = valid.clone();
        q[..2].copy_from_slice(&[0, 99]);
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(5);
        let answered = loop {
            assert!(
                Instant::now() < deadline,
                "no answer to a valid query after the garbage"
            );
            let _ = udp.send_to(&q, server);
            // Drain the replies to the garbage until ours comes.
            match udp.recv_from(&mut buf) {
                Ok((n, _)) if buf[..2] == [0, 99] => break n,
                _ => continue,
            }
        };
        assert!(answered > q.len(), "the valid query got an empty reply");
        // Once the idle clients hang up, TCP is served again (a full server drops new clients meanwhile).
        drop(idle);
        let mut frame = (valid.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&valid);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exchange = || -> std::io::Result<()> {
                let mut s = std::net::TcpStream::connect(server)?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(&frame)?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len)
            };
            match exchange() {
                Ok(()) => break,
                Err(e) => assert!(Instant::now() < deadline, "TCP not served again: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    assert_eq!(dns.pid(), Some(pid), "tetherd died from garbage");
    assert_eq!(dig(&c1, &["two"]).1, vec![ip2.clone()]);
    assert_eq!(dig(&c1, &["+tcp", "two"]).1, vec![ip2]);
    dns.del(&c1, &net, "one");
    dns.del(&c2, &net, "two");
}

#[test]
fn without_tetherd_add_succeeds_and_keeps_the_runtime_resolvers() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let mut net = dns.network("net1", "tt0", "10.70.0.0/24");
    net["dns"] = json!({"nameservers": ["192.0.2.53"]});
    let c1 = host.container("c1");
    let out = host
        .tether_bridge()
        .cmd("ADD")
        .container(&c1)
        .conf(&net)
        .env("TETHER_DAEMON_BIN", Some("/nonexistent/tetherd"))
        .env(
            "TETHER_RESOLV_CONF",
            Some(&dns.resolv_conf.display().to_string()),
        )
        .run();
    assert_eq!(
        out.result()["dns"]["nameservers"],
        json!(["192.0.2.53"]),
        "a resolver that cannot start is not handed to the container"
    );
    assert_eq!(dns.pid(), None);
    host.tether_bridge()
        .cmd("DEL")
        .container(&c1)
        .conf(&net)
        .env("TETHER_DAEMON_BIN", Some("/nonexistent/tetherd"))
        .run()
        .assert_ok();
}

#[test]
fn records_changed_without_a_notify_are_picked_up_by_the_records_watch() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.71.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    dns.add(&c1, &net, "one", &[]);
    let ip2 = dns.add(&c2, &net, "two", &[]);
    assert_eq!(dig(&c1, &["two.net1"]).1, vec![ip2]);

    // As if a GC or a crashed plugin removed the record and never told tetherd.
    let record = host.state_dir().join("attachments/net1/c2.eth0.json");
    std::fs::remove_file(&record).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dig(&c1, &["two.net1"]).0 != "NXDOMAIN" {
        assert!(
            Instant::now() < deadline,
            "tetherd still answers for a removed record"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listening = c2.exec_ok(&["ss", "-H", "-lnu"]);
    assert!(
        !listening.contains("127.0.0.11:53"),
        "the departed container still has a resolver: {listening}"
    );
    dns.del(&c1, &net, "one");
    dns.del(&c2, &net, "two");
}

#[test]
fn queries_keep_being_answered_while_containers_come_and_go() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.72.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "steady", &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let c1_handle = c1.clone();
    let asker = std::thread::spawn(move || {
        in_netns(&c1_handle, move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.connect("127.0.0.11:53").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (mut asked, mut unanswered) = (0u32, 0u32);
            let mut buf = [0u8; 512];
            while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                let id = asked as u16;
                let q = tether::dns::wire::build_query(id, "steady", 1, false);
                sock.send(&q).unwrap();
                asked += 1;
                // Every query gets its own answer, with an address, within the timeout.
                loop {
                    match sock.recv(&mut buf) {
                        Ok(n) if tether::dns::wire::id(&buf[..n]) == Some(id) => {
                            if tether::dns::wire::answers(&buf[..n]).map_or(true, |a| a.is_empty())
                            {
                                unanswered += 1;
                            }
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => {
                            unanswered += 1;
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (asked, unanswered)
        })
    });
    for round in 0..3 {
        let others: Vec<NetNs> = (0..3)
            .map(|i| host.container(&format!("r{round}x{i}")))
            .collect();
        for (i, c) in others.iter().enumerate() {
            dns.add(c, &net, &format!("temp{i}"), &[]);
        }
        for (i, c) in others.iter().enumerate() {
            dns.del(c, &net, &format!("temp{i}"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, unanswered) = asker.join().unwrap();
    assert!(asked > 10, "only {asked} queries were asked");
    assert_eq!(
        unanswered, 0,
        "{unanswered} of {asked} queries went unanswered during reloads"
    );
    dns.del(&c1, &net, "steady");
}

#[test]
fn a_container_on_two_networks_sees_both_until_it_leaves_one() {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let (net1, net2) = dns.two_networks(["10.73.0.0/24", "10.74.0.0/24"]);
    let (c1, a, b) = (
        host.container("c1"),
        host.container("a"),
        host.container("b"),
    );
    let ip_a = dns.add(&a, &net1, "alpha", &[]);
    let ip_b = dns.add(&b, &net2, "beta", &[]);
    dns.add(&c1, &net1, "multi", &[]);
    dns.call_on("ADD", &c1, "eth1", &net2, "multi").result();

    assert_eq!(dig(&c1, &["alpha"]).1, vec![ip_a.clone()]);
    assert_eq!(dig(&c1, &["beta.net2"]).1, vec![ip_b]);
    // Both networks can resolve the two-network container; each sees its own address of it.
    assert_eq!(dig(&a, &["multi"]).1.len(), 1);
    assert_eq!(dig(&b, &["multi"]).1.len(), 1);
    assert_ne!(dig(&a, &["multi"]).1, dig(&b, &["multi"]).1);

    // Leaving net2: its names are out of scope, the resolver stays for net1.
    dns.call_on("DEL", &c1, "eth1", &net2, "multi").assert_ok();
    assert_eq!(
        dig(&c1, &["beta.net2"]).0,
        "SERVFAIL",
        "forwarded, and no upstream"
    );
    assert_eq!(dig(&c1, &["alpha"]).1, vec![ip_a]);
    assert!(dig(&b, &["multi"]).1.is_empty());

    dns.del(&c1, &net1, "multi");
    dns.del(&a, &net1, "alpha");
    dns.del(&b, &net2, "beta");
}

#[test]
fn macvlan_containers_resolve_each_other_but_not_a_bridge_networks_names() {
    let seg = SwitchSegment::new("dnsm", "mvp0");
    let dns = Dns::new(&seg.host, &[]);
    let mv = dns.macvlan_network("mvnet", "mvp0");
    let br = dns.network("brnet", "tt0", "10.68.0.0/24");
    let (m1, m2, b1) = (
        seg.host.container("m1c"),
        seg.host.container("m2c"),
        seg.host.container("b1"),
    );
    let ip1 = dns.add(&m1, &mv, "alpha", &["db"]);
    let ip2 = dns.add(&m2, &mv, "beta", &[]);
    let ipb = dns.add(&b1, &br, "gamma", &[]);

    assert_eq!(dig(&m2, &["alpha"]), ("NOERROR".into(), vec![ip1.clone()]));
    assert_eq!(dig(&m2, &["db"]).1, vec![ip1.clone()], "alias");
    assert_eq!(dig(&m2, &["db.mvnet"]).1, vec![ip1.clone()]);
    assert_eq!(dig(&m1, &["beta.mvnet"]).1, vec![ip2.clone()]);
    let out = m1.exec_ok(&["busybox", "nslookup", "beta", "127.0.0.11"]);
    assert!(out.contains(&ip2), "{out}");

    // No upstream is configured, so a name that is not the macvlan network's is not answered with
    // the bridge container's address.
    for name in ["gamma", "gamma.brnet"] {
        let (status, answers) = dig(&m1, &[name]);
        assert!(!answers.contains(&ipb), "{name}: {status} {answers:?}");
        assert_ne!(status, "NOERROR", "{name}: {answers:?}");
    }
    assert!(dig(&m1, &["-x", &ipb]).1.is_empty());
    assert!(!dig(&b1, &["alpha"]).1.contains(&ip1));
    assert_eq!(dig(&b1, &["gamma"]).1, vec![ipb]);

    dns.del(&m1, &mv, "alpha");
    dns.del(&m2, &mv, "beta");
    dns.del(&b1, &br, "gamma");
}

#[test]
fn cli_attach_name_and_alias_resolve_until_detach() {
    let host = HostNs::new("dnsc");
    let dns = Dns::new(&host, &[]);
    dns.tether_ok(&["network", "create", "--subnet", "10.69.0.0/24", "front"]);
    let (web, client) = (host.container("web"), host.container("cl"));
    let attach = |c: &NetNs, extra: &[&str]| -> Value {
        let path = c.path_str();
        let mut args = vec!["attach", "--json", "--network", "front", "--netns", &path];
        args.extend_from_slice(extra);
        args.push(&c.label);
        let text = dns.tether_ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("attach: {e}: {text}"))
    };
    let a = attach(&web, &["--name", "web", "--alias", "www"]);
    attach(&client, &["--name", "client"]);
    let ip = a["ips"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    for name in ["web", "www", "web.front", "WWW.front"] {
        assert_eq!(
            dig(&client, &[name]),
            ("NOERROR".into(), vec![ip.clone()]),
            "{name}"
        );
    }
    let out = client.exec_ok(&["busybox", "nslookup", "web", "127.0.0.11"]);
    assert!(out.contains(&ip), "{out}");

    dns.tether_ok(&["detach", "web"]);
    // Under the network's own zone the resolver is authoritative: NXDOMAIN at once.
    for name in ["web.front", "www.front"] {
        assert_eq!(dig(&client, &[name]), ("NXDOMAIN".into(), vec![]), "{name}");
    }
    // A bare name it no longer knows is forwarded like any other name; this test gives tetherd no
    // upstream, so the client gets SERVFAIL (a real upstream would say NXDOMAIN) and never the old address.
    assert_eq!(dig(&client, &["web"]), ("SERVFAIL".into(), vec![]));
    dns.tether_ok(&["detach", "cl"]);
    dns.tether_ok(&["network", "rm", "front"]);
}

#[test]
fn a_container_serves_its_own_port_53_to_neighbours_and_a_published_port_while_127_0_0_11_answers_tether_names(
) {
    let host = HostNs::new("dns53");
    let outside = host.outside();
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.71.0.0/24");
    let (srv, nb) = (host.container("srv"), host.container("nb"));
    let mut conf = net.clone();
    conf["runtimeConfig"] = json!({ "aliases": { "net1": [] } });
    let added = dns.call("ADD", &srv, &conf, "srv");
    let first = added.result().clone();
    assert_eq!(
        first["dns"]["nameservers"],
        json!(["127.0.0.11"]),
        "{first}"
    );
    let ip_srv = cni_result::ip(&first, "4");
    let ports = json!([{"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]);
    dns.portmap("ADD", &srv, "net1", &first, &ports);
    let ip_nb = dns.add(&nb, &net, "nb", &[]);

    // The container's own server takes port 53 on every address, IPv4 and dual-stack IPv6, and another
    // port of 127.0.0.11 is free too.
    let server = ContainerDnsServer::start(&srv, "0.0.0.0:53", "[::]:53")
        .expect("the container binds port 53 itself");
    let other_port = in_netns(&srv, || {
        std::net::UdpSocket::bind("127.0.0.11:5353").map(drop)
    });
    assert!(other_port.is_ok(), "127.0.0.11:5353: {other_port:?}");

    // 127.0.0.11:53 still answers tether's names inside it, over UDP and TCP, and its server sees none
    // of those queries.
    let tether_answer = ("NOERROR".to_string(), vec![ip_nb.clone()]);
    assert_eq!(dig(&srv, &["nb"]), tether_answer);
    assert_eq!(dig(&srv, &["+tcp", "nb.net1"]), tether_answer);
    assert_eq!(
        server.queries(),
        0,
        "a query to 127.0.0.11 reached the container's server"
    );

    // Its address on port 53 is its own server: from a neighbour, from itself, and from outside the host
    // through the published port.
    let own = (String::from("NOERROR"), vec![OWN_ANSWER.to_string()]);
    assert_eq!(
        dig_at(&nb, &ip_srv, 53, &["app.example"]),
        own,
        "neighbour, udp"
    );
    assert_eq!(
        dig_at(&nb, &ip_srv, 53, &["+tcp", "app.example"]),
        own,
        "neighbour, tcp"
    );
    assert_eq!(
        dig_at(&srv, &ip_srv, 53, &["nb"]),
        own,
        "itself by its address"
    );
    assert_eq!(
        dig_at(&outside.ns, outside.host_addr, 8053, &["app.example"]),
        own,
        "outside client through the published udp port"
    );
    assert_eq!(server.queries(), 4);

    let redirect = resolver_redirect(&srv).expect("table ip tether in the container");
    for proto in ["udp", "tcp"] {
        assert!(
            redirect.contains(&format!(
                "ip daddr 127.0.0.11 {proto} dport 53 notrack {proto} dport set "
            )),
            "{redirect}"
        );
    }
    // Stateless: the queries above through 127.0.0.11 left no connection behind in the container's
    // conntrack (a NAT redirect leaves one per query's source port).
    let tracked = srv.exec_ok(&["cat", "/proc/net/nf_conntrack"]);
    assert!(!tracked.contains("127.0.0.11"), "{tracked}");

    // DEL on a namespace that lives on leaves nothing of the resolver in it: 127.0.0.11:53 is the
    // container's to take.
    drop(server);
    dns.portmap("DEL", &srv, "net1", &first, &ports);
    dns.del(&srv, &net, "srv");
    assert_eq!(resolver_redirect(&srv), None, "the redirect outlived DEL");
    let later = ContainerDnsServer::start(&srv, "127.0.0.11:53", "127.0.0.11:53")
        .expect("127.0.0.11:53 is free after DEL");
    assert_eq!(dig(&srv, &["nb"]).1, vec![OWN_ANSWER.to_string()]);
    assert_eq!(later.queries(), 1);
    dns.del(&nb, &net, "nb");
}

#[test]
fn a_container_holding_127_0_0_11_53_before_add_keeps_it_and_the_result_leaves_the_resolver_out_but_a_wildcard_bind_does_not(
) {
    let host = HostNs::new("dnsown");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.72.0.0/24");
    let (own, nb) = (host.container("own"), host.container("nb"));
    let server = ContainerDnsServer::start(&own, "127.0.0.11:53", "127.0.0.11:53")
        .expect("the container's server binds 127.0.0.11:53 before ADD");

    let out = dns.call("ADD", &own, &net, "own");
    let result = out.result();
    let nameservers = result["dns"]["nameservers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !nameservers.contains(&json!("127.0.0.11")),
        "the result points the container at tether's resolver: {result}"
    );
    let ip_own = cni_result::ip(result, "4");
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(host.state_dir().join("attachments/net1/own.eth0.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["ownResolver"], json!(true), "{record}");
    // A wildcard bind of port 53 before ADD is not holding 127.0.0.11:53: that container gets the resolver
    // (`add` checks the result) and keeps its server.
    let wildcard = ContainerDnsServer::start(&nb, "0.0.0.0:53", "[::]:53").unwrap();
    let ip_nb = dns.add(&nb, &net, "nb", &[]);
    assert_eq!(dig(&nb, &["own"]).1, vec![ip_own.clone()]);
    assert_eq!(
        dig_at(&nb, &ip_nb, 53, &["x"]).1,
        vec![OWN_ANSWER.to_string()]
    );
    assert_eq!(wildcard.queries(), 1);

    // Inside, 127.0.0.11:53 stays the container's own server (UDP and TCP); no redirect is installed.
    let own_answer = vec![OWN_ANSWER.to_string()];
    assert_eq!(dig(&own, &["nb"]).1, own_answer);
    assert_eq!(dig(&own, &["+tcp", "nb"]).1, own_answer);
    assert_eq!(server.queries(), 2);
    assert_eq!(resolver_redirect(&own), None);
    let inside = own.exec_ok(&["ss", "-H", "-lnut"]);
    assert_eq!(local_ports(&inside, "127.0.0.11"), vec![53, 53], "{inside}");
    // Its name still resolves for its neighbours, which keep tether's resolver.
    assert_eq!(dig(&nb, &["own"]), ("NOERROR".into(), vec![ip_own]));
    drop(wildcard);

    dns.del(&own, &net, "own");
    dns.del(&nb, &net, "nb");
}

#[test]
fn a_macvlan_container_serves_its_own_port_53_to_a_neighbour_and_the_segment() {
    let seg = SwitchSegment::new("dnsm53", "mvp0");
    let dns = Dns::new(&seg.host, &[]);
    let mv = dns.macvlan_network("mvnet", "mvp0");
    let (m1, m2) = (seg.host.container("m1c"), seg.host.container("m2c"));
    let ip1 = dns.add(&m1, &mv, "alpha", &[]);
    let ip2 = dns.add(&m2, &mv, "beta", &[]);
    let server = ContainerDnsServer::start(&m1, "0.0.0.0:53", "[::]:53")
        .expect("the macvlan container binds port 53 itself");

    assert_eq!(dig(&m1, &["beta"]), ("NOERROR".into(), vec![ip2.clone()]));
    assert_eq!(dig(&m1, &["+tcp", "beta.mvnet"]).1, vec![ip2]);
    let own = vec![OWN_ANSWER.to_string()];
    assert_eq!(dig_at(&m2, &ip1, 53, &["app.example"]).1, own, "neighbour");
    assert_eq!(
        dig_at(&m2, &ip1, 53, &["+tcp", "app.example"]).1,
        own,
        "neighbour, tcp"
    );
    assert_eq!(
        dig_at(&seg.machine, &ip1, 53, &["app.example"]).1,
        own,
        "a machine on the segment"
    );
    assert_eq!(server.queries(), 3);

    drop(server);
    dns.del(&m1, &mv, "alpha");
    assert_eq!(resolver_redirect(&m1), None, "the redirect outlived DEL");
    dns.del(&m2, &mv, "beta");
}

/// The nf_tables sockets tetherd holds: its descriptors that are netlink sockets of protocol 12
/// (NETLINK_NETFILTER) in `/proc/PID/net/netlink`.
fn netfilter_sockets_held(pid: i32) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    std::fs::read_to_string(format!("/proc/{pid}/net/netlink"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 10 && f[1] == "12" && inodes.contains(f[9]))
        .count()
}

/// A plugin hands tetherd a reference to its nf_tables socket with its notify, so that the plugin's release
/// is not the last one: the last one takes the host's nf_tables lock and, holding it, waits out the
/// kernel's pending destroy work, which stalls the next ADD's veth. tether-portmap hands its socket over
/// too. tetherd lets go of them once no container came or went for a second.
#[test]
fn tetherd_holds_the_plugins_nf_tables_sockets_until_containers_stop_coming_and_going() {
    let host = HostNs::new("dnspark");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.68.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    let prev = dns.call("ADD", &c1, &net, "one").result().clone();
    // tether-portmap notifies nothing else, and hands its socket over all the same.
    let ports = json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]);
    dns.portmap("ADD", &c1, "net1", &prev, &ports);
    dns.add(&c2, &net, "two", &[]);
    dns.del(&c2, &net, "two");
    let pid = dns.pid().expect("ADD started tetherd");
    let held = netfilter_sockets_held(pid);
    assert!(
        held >= 4,
        "tetherd holds {held} nf_tables sockets after two ADDs, a portmap ADD and a DEL"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while netfilter_sockets_held(pid) > 0 {
        assert!(
            Instant::now() < deadline,
            "tetherd still holds {} nf_tables sockets 5 s after the last DEL",
            netfilter_sockets_held(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dns.portmap("DEL", &c1, "net1", &prev, &ports);
    dns.del(&c1, &net, "one");
}

#[test]
fn tetherd_at_rest_sleeps_until_something_is_due() {
    let host = HostNs::new("dnsrest");
    let dns = Dns::new(&host, &[]);
    let net = dns.network("net1", "tt0", "10.67.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "one", &[]);
    let pid = dns.pid().expect("ADD started tetherd");
    // The plugin's nf_tables socket is released a second after it came; then nothing is due but the
    // check for gone namespaces (every 5 s by default).
    std::thread::sleep(Duration::from_millis(1500));
    let runs = || main_thread_runs(pid).expect("tetherd's schedstat");
    let before = runs();
    std::thread::sleep(Duration::from_secs(4));
    let woke = runs() - before;
    // A half-second poll woke it 16-19 times in 4 s (the timer wheel adds a wake to each tick).
    assert!(
        woke <= 6,
        "tetherd's main thread was put on a CPU {woke} times in 4 s with nothing to do"
    );
    assert_eq!(dig(&c1, &["one.net1"]).0, "NOERROR", "and it still answers");
    dns.del(&c1, &net, "one");
}

#[test]
fn tetherd_exits_after_the_idle_grace_while_checks_for_gone_namespaces_keep_coming() {
    let host = HostNs::new("dnsidle");
    let dns = Dns::new(&host, &[]);
    // A check every 100 ms (the least) under a 500 ms grace: one starts within every grace. A check
    // under way keeps tetherd up; its end must be noticed though nothing else happens.
    std::fs::write(
        &dns.daemon_conf,
        r#"{"idleGraceMs": 500, "goneCheckMs": 100, "dns": {"upstreamTimeoutMs": 400}}"#,
    )
    .unwrap();
    let net = dns.network("net1", "tt0", "10.66.0.0/24");
    let c1 = host.container("c1");
    dns.add(&c1, &net, "one", &[]);
    let pid = dns.pid().expect("ADD started tetherd");
    dns.del(&c1, &net, "one");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "tetherd still runs 10 s after the last DEL, with a 500 ms idle grace"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many times the kernel has put a process's main thread on a CPU (`schedstat`'s third field, after
/// the time on a CPU and the time waiting for one): each wake-up, and each return after preemption.
fn main_thread_runs(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/schedstat")).ok()?;
    stat.split_whitespace().nth(2)?.parse().ok()
}

/// The DNS service's part of `tetherd status`.
fn dns_status(host: &HostNs) -> Value {
    let reply = tether::client::notify::request(
        &host.run_dir(),
        &tether::client::protocol::Request::Status,
        Duration::from_secs(2),
    )
    .expect("tetherd status");
    reply.status.unwrap_or_default()["services"]["dns"].clone()
}

/// The ports the redirect in `c` sends 127.0.0.11:53 to, and the ports listening on 127.0.0.11 there: the
/// same two when the resolver serves `c`.
fn redirect_and_listening_ports(c: &NetNs) -> (Vec<u16>, Vec<u16>) {
    let listening = local_ports(&c.exec_ok(&["ss", "-H", "-lnut"]), "127.0.0.11");
    let redirect = resolver_redirect(c).expect("a redirect");
    let targets: Vec<u16> = redirect
        .lines()
        .filter(|l| l.contains("ip daddr 127.0.0.11"))
        .filter_map(|l| l.split("dport set ").nth(1)?.trim().parse().ok())
        .collect();
    (sorted_ports(targets), sorted_ports(listening))
}

#[test]
fn tetherd_serves_the_sockets_the_plugin_made_in_the_container_and_makes_its_own_only_when_none_came(
) {
    let host = HostNs::new("dns");
    let dns = Dns::new(&host, &[]);
    let (net1, net2) = dns.two_networks(["10.75.0.0/24", "10.76.0.0/24"]);
    let (c1, c2, c3) = (
        host.container("c1"),
        host.container("c2"),
        host.container("c3"),
    );
    // The first ADD starts tetherd, which reads every record before it reads the notify: it serves c2 on
    // sockets of its own (below, after a restart, the same in detail).
    let ip2 = dns.add(&c2, &net1, "two", &[]);
    let opened = &dns_status(&host)["opened"];
    assert_eq!(opened["withOwnSockets"], 1, "{opened}");
    // The next ADD made the sockets and the redirect inside its container; tetherd entered no namespace.
    dns.add(&c1, &net1, "one", &[]);
    let opened = &dns_status(&host)["opened"];
    assert_eq!(opened["withPluginSockets"], 1, "{opened}");
    assert_eq!(opened["withOwnSockets"], 1, "{opened}");
    for c in [&c1, &c2] {
        let (redirected, listening) = redirect_and_listening_ports(c);
        assert_eq!(redirected.len(), 2);
        assert_eq!(redirected, listening);
    }
    assert_eq!(dig(&c1, &["two"]).1, vec![ip2.clone()]);

    // A second network in c1's namespace: the redirect is there already, so that ADD makes nothing and the
    // same two sockets serve both networks.
    let before = redirect_and_listening_ports(&c1);
    let ip1_net2 = cni_result::ip(dns.call_on("ADD", &c1, "eth1", &net2, "one").result(), "4");
    assert_eq!(redirect_and_listening_ports(&c1), before);
    let opened = &dns_status(&host)["opened"];
    assert_eq!(opened["withPluginSockets"], 1, "{opened}");
    assert_eq!(opened["withOwnSockets"], 1, "{opened}");
    assert_eq!(dig(&c1, &["one.net2"]).1, vec![ip1_net2]);

    // A tetherd started by an ADD reads every record first and makes its own sockets for each namespace,
    // the new container's included (its redirect is replaced); the sockets that ADD made then arrive for a
    // namespace served already and are closed, never served behind a redirect that no longer points at them.
    let first = dns.pid().expect("tetherd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(first) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ip3 = dns.add(&c3, &net1, "three", &[]);
    assert_ne!(dns.pid().expect("restarted"), first);
    for c in [&c1, &c2, &c3] {
        let (redirected, listening) = redirect_and_listening_ports(c);
        assert_eq!(redirected.len(), 2);
        assert_eq!(redirected, listening);
    }
    assert_eq!(dig(&c3, &["two"]).1, vec![ip2]);
    assert_eq!(dig(&c1, &["three"]).1, vec![ip3]);
    let opened = &dns_status(&host)["opened"];
    assert_eq!(opened["withPluginSockets"], 0, "{opened}");
    assert_eq!(opened["withOwnSockets"], 3, "{opened}");

    // From now on ADDs hand their sockets over again.
    let c4 = host.container("c4");
    dns.add(&c4, &net1, "four", &[]);
    assert_eq!(dns_status(&host)["opened"]["withPluginSockets"], 1);
    assert_eq!(dig(&c4, &["three"]).1.len(), 1);

    dns.call_on("DEL", &c1, "eth1", &net2, "one").assert_ok();
    for (c, n) in [(&c1, "one"), (&c2, "two"), (&c3, "three"), (&c4, "four")] {
        dns.del(c, &net1, n);
    }
}
