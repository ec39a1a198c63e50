//! `tether doctor`, `tether inspect` and `tether trace`, run as a person would run them: the `tether` CLI in
//! the test's own host namespace with its own dirs, against containers attached there, after the kernel
//! state was broken by hand the way an operator or another tool breaks it.

#[path = "harness/mod.rs"]
mod harness;

use harness::docker_forward_drop::{accept_tether_device_group, leave_forward_drop};
use harness::tether_cli::TetherCli;
use harness::{HostNs, NetNs};
use serde_json::Value;

struct Setup<'h> {
    cli: TetherCli<'h>,
}

impl<'h> Setup<'h> {
    /// No upstream resolver; tetherd leaves dead containers alone for the test's length (`goneCheckMs`), so
    /// what doctor sees of them is not raced by tetherd's own cleanup.
    fn new(host: &'h HostNs) -> Setup<'h> {
        let cli =
            TetherCli::without_upstreams(host, r#"{"idleGraceMs": 500, "goneCheckMs": 600000}"#);
        Setup { cli }
    }

    fn attach(&self, network: &str, c: &NetNs, extra: &[&str]) -> Value {
        self.cli.attach_json(network, c, extra)
    }

    /// Runs `tether ARGS --json`; returns the exit code and the parsed report.
    fn report(&self, args: &[&str]) -> (i32, Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli.run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "tether {args:?}: {e}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), value)
    }

    fn doctor(&self) -> (i32, Value) {
        self.report(&["doctor"])
    }
}

/// The doctor findings with this severity and check.
fn findings<'v>(report: &'v Value, severity: &str, check: &str) -> Vec<&'v Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == severity && f["check"] == check)
        .collect()
}

fn problems(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "problem")
        .collect()
}

#[test]
fn doctor_passes_on_a_healthy_host_with_a_container() {
    let host = HostNs::new("dchl");
    let s = Setup::new(&host);
    s.cli.create_network("web", "10.91.0.0/24");
    let c = host.container("c1");
    s.attach("web", &c, &["--name", "web1"]);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["healthy"], true, "{report:#}");
    assert!(problems(&report).is_empty(), "{report:#}");
    // It looked: tetherd answered and served the container, the bridge and forwarding were seen.
    let tetherd = findings(&report, "ok", "tetherd");
    assert!(
        tetherd
            .iter()
            .any(|f| f["what"].as_str().unwrap().contains("running (pid")),
        "{report:#}"
    );
    let sysctl = findings(&report, "ok", "sysctl");
    assert!(
        sysctl
            .iter()
            .any(|f| f["what"] == "net.ipv4.ip_forward = 1"),
        "{report:#}"
    );
    let bridges = findings(&report, "ok", "bridge");
    assert!(
        bridges
            .iter()
            .any(|f| f["what"] == "bridge tb-web: 1 port(s)"),
        "{report:#}"
    );
}

#[test]
fn doctor_reports_a_forward_drop_policy_with_the_rules_to_add() {
    let host = HostNs::new("dcfd");
    let s = Setup::new(&host);
    leave_forward_drop(&host);
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let drops = findings(&report, "problem", "firewall");
    assert_eq!(drops.len(), 1, "{report:#}");
    let what = drops[0]["what"].as_str().unwrap();
    let fix = drops[0]["fix"].as_str().unwrap();
    assert!(what.contains("chain FORWARD of table ip filter"), "{what}");
    assert!(
        fix.contains("nft insert rule ip filter FORWARD meta iifgroup 7447 accept")
            && fix.contains("iptables -I DOCKER-USER -m devgroup --src-group 7447 -j ACCEPT"),
        "{fix}"
    );

    // With the documented pair in place, the same policy is no longer a problem.
    accept_tether_device_group(&host);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");
    assert!(findings(&report, "ok", "firewall").iter().any(|f| f["what"]
        .as_str()
        .unwrap()
        .contains("accepts tether's device group 7447")));
}

/// Whether this kernel makes VLAN sub-interfaces, asked independently of doctor (in the test's own host).
fn kernel_has_8021q(host: &HostNs) -> bool {
    host.ip(&["link", "add", "vp0", "type", "veth", "peer", "name", "vp1"]);
    let made = host
        .exec(&[
            "ip", "link", "add", "link", "vp0", "name", "vp0.10", "type", "vlan", "id", "10",
        ])
        .status
        .success();
    host.ip(&["link", "del", "vp0"]);
    made
}

#[test]
fn doctor_reports_missing_8021q_for_a_vlan_network() {
    let host = HostNs::new("dcvl");
    let s = Setup::new(&host);
    std::fs::create_dir_all(s.cli.conf_dir()).unwrap();
    std::fs::write(
        s.cli.conf_dir().join("lan10.conflist"),
        r#"{"cniVersion":"1.0.0","name":"lan10","plugins":[{"type":"tether-macvlan","master":"eth0","vlan":10,
            "ipam":{"type":"tether-ipam","ranges":[[{"subnet":"192.168.10.0/24"}]]}}]}"#,
    )
    .unwrap();
    let (code, report) = s.doctor();
    let vlan: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "kernel" && f["what"].as_str().unwrap().contains("8021q"))
        .collect();
    assert_eq!(vlan.len(), 1, "{report:#}");
    if kernel_has_8021q(&host) {
        assert_eq!(vlan[0]["severity"], "ok", "{report:#}");
        assert_eq!(code, 0, "{report:#}");
    } else {
        // This machine's kernel: the network cannot work here, and doctor says so and why.
        assert_eq!(vlan[0]["severity"], "problem", "{report:#}");
        assert!(
            vlan[0]["what"].as_str().unwrap().contains("lan10"),
            "{report:#}"
        );
        assert!(vlan[0]["fix"].as_str().unwrap().contains("modprobe 8021q"));
        assert_eq!(code, 1, "{report:#}");
    }
}

#[test]
fn doctor_reports_a_dead_containers_leftovers_until_gc() {
    let host = HostNs::new("dcdd");
    let s = Setup::new(&host);
    s.cli.create_network("web", "10.92.0.0/24");
    let live = host.container("alive");
    let dead = host.container("dead");
    s.attach("web", &live, &[]);
    let attached = s.attach("web", &dead, &[]);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");

    host.delete_container(&dead);
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let leftovers = findings(&report, "problem", "leftovers");
    assert_eq!(leftovers.len(), 1, "only the dead one: {report:#}");
    let what = leftovers[0]["what"].as_str().unwrap();
    let ip = attached["ips"][0].as_str().unwrap();
    assert!(
        what.contains("container dead on network web") && what.contains(ip),
        "{what}"
    );
    assert!(leftovers[0]["fix"].as_str().unwrap().contains("tether gc"));

    s.cli.ok(&["gc"]);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "after tether gc: {report:#}");
}

/// The rows of `inspect --json` that differ, as "what: kernel".
fn differences(report: &Value) -> Vec<String> {
    report["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .flat_map(|a| a["comparisons"].as_array().unwrap().iter())
        .filter(|c| c["verdict"] == "differs")
        .map(|c| {
            format!(
                "{}: {} / {}",
                c["what"].as_str().unwrap(),
                c["tether"].as_str().unwrap(),
                c["kernel"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn inspect_shows_a_deleted_route_and_a_removed_nft_element_as_differences() {
    let host = HostNs::new("insp");
    let s = Setup::new(&host);
    s.cli.create_network("web", "10.93.0.0/24");
    let c = host.container("c1");
    let attached = s.attach("web", &c, &["--name", "web1", "-p", "8080:80"]);
    let ip = attached["ips"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();

    // As made: nothing differs, by id and by name.
    let (code, report) = s.report(&["inspect", "c1"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["differences"], 0, "{report:#}");
    let rows = report["attachments"][0]["comparisons"].as_array().unwrap();
    let same = |what: &str| {
        rows.iter()
            .any(|r| r["what"] == what && r["verdict"] == "same")
    };
    for what in [
        "route",
        "address",
        "MAC",
        "host veth",
        "bridge",
        "bridge port state",
        "firewall elements (inet tether)",
        "published port (inet tether port maps)",
        "resolver",
    ] {
        assert!(same(what), "{what} compared and equal: {report:#}");
    }

    // An operator deletes the default route; another tool deletes the container's address from its set.
    c.ip(&["route", "del", "default"]);
    let set = tether::firewall::NetworkId::of("web").ipv4_set();
    let element = format!("{{ {ip} }}");
    host.nft_ok(&["delete", "element", "inet", "tether", &set, &element]);

    let (code, report) = s.report(&["inspect", "web1"]);
    assert_eq!(code, 1, "{report:#}");
    let diff = differences(&report);
    assert_eq!(diff.len(), 2, "{diff:#?}");
    assert!(
        diff.iter()
            .any(|d| d.starts_with("route: 0.0.0.0/0 via 10.93.0.1 / missing")),
        "{diff:#?}"
    );
    assert!(
        diff.iter()
            .any(|d| d.starts_with("firewall elements (inet tether): ")
                && d.contains(&ip)
                && d.ends_with("/ missing")),
        "{diff:#?}"
    );
}

#[test]
fn inspect_of_an_unknown_container_fails_and_says_where_it_looked() {
    let host = HostNs::new("insu");
    let s = Setup::new(&host);
    let out = s.cli.run(&["inspect", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tether: inspecting container: no container with id or name nobody"),
        "{stderr}"
    );
}

fn address(attached: &Value) -> String {
    attached["ips"][0]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn drop_step(report: &Value) -> &Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["verdict"] == "drop")
        .unwrap_or_else(|| panic!("a dropping step: {report:#}"))
}

#[test]
fn trace_names_the_isolation_rule_between_two_networks_and_passes_within_one() {
    let host = HostNs::new("trni");
    let s = Setup::new(&host);
    s.cli.create_network("front", "10.94.0.0/24");
    s.cli.create_network("back", "10.95.0.0/24");
    let (c1, c2, c3) = (
        host.container("c1"),
        host.container("c2"),
        host.container("c3"),
    );
    s.attach("front", &c1, &["--name", "one"]);
    let two = s.attach("back", &c2, &["--name", "two"]);
    let three = s.attach("front", &c3, &["--name", "three"]);

    // By address across networks: isolation, with the rule as the kernel lists it.
    let (code, report) = s.report(&["trace", "one", &address(&two)]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "isolation", "{report:#}");
    let step = drop_step(&report);
    let chain = tether::firewall::NetworkId::of("back").forward_chain();
    let kernel = step["kernel"].as_str().unwrap();
    assert!(
        kernel.starts_with(&format!("inet tether {chain}: oifname \"tb-back\" drop"))
            && kernel.contains("# handle"),
        "{kernel}"
    );
    assert!(report["fix"].as_str().unwrap().contains("--network back"));
    // And the kernel agrees: nothing gets through.
    assert!(!c1.ping(&address(&two)), "isolation must drop the ping");

    // By name across networks: the name is not served there, so DNS is the first thing that fails.
    let (code, report) = s.report(&["trace", "one", "two"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "dns", "{report:#}");

    // Within one network, by name: resolved, routed, bridged, delivered; and a ping goes through.
    let (code, report) = s.report(&["trace", "one", "three"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["delivered"], true, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["DNS", "container routing", "bridge", "delivery"],
        "{report:#}"
    );
    assert!(c1.ping_retry(&address(&three), 3));
}

#[test]
fn trace_finds_a_missing_publish_and_follows_a_published_port() {
    let host = HostNs::new("trnp");
    let s = Setup::new(&host);
    let outside = host.outside();
    s.cli.create_network("web", "10.96.0.0/24");
    let c = host.container("c1");
    let attached = s.attach("web", &c, &["--name", "www", "-p", "8080:80"]);

    let (code, report) = s.report(&["trace", outside.addr, "www:81"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "missing-publish", "{report:#}");
    assert!(drop_step(&report)["detail"]
        .as_str()
        .unwrap()
        .contains("port 81/tcp of www is not published"));
    assert!(
        report["fix"]
            .as_str()
            .unwrap()
            .contains("-p HOSTPORT:81/tcp"),
        "{report:#}"
    );

    for dst in ["www:80".to_string(), format!("{}:8080", outside.host_addr)] {
        let (code, report) = s.report(&["trace", outside.addr, &dst]);
        assert_eq!(code, 0, "{dst}: {report:#}");
        let steps: Vec<&str> = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "publish",
                "host routing",
                "firewall (inet tether)",
                "delivery"
            ],
            "{report:#}"
        );
    }
    // The kernel agrees: the published port answers from outside.
    let listen = format!("{}:80", address(&attached)).parse().unwrap();
    let connect = format!("{}:8080", outside.host_addr).parse().unwrap();
    harness::tcp::exchange_via(&c, listen, &outside.ns, connect).expect("published port answers");
}

/// The packets counted on the inspect rows whose `what` and `tether` columns contain these words.
fn counted_packets(report: &Value, what: &str, tether: &str) -> Vec<u64> {
    report["attachments"][0]["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["what"].as_str().unwrap().contains(what)
                && r["tether"].as_str().unwrap().contains(tether)
        })
        .map(|r| {
            r["counter"]["packets"]
                .as_u64()
                .unwrap_or_else(|| panic!("no counter on {r:#}"))
        })
        .collect()
}

#[test]
fn inspect_counts_real_traffic_on_the_containers_firewall_elements() {
    let host = HostNs::new("incn");
    let s = Setup::new(&host);
    let outside = host.outside();
    s.cli.create_network("web", "10.95.0.0/24");
    let c = host.container("c1");
    let attached = s.attach("web", &c, &["--name", "web1", "-p", "8080:80"]);
    let ip = address(&attached);

    let (_, before) = s.report(&["inspect", "web1"]);
    assert_eq!(
        counted_packets(&before, "published port", "8080"),
        [0],
        "{before:#}"
    );
    assert_eq!(
        counted_packets(&before, "firewall elements", "_c4"),
        [0],
        "{before:#}"
    );

    // In through the published port, and out of the network to the outside namespace.
    let listen = format!("{ip}:80").parse().unwrap();
    let connect = format!("{}:8080", outside.host_addr).parse().unwrap();
    harness::tcp::exchange_via(&c, listen, &outside.ns, connect).expect("published port answers");
    harness::tcp::exchange(&outside.ns, outside.addr, 9000, &c).expect("the outside answers");

    let (code, after) = s.report(&["inspect", "web1"]);
    assert_eq!(code, 0, "{after:#}");
    // Only a connection's first packet meets a nat chain: each counter counts connections. The published
    // port's reply and the inbound connection are not new connections leaving the network.
    assert_eq!(
        counted_packets(&after, "published port", "8080"),
        [1],
        "{after:#}"
    );
    assert_eq!(
        counted_packets(&after, "firewall elements", "_c4"),
        [1],
        "{after:#}"
    );
    let text = String::from_utf8_lossy(&s.cli.run(&["inspect", "web1"]).stdout).into_owned();
    assert!(text.contains("present, 1 packets"), "{text}");
}

/// The first inspect row (of the first attachment) whose `what` is `what`, polled until `done` holds (20 s).
fn wait_for_row(s: &Setup, container: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, report) = s.report(&["inspect", container]);
        let found = report["attachments"][0]["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["what"] == what)
            .cloned();
        if let Some(row) = found.filter(|r| done(r)) {
            return row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} row as wanted: {report:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn inspect_shows_a_service_backend_with_its_health_and_doctor_warns_when_it_fails() {
    use harness::replica::Replica;
    let host = HostNs::new("insv");
    let s = Setup::new(&host);
    s.cli.create_network("app", "10.79.0.0/24");
    let client = host.container("client");
    s.attach("app", &client, &["--name", "client"]);
    let r1 = host.container("r1");
    s.attach("app", &r1, &["--name", "api-1", "--alias", "api"]);
    let spec: Value = serde_json::from_str(&s.cli.ok(&[
        "service",
        "create",
        "--json",
        "--network",
        "app",
        "--port",
        "8080",
        "--health-interval",
        "200",
        "--health-rise",
        "1",
        "--health-fall",
        "1",
        "api",
    ]))
    .unwrap();
    let vip = spec["vips"][0].as_str().unwrap().to_string();
    let replica = Replica::start(&r1, "api-1", 8080);

    let backend = wait_for_row(&s, "api-1", "service backend", |r| r["kernel"] == "healthy");
    assert_eq!(backend["verdict"], "same", "{backend:#}");
    assert!(
        backend["tether"]
            .as_str()
            .unwrap()
            .contains(&format!("backs api (VIP {vip})")),
        "{backend:#}"
    );
    // The client's namespace dispatches the VIP.
    let dispatch = wait_for_row(&s, "client", "service VIP (inet tether_svc)", |r| {
        r["verdict"] == "same"
    });
    assert_eq!(dispatch["kernel"], "dispatched", "{dispatch:#}");
    let (code, report) = s.doctor();
    assert!(
        findings(&report, "warning", "services").is_empty(),
        "{report:#}"
    );
    assert_eq!(code, 0, "{report:#}");

    // The replica stops answering: its health probes fail.
    replica.stop_listening();
    let backend = wait_for_row(&s, "api-1", "service backend", |r| {
        r["kernel"].as_str().unwrap().starts_with("unhealthy")
    });
    assert_eq!(backend["verdict"], "differs", "{backend:#}");
    let (_, report) = s.doctor();
    let warned = findings(&report, "warning", "services");
    assert!(
        warned.iter().any(|f| f["what"]
            .as_str()
            .unwrap()
            .contains("service api: backend r1/")),
        "{report:#}"
    );

    // A slot in the client's maps pointing to an address no container holds (as a container gone behind
    // tetherd's back leaves it) is a problem.
    let element = format!("{{ {vip} . tcp . 8080 . 0x00000007 : 10.79.0.99 . 8080 }}");
    client.exec_ok(&[
        "nft",
        "add",
        "element",
        "inet",
        "tether_svc",
        "be4",
        &element,
    ]);
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    assert!(
        problems(&report).iter().any(|f| f["check"] == "services"
            && f["what"]
                .as_str()
                .unwrap()
                .contains("10.79.0.99, which no container holds")),
        "{report:#}"
    );
}

#[test]
fn inspect_on_an_overlay_shows_a_removed_fdb_entry() {
    use harness::overlay_cluster::{
        overlay_conf, overlay_ip, overlay_mac, wait_until, Cluster, Timings,
    };
    use std::time::Duration;

    let mut cluster = Cluster::new("tso", 2, Timings::FAST);
    let conf = overlay_conf("ovl", 100, "10.211.0.0/16");
    let c1 = cluster.hosts[0].ns.container("c1");
    let c2 = cluster.hosts[1].ns.container("c2");
    cluster.hosts[0].add_named(&conf, &c1, "web");
    let r2 = cluster.hosts[1].add_named(&conf, &c2, "db");
    let (mac2, vtep2) = (overlay_mac(&r2), cluster.hosts[1].addr.clone());
    let h1 = &cluster.hosts[0];
    wait_until("host 1 has c2's FDB entry", Duration::from_secs(10), || {
        h1.fdb("tvx100").contains(&(mac2.clone(), vtep2.clone()))
    });
    let cli = TetherCli::new(&h1.ns);
    let s = Setup { cli };
    let fdb_row = |report: &Value| -> Value {
        report["attachments"][0]["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["what"] == "FDB on tvx100")
            .cloned()
            .unwrap_or_else(|| panic!("an FDB row: {report:#}"))
    };
    let (code, report) = s.report(&["inspect", "web"]);
    assert_eq!(code, 0, "{report:#}");
    let row = fdb_row(&report);
    assert_eq!(row["tether"], format!("{mac2} -> {vtep2}"), "{report:#}");
    assert_eq!(row["verdict"], "same", "{report:#}");
    // From the cluster store: c1's own record, and host 2 keeping an entry for it.
    let named = |report: &Value, what: &str| -> Value {
        report["attachments"][0]["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["what"] == what)
            .cloned()
            .unwrap_or_else(|| panic!("a row {what:?}: {report:#}"))
    };
    let record = named(&report, "record in the cluster store");
    assert_eq!(record["verdict"], "same", "{report:#}");
    assert!(
        record["tether"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-> {}", h1.addr)),
        "{report:#}"
    );
    let on_host2 = format!("FDB on host {}", cluster.hosts[1].addr);
    let row = named(&report, &on_host2);
    assert_eq!(row["verdict"], "info", "{report:#}");
    assert!(
        row["kernel"].as_str().unwrap().contains("host up"),
        "{report:#}"
    );
    assert!(c1.ping_retry(&overlay_ip(&r2), 10));
    // doctor on that host: healthy, and it sees the other member.
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");
    let host = format!(
        "gossip store reachable from host {}; 1 of 1 other member(s) up",
        h1.addr
    );
    assert!(
        findings(&report, "ok", "cluster store")
            .iter()
            .any(|f| f["what"] == host.as_str()),
        "{host}: {report:#}"
    );

    // Host 1's tetherd stops (or it would put the entry back within reconcileIntervalMs); the entry goes.
    cluster.hosts[0].kill_tetherd();
    let h1 = &cluster.hosts[0];
    h1.ns.exec_ok(&[
        "bridge", "fdb", "del", &mac2, "dev", "tvx100", "dst", &vtep2,
    ]);
    let s = Setup {
        cli: TetherCli::new(&h1.ns),
    };
    let (code, report) = s.report(&["inspect", "web"]);
    assert_eq!(code, 1, "{report:#}");
    let row = fdb_row(&report);
    assert_eq!(
        (row["kernel"].as_str(), row["verdict"].as_str()),
        (Some("missing"), Some("differs")),
        "{report:#}"
    );

    // Host 1's tetherd back, host 2's gone: the store says host 2 keeps nothing for c1, and inspect says so.
    cluster.hosts[0].start_tetherd();
    let (first, others) = cluster.hosts.split_at_mut(1);
    let s = Setup {
        cli: TetherCli::new(&first[0].ns),
    };
    let host2_row = |verdict: &str| {
        let (_, report) = s.report(&["inspect", "web"]);
        let found = report["attachments"][0]["comparisons"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["what"] == on_host2.as_str() && r["verdict"] == verdict);
        (found, report)
    };
    wait_until(
        "the restarted tetherd knows host 2 again",
        Duration::from_secs(15),
        || host2_row("info").0,
    );
    others[0].kill_tetherd();
    let mut last = Value::Null;
    let flagged = (0..60).any(|_| {
        let (found, report) = host2_row("differs");
        last = report;
        if !found {
            std::thread::sleep(Duration::from_millis(250));
        }
        found
    });
    assert!(flagged, "host 2 down never flagged: {last:#}");
}

#[test]
fn trace_names_icc_false_between_containers_of_one_network() {
    let host = HostNs::new("tric");
    let s = Setup::new(&host);
    s.cli.ok(&[
        "network",
        "create",
        "--subnet",
        "10.97.0.0/24",
        "-o",
        "icc=false",
        "iso",
    ]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    s.attach("iso", &c1, &["--name", "one"]);
    let two = s.attach("iso", &c2, &["--name", "two"]);
    let (code, report) = s.report(&["trace", "one", "two"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "isolation", "{report:#}");
    assert_eq!(drop_step(&report)["step"], "bridge", "{report:#}");
    assert!(report["fix"].as_str().unwrap().contains("icc=false"));
    assert!(
        !c1.ping(&address(&two)),
        "isolated bridge ports must not pass the ping"
    );
}

#[test]
fn trace_to_the_outside_is_masqueraded_and_an_internal_network_has_no_route() {
    let host = HostNs::new("trno");
    let s = Setup::new(&host);
    let outside = host.outside();
    s.cli.create_network("web", "10.98.0.0/24");
    s.cli.ok(&[
        "network",
        "create",
        "--subnet",
        "10.99.0.0/24",
        "--internal",
        "quiet",
    ]);
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    s.attach("web", &c1, &["--name", "one"]);
    s.attach("quiet", &c2, &["--name", "two"]);

    let (code, report) = s.report(&["trace", "one", outside.addr]);
    assert_eq!(code, 0, "{report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "container routing",
            "host routing",
            "masquerade",
            "delivery"
        ],
        "{report:#}"
    );
    assert!(
        c1.ping_retry(outside.addr, 3),
        "the kernel agrees: the outside answers"
    );

    let (code, report) = s.report(&["trace", "two", outside.addr]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "routing", "{report:#}");
    let step = drop_step(&report);
    assert_eq!(step["step"], "container routing", "{report:#}");
    assert!(
        step["kernel"].as_str().unwrap().contains("unreachable"),
        "{report:#}"
    );
    assert!(!c2.ping(outside.addr));
}

#[test]
fn doctor_reports_a_conflist_that_no_longer_parses_and_a_plugin_missing_from_cni_path() {
    let host = HostNs::new("dccf");
    let s = Setup::new(&host);
    std::fs::create_dir_all(s.cli.conf_dir()).unwrap();
    std::fs::write(
        s.cli.conf_dir().join("half.conflist"),
        r#"{"cniVersion":"1.0.0","name":"half","plugins":["#,
    )
    .unwrap();
    std::fs::write(
        s.cli.conf_dir().join("other.conflist"),
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let broken = findings(&report, "problem", "conflist");
    assert_eq!(broken.len(), 1, "{report:#}");
    assert!(
        broken[0]["what"]
            .as_str()
            .unwrap()
            .contains("half.conflist does not parse"),
        "{report:#}"
    );
    let missing = findings(&report, "problem", "plugins");
    assert_eq!(missing.len(), 1, "{report:#}");
    assert!(
        missing[0]["what"]
            .as_str()
            .unwrap()
            .starts_with("network other needs plugin no-such-plugin, which is not on CNI_PATH"),
        "{report:#}"
    );
}

/// firewalld's shape: an accept policy, but the forward chain ends in a catch-all reject.
fn leave_catch_all_reject(host: &HostNs) {
    host.nft_ok(&["add", "table", "inet", "fw"]);
    host.nft_ok(&[
        "add",
        "chain",
        "inet",
        "fw",
        "filter_FORWARD",
        "{ type filter hook forward priority 10; policy accept; }",
    ]);
    host.nft_ok(&[
        "add",
        "rule",
        "inet",
        "fw",
        "filter_FORWARD",
        "ct",
        "state",
        "established,related",
        "accept",
    ]);
    host.nft_ok(&[
        "add",
        "rule",
        "inet",
        "fw",
        "filter_FORWARD",
        "counter",
        "reject",
    ]);
}

#[test]
fn doctor_and_trace_find_a_catch_all_reject_in_another_forward_chain() {
    let host = HostNs::new("dccr");
    let s = Setup::new(&host);
    let outside = host.outside();
    s.cli.create_network("web", "10.88.0.0/24");
    let c = host.container("c1");
    s.attach("web", &c, &["--name", "one"]);
    leave_catch_all_reject(&host);

    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let drops = findings(&report, "problem", "firewall");
    assert_eq!(drops.len(), 1, "{report:#}");
    assert!(
        drops[0]["what"]
            .as_str()
            .unwrap()
            .starts_with("chain filter_FORWARD of table inet fw ends in `reject # handle"),
        "{report:#}"
    );
    assert!(drops[0]["fix"]
        .as_str()
        .unwrap()
        .starts_with("nft insert rule inet fw filter_FORWARD meta iifgroup 7447 accept"));

    let (code, report) = s.report(&["trace", "one", outside.addr]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "firewall", "{report:#}");
    assert!(!c.ping(outside.addr), "the reject must stop the ping");

    // The fix doctor gives, applied as given: the ping passes and both commands are satisfied.
    let fix = drops[0]["fix"].as_str().unwrap().to_string();
    for command in fix.split("; ") {
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(args[0], "nft");
        host.exec_ok(&args);
    }
    assert!(
        c.ping_retry(outside.addr, 3),
        "after the fix the outside answers"
    );
    assert_eq!(s.doctor().0, 0);
    assert_eq!(s.report(&["trace", "one", outside.addr]).0, 0);
}

#[test]
fn doctor_finds_a_narrower_rule_in_another_forward_chain_that_drops_a_containers_traffic() {
    let host = HostNs::new("dcsh");
    let s = Setup::new(&host);
    s.cli.create_network("web", "10.86.0.0/24");
    let c = host.container("c1");
    s.attach("web", &c, &["--name", "one"]);
    assert_eq!(s.doctor().0, 0, "healthy before the rule");
    host.nft_ok(&["add", "table", "inet", "fw"]);
    host.nft_ok(&[
        "add",
        "chain",
        "inet",
        "fw",
        "screen",
        "{ type filter hook forward priority 10; policy accept; }",
    ]);
    // One rule for another subnet (not tether's business) and one that takes this container's address.
    host.nft_ok(&[
        "add",
        "rule",
        "inet",
        "fw",
        "screen",
        "ip",
        "daddr",
        "192.0.2.0/24",
        "drop",
    ]);
    host.nft_ok(&[
        "add",
        "rule",
        "inet",
        "fw",
        "screen",
        "ip",
        "saddr",
        "{",
        "10.86.0.0/25,",
        "198.51.100.7",
        "}",
        "tcp",
        "dport",
        "443",
        "reject",
    ]);
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let problems = findings(&report, "problem", "firewall");
    assert_eq!(
        problems.len(),
        1,
        "only the rule that takes the container: {report:#}"
    );
    let what = problems[0]["what"].as_str().unwrap();
    assert!(
        what.starts_with("`reject # handle") && what.contains("chain screen of table inet fw"),
        "{what}"
    );
    assert!(what.contains("one (10.86.0."), "{what}");
    assert!(problems[0]["fix"]
        .as_str()
        .unwrap()
        .contains("nft insert rule inet fw screen meta iifgroup 7447 accept"));
}

#[test]
fn when_tetherd_is_gone_doctor_and_trace_say_names_do_not_resolve() {
    let host = HostNs::new("trdn");
    let s = Setup::new(&host);
    s.cli.create_network("web", "10.87.0.0/24");
    let (c1, c2) = (host.container("c1"), host.container("c2"));
    s.attach("web", &c1, &["--name", "one"]);
    s.attach("web", &c2, &["--name", "two"]);
    assert_eq!(s.report(&["trace", "one", "two"]).0, 0);

    // The tetherd this test's attach started (it serves only this test's run dir) dies.
    let status = tether::client::notify::request(
        &host.run_dir(),
        &tether::client::protocol::Request::Status,
        std::time::Duration::from_secs(2),
    )
    .expect("tetherd answers");
    let pid = status.status.unwrap()["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    harness::overlay_cluster::wait_until("tetherd gone", std::time::Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });

    let (code, report) = s.report(&["trace", "one", "two"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["cause"], "dns", "{report:#}");
    assert!(drop_step(&report)["kernel"]
        .as_str()
        .unwrap()
        .starts_with("no answer from 127.0.0.11:53"));
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    let tetherd = findings(&report, "problem", "tetherd");
    assert_eq!(tetherd.len(), 1, "{report:#}");
    assert!(
        tetherd[0]["what"]
            .as_str()
            .unwrap()
            .starts_with("tetherd does not answer"),
        "{report:#}"
    );
}

#[test]
fn doctor_reports_an_unreachable_etcd_store_and_passes_when_it_is_back() {
    use harness::overlay_cluster::{wait_until, Cluster, Store, Timings};
    let mut cluster = Cluster::on("tdet", 1, Timings::FAST, Store::Etcd);
    let s = Setup {
        cli: TetherCli::new(&cluster.hosts[0].ns),
    };
    let store_findings = |s: &Setup| {
        let (code, report) = s.doctor();
        let severities: Vec<String> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "cluster store")
            .map(|f| {
                format!(
                    "{}: {}",
                    f["severity"].as_str().unwrap(),
                    f["what"].as_str().unwrap()
                )
            })
            .collect();
        (code, severities, report)
    };
    let healthy =
        |found: &[String]| found.len() == 1 && found[0].starts_with("ok: etcd store reachable");
    let (code, found, report) = store_findings(&s);
    assert!(healthy(&found), "{report:#}");
    assert_eq!(code, 0, "{report:#}");

    cluster.etcd.as_mut().unwrap().kill_member(0);
    wait_until(
        "doctor sees etcd unreachable",
        std::time::Duration::from_secs(30),
        || {
            let (code, found, _) = store_findings(&s);
            code == 1
                && found
                    .iter()
                    .any(|f| f.starts_with("problem: the etcd store is unreachable"))
        },
    );

    cluster.etcd.as_mut().unwrap().start_member(0);
    wait_until(
        "doctor passes with etcd back",
        std::time::Duration::from_secs(30),
        || {
            let (code, found, _) = store_findings(&s);
            code == 0 && healthy(&found)
        },
    );
}
