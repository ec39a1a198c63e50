//! The `tether` command line, run inside each test's own host namespace (nsenter) with the test's
//! config, state, run and cache dirs, as a person or a script would run it on a machine.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};

use harness::nft_trap::NftTrap;
use harness::switch_segment::{SwitchSegment, SEGMENT_GATEWAY, SEGMENT_MACHINE, SEGMENT_SUBNET};
use harness::tether_cli::TetherCli;
use harness::{binaries, nft, store, tcp, HostNs, NetNs};
use serde_json::Value;

/// `tether` with this host's dirs, run in its namespace.
struct Tether<'a> {
    host: &'a HostNs,
    cli: TetherCli<'a>,
}

impl<'a> Tether<'a> {
    fn new(host: &'a HostNs) -> Tether<'a> {
        Tether {
            host,
            cli: TetherCli::new(host),
        }
    }

    fn conf_dir(&self) -> PathBuf {
        self.cli.conf_dir()
    }

    fn cache_dir(&self) -> PathBuf {
        self.cli.cache_dir()
    }

    fn ipam_dir(&self) -> PathBuf {
        self.host.state_dir().join("ipam")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cli.run(args)
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.cli.ok(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("tether {args:?}: {e}: {text}"))
    }

    /// Runs and expects exit status 1 with a "tether: ..." message; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "tether {args:?} should fail: {stderr}"
        );
        assert!(stderr.starts_with("tether: "), "{args:?}: {stderr}");
        stderr
    }

    fn conf_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.conf_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn cache_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.cache_dir().join("results"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn attach_json(t: &Tether, network: &str, c: &NetNs, extra: &[&str]) -> Value {
    let path = c.path_str();
    let mut args = vec!["attach", "--json", "--network", network, "--netns", &path];
    args.extend_from_slice(extra);
    args.push(&c.label);
    t.json(&args)
}

fn first_ip(attachment: &Value) -> String {
    let cidr = attachment["ips"][0].as_str().expect("an address");
    cidr.split('/').next().unwrap().to_string()
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn create_picks_a_pool_free_of_routes_and_networks_and_bad_input_writes_nothing() {
    let host = HostNs::new("clic");
    let t = Tether::new(&host);
    // A host route over Docker's first pool, on a veth of the test's own host namespace.
    host.ip(&["link", "add", "rt0", "type", "veth", "peer", "name", "rt1"]);
    host.ip(&["link", "set", "rt0", "up"]);
    host.ip(&["route", "add", "172.17.0.0/16", "dev", "rt0"]);

    let a = t.json(&[
        "network",
        "create",
        "--json",
        "--subnet",
        "172.18.0.0/16",
        "a",
    ]);
    assert_eq!(a["subnets"][0], "172.18.0.0/16");
    assert_eq!(a["gateways"][0], "172.18.0.1");
    let b = t.json(&["network", "create", "--json", "b"]);
    assert_eq!(
        b["subnets"][0], "172.19.0.0/16",
        "172.17 is routed on the host, 172.18 is network a's"
    );
    assert_eq!(b["bridge"], "tb-b");
    let v6 = t.json(&[
        "network",
        "create",
        "--json",
        "--ipv6",
        "--internal",
        "-o",
        "icc=false",
        "c",
    ]);
    assert!(v6["subnets"][1].as_str().unwrap().starts_with("fd"), "{v6}");
    assert_eq!(v6["internal"], true);
    let main = &v6["config"]["plugins"][0];
    assert_eq!(main["ipMasq"], false);
    assert_eq!(main["icc"], false);
    // What podman 4 needs to read it.
    assert_eq!(v6["config"]["cniVersion"], "1.0.0");

    let files = t.conf_files();
    assert_eq!(files, ["a.conflist", "b.conflist", "c.conflist"]);
    for (args, why) in [
        (
            vec!["network", "create", "bad name"],
            "invalid network name",
        ),
        (vec!["network", "create", "host"], "reserved"),
        (
            vec!["network", "create", "--subnet", "172.18.5.0/24", "d"],
            "overlaps network a",
        ),
        (
            vec!["network", "create", "-d", "ipvlan", "d"],
            "unknown driver",
        ),
        (vec!["network", "create", "a"], "already exists"),
        (
            vec!["network", "create", "-o", "colour=blue", "d"],
            "not known to the bridge driver",
        ),
        (vec!["network", "create", "-d", "macvlan", "d"], "parent"),
        (
            vec![
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=eth9",
                "d",
            ],
            "no such link",
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.1.0.0/24",
                "--gateway",
                "10.2.0.1",
                "d",
            ],
            "in none of the subnets",
        ),
    ] {
        let stderr = t.fails(&args);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert!(stderr.contains("creating network"), "{stderr}");
    }
    assert_eq!(t.conf_files(), files, "a refused create writes nothing");

    let ls = t.ok(&["network", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{ls}");
    assert!(ls.contains("172.19.0.0/16") && ls.contains("tb-b"), "{ls}");
    let listed = t.json(&["network", "ls", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(t.ok(&["network", "ls", "-q"]), "a\nb\nc\n");

    let overlay = t.json(&["network", "create", "--json", "-d", "overlay", "ov"]);
    assert_eq!(overlay["config"]["plugins"][0]["vni"], 4096);
    // Dual stack: both subnets in the conflist (a list), both in inspect.
    let dual = t.json(&[
        "network",
        "create",
        "--json",
        "-d",
        "overlay",
        "--subnet",
        "fd00:63::/64",
        "--subnet",
        "10.63.0.0/24",
        "ov2",
    ]);
    let subnets = &dual["config"]["plugins"][0]["subnet"];
    assert!(
        subnets.as_array().is_some_and(|s| s.len() == 2
            && s.contains(&"10.63.0.0/24".into())
            && s.contains(&"fd00:63::/64".into())),
        "{dual}"
    );
    let inspect = t.ok(&["network", "inspect", "ov2"]);
    assert!(
        inspect.contains("10.63.0.0/24") && inspect.contains("fd00:63::/64"),
        "{inspect}"
    );
    let mac = t.json(&[
        "network",
        "create",
        "--json",
        "-d",
        "macvlan",
        "-o",
        "parent=rt1",
        "lan",
    ]);
    assert_eq!(mac["config"]["plugins"][0]["master"], "rt1");

    for name in ["a", "b", "c", "ov", "ov2", "lan"] {
        t.ok(&["network", "rm", name]);
    }
    assert!(t.conf_files().is_empty());
    t.fails(&["network", "inspect", "a"]);
}

#[test]
fn network_rm_force_of_a_dual_stack_overlay_leaves_no_gateway_bridge_rules_or_store_behind() {
    let host = HostNs::new("clio");
    let outside = host.outside();
    host.ip(&["route", "add", "default", "via", outside.addr]);
    let t = Tether::new(&host);
    t.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.64.0.0/24",
        "--subnet",
        "fd00:64::/64",
        "ovx",
    ]);
    let c1 = host.container("c1");
    attach_json(&t, "ovx", &c1, &[]);
    assert_eq!(
        c1.default_gateway("-6").as_deref(),
        Some("fd74:6574:6877::1"),
        "no IPv6 egress route through the gateway bridge"
    );
    assert!(host.has_link("tether_gwbridge"));

    t.ok(&["network", "rm", "--force", "ovx"]);
    assert!(!c1.has_link("gw-eth0"), "the egress interface stayed");
    assert!(
        !host.has_link("tether_gwbridge"),
        "the gateway bridge stayed"
    );
    let ruleset = host.exec_ok(&["nft", "list", "ruleset"]);
    assert!(
        !ruleset.contains("tether_gwbridge") && !ruleset.contains("fd74:6574:6877"),
        "the gateway bridge's rules or elements stayed:\n{ruleset}"
    );
    assert!(
        !host
            .state_dir()
            .join("overlay-gateway/tether_gwbridge")
            .exists(),
        "the gateway bridge's lease store stayed"
    );
}

/// `-o gateway_subnet=` and `-o gateway_subnet_v6=` choose the gateway bridge's subnets: the container's
/// egress routes go through their first addresses.
#[test]
fn network_create_sets_an_overlays_gateway_subnets() {
    let host = HostNs::new("cligw");
    let outside = host.outside();
    host.ip(&["route", "add", "default", "via", outside.addr]);
    let t = Tether::new(&host);
    let refused = t.run(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.66.0.0/24",
        "-o",
        "gateway_subnet=fd00:66::/64",
        "ovbad",
    ]);
    assert!(
        !refused.status.success(),
        "an IPv6 gateway_subnet was taken"
    );
    t.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.66.0.0/24",
        "--subnet",
        "fd00:66::/64",
        "-o",
        "gateway_subnet=172.29.0.0/24",
        "-o",
        "gateway_subnet_v6=fd00:29::/64",
        "ovg",
    ]);
    let c1 = host.container("c1");
    attach_json(&t, "ovg", &c1, &[]);
    assert_eq!(c1.default_gateway("-4").as_deref(), Some("172.29.0.1"));
    assert_eq!(c1.default_gateway("-6").as_deref(), Some("fd00:29::1"));
    t.ok(&["network", "rm", "--force", "ovg"]);
}

#[test]
fn attach_publishes_a_port_ps_shows_it_rm_waits_for_detach_or_force() {
    let host = HostNs::new("clia");
    let outside = host.outside();
    let t = Tether::new(&host);
    t.ok(&["network", "create", "--subnet", "10.61.0.0/24", "web"]);
    t.ok(&["network", "create", "--subnet", "10.62.0.0/24", "db"]);
    let c1 = host.container("c1");

    let a = attach_json(
        &t,
        "web",
        &c1,
        &["-p", "8080:80", "--name", "www", "--alias", "site"],
    );
    assert_eq!(a["ifname"], "eth0");
    assert_eq!(a["name"], "www");
    assert_eq!(a["ports"][0]["hostPort"], 8080);
    let ip = first_ip(&a);
    assert!(ip.starts_with("10.61.0."), "{a}");
    tcp::exchange_via(
        &c1,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8080),
    )
    .expect("an outside client reaches the container through the published port");

    // A second network on the same container: the next free interface name.
    let second = attach_json(&t, "db", &c1, &[]);
    assert_eq!(second["ifname"], "eth1");
    assert_eq!(c1.global_addresses("eth1").len(), 1);
    assert_eq!(
        c1.default_gateway("-4").as_deref(),
        Some("10.61.0.1"),
        "the first network keeps the default route"
    );
    let refused = t.fails(&[
        "attach",
        "--network",
        "web",
        "--netns",
        &c1.path_str(),
        "c1",
    ]);
    assert!(refused.contains("already attached"), "{refused}");

    let ps = t.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER"), "{ps}");
    let row = ps.lines().find(|l| l.contains(" web ")).expect(&ps);
    assert!(
        row.contains("c1") && row.contains("www") && row.contains(&ip),
        "{ps}"
    );
    assert!(row.contains("8080->80/tcp"), "{ps}");
    let listed = t.json(&["ps", "--json", "--network", "web"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["aliases"][0], "site");

    let inspect = t.json(&["network", "inspect", "web"]);
    assert_eq!(inspect[0]["containers"][0]["containerId"], "c1");

    let stderr = t.fails(&["network", "rm", "web"]);
    assert!(
        stderr.contains("detach them first or pass --force"),
        "{stderr}"
    );
    assert!(t.conf_files().contains(&"web.conflist".to_string()));

    t.ok(&["detach", "--network", "web", "c1"]);
    assert!(!c1.has_link("eth0"));
    assert!(store::is_empty(&t.ipam_dir(), "web"), "the lease is freed");
    assert!(!nft::has_element(&host, &ip));
    assert!(
        tcp::exchange_via(
            &c1,
            sock(&ip, 80),
            &outside.ns,
            sock(outside.host_addr, 8080)
        )
        .is_err(),
        "the port is no longer published"
    );
    t.ok(&["detach", "--network", "web", "c1"]); // already gone: still fine

    // rm --force detaches what is left, then removes bridge, rules, store and file.
    t.ok(&["network", "rm", "--force", "db"]);
    assert!(!c1.has_link("eth1"));
    assert!(!host.has_link("tb-db"));
    t.ok(&["network", "rm", "web"]);
    assert!(!host.has_link("tb-web"));
    // Host-wide published-port chains may stay; nothing of either network does.
    let per_network: Vec<String> = nft::objects(&host)
        .iter()
        .filter_map(|o| {
            o["chain"]["name"]
                .as_str()
                .or(o["set"]["name"].as_str())
                .map(str::to_owned)
        })
        .filter(|n| {
            n.ends_with("_fwd") || n.ends_with("_nat") || n.ends_with("_c4") || n.ends_with("_c6")
        })
        .collect();
    assert!(per_network.is_empty(), "{per_network:?}");
    assert!(
        nft::set_elements(&host)
            .iter()
            .all(|e| !e.starts_with("10.6")),
        "{:?}",
        nft::set_elements(&host)
    );
    assert!(t.cache_entries().is_empty(), "{:?}", t.cache_entries());
    assert!(store::all_leases(&t.ipam_dir()).is_empty());
    assert!(t.conf_files().is_empty());
}

#[test]
fn random_and_ranged_host_ports_and_detach_without_network() {
    let host = HostNs::new("clir");
    let outside = host.outside();
    let t = Tether::new(&host);
    t.ok(&["network", "create", "--subnet", "10.63.0.0/24", "ports"]);
    let c = host.container("c1");
    let a = attach_json(&t, "ports", &c, &["-p", "80", "-p", "9000-9001:90-91/tcp"]);
    let ports = a["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3, "{a}");
    let random = ports[0]["hostPort"].as_u64().unwrap();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let bounds: Vec<u64> = range
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        (bounds[0]..=bounds[1]).contains(&random),
        "{random} outside {range}"
    );
    assert_eq!(
        (
            ports[2]["hostPort"].clone(),
            ports[2]["containerPort"].clone()
        ),
        (9001.into(), 91.into())
    );
    let ip = first_ip(&a);
    tcp::exchange_via(
        &c,
        sock(&ip, 80),
        &outside.ns,
        sock(outside.host_addr, random as u16),
    )
    .expect("the random host port leads to container port 80");
    tcp::exchange_via(
        &c,
        sock(&ip, 91),
        &outside.ns,
        sock(outside.host_addr, 9001),
    )
    .expect("9001 leads to 91");

    let stderr = t.fails(&[
        "attach",
        "--network",
        "ports",
        "--netns",
        &c.path_str(),
        "-p",
        "1-2:80-82",
        "c2",
    ]);
    assert!(stderr.contains("differ in length"), "{stderr}");
    // The ips and mac capabilities reach tether-bridge and tether-ipam.
    let c2 = host.container("c2");
    let b = attach_json(
        &t,
        "ports",
        &c2,
        &["--ip", "10.63.0.50", "--mac", "02:11:22:33:44:55"],
    );
    assert_eq!(b["ips"][0], "10.63.0.50/24");
    assert_eq!(c2.mac("eth0"), "02:11:22:33:44:55");
    t.ok(&["detach", "c1"]);
    t.ok(&["detach", "c2"]);
    assert!(t.cache_entries().is_empty());
    assert!(store::is_empty(&t.ipam_dir(), "ports"));
}

#[test]
fn dual_stack_network_gives_an_address_of_each_family() {
    let host = HostNs::new("cli6");
    let t = Tether::new(&host);
    let net = t.json(&[
        "network",
        "create",
        "--json",
        "--ipv6",
        "--subnet",
        "10.66.0.0/24",
        "ds",
    ]);
    let v6_subnet = net["subnets"][1].as_str().unwrap().to_string();
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let a = attach_json(&t, "ds", &c1, &[]);
    attach_json(&t, "ds", &c2, &[]);
    let ips: Vec<&str> = a["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "{a}");
    let v6 = ips[1].split('/').next().unwrap();
    assert!(v6_subnet.starts_with(&v6[..4]), "{v6} in {v6_subnet}");
    assert!(c2.ping_retry(v6, 3), "c2 reaches c1 over IPv6");
    assert!(c1.default_gateway("-6").is_some());
    t.ok(&["network", "rm", "--force", "ds"]);
    assert!(t.cache_entries().is_empty());
}

#[test]
fn gc_frees_the_lease_and_rules_of_a_container_whose_namespace_is_gone() {
    let host = HostNs::new("clig");
    let t = Tether::new(&host);
    t.ok(&["network", "create", "--subnet", "10.64.0.0/24", "gcnet"]);
    let gone = host.container("gone");
    let kept = host.container("kept");
    let a = attach_json(&t, "gcnet", &gone, &["-p", "8081:80"]);
    attach_json(&t, "gcnet", &kept, &[]);
    let ip = first_ip(&a);
    assert!(nft::has_element(&host, &ip));
    assert_eq!(store::leases(&t.ipam_dir(), "gcnet").len(), 2);

    host.delete_container(&gone);
    let out = t.ok(&["gc"]);
    assert!(out.contains("detached gone from gcnet"), "{out}");
    assert!(
        !nft::has_element(&host, &ip),
        "the firewall elements are gone"
    );
    let leases = store::leases(&t.ipam_dir(), "gcnet");
    assert_eq!(
        leases.len(),
        1,
        "only the live container keeps its lease: {leases:?}"
    );
    assert!(!leases[0].0.contains(&ip));
    assert_eq!(t.cache_entries(), ["gcnet-kept-eth0"]);
    assert_eq!(t.ok(&["gc"]).trim(), "nothing to collect");
    let ps = t.ok(&["ps"]);
    assert!(ps.contains("kept") && !ps.contains("gone"), "{ps}");
}

#[test]
fn a_chain_mixing_a_reference_plugin_runs_from_cni_path() {
    let host = HostNs::new("clim");
    let t = Tether::new(&host);
    if !binaries::reference("tuning").exists() {
        panic!("SKIP impossible: /usr/lib/cni/tuning missing; install containernetworking-plugins");
    }
    // Reference plugins speak up to 1.0.0; tuning declares the mac capability, the bridge does not,
    // so only tuning gets runtimeConfig.mac.
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "mixed",
        "plugins": [
            {"type": "tether-bridge", "bridge": "tb-mixed", "isDefaultGateway": true,
             "ipam": {"type": "tether-ipam", "subnet": "10.65.0.0/24"}},
            {"type": "tuning", "mtu": 1400, "capabilities": {"mac": true}}
        ]
    });
    std::fs::create_dir_all(t.conf_dir()).unwrap();
    std::fs::write(t.conf_dir().join("50-mixed.conflist"), conflist.to_string()).unwrap();
    let c = host.container("c1");
    let a = attach_json(&t, "mixed", &c, &["--mac", "02:aa:bb:cc:dd:01"]);
    assert!(first_ip(&a).starts_with("10.65.0."), "{a}");
    assert_eq!(c.mtu("eth0"), 1400, "tuning ran after the bridge");
    assert_eq!(
        c.mac("eth0"),
        "02:aa:bb:cc:dd:01",
        "tuning got the mac capability"
    );
    let cached: Value = serde_json::from_slice(
        &std::fs::read(t.cache_dir().join("results/mixed-c1-eth0")).unwrap(),
    )
    .unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["capabilityArgs"]["mac"], "02:aa:bb:cc:dd:01");

    // DEL runs from the cache even after the conflist is gone.
    std::fs::remove_file(t.conf_dir().join("50-mixed.conflist")).unwrap();
    t.ok(&["detach", "--network", "mixed", "c1"]);
    assert!(!c.has_link("eth0"));
    assert!(store::is_empty(&t.ipam_dir(), "mixed"));
}

#[test]
fn hook_slot_and_help_for_every_subcommand() {
    let host = HostNs::new("clih");
    let t = Tether::new(&host);
    for sub in [
        vec!["--help"],
        vec!["network", "--help"],
        vec!["network", "create", "--help"],
        vec!["network", "ls", "--help"],
        vec!["network", "inspect", "--help"],
        vec!["network", "rm", "--help"],
        vec!["attach", "--help"],
        vec!["detach", "--help"],
        vec!["ps", "--help"],
        vec!["gc", "--help"],
        vec!["demo", "--help"],
        vec!["hook", "--help"],
    ] {
        let out = t.ok(&sub);
        assert!(out.contains("Usage:"), "{sub:?}: {out}");
    }
    let stderr = t.fails(&[
        "attach",
        "--network",
        "nope",
        "--netns",
        "/run/netns/none",
        "c1",
    ]);
    assert!(stderr.contains("network \"nope\" not found"), "{stderr}");
}

/// One demo at a time: each looks for the namespaces any demo leaves behind.
static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn demo_exits_0_and_leaves_nothing() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(binaries::tether())
        .arg("demo")
        .env_remove("CNI_PATH")
        .output()
        .expect("running tether demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tether demo failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published port"), "{stdout}");
    let leftovers: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tether-demo-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// What a new user meets first needs nothing but the kernel: the demo, with every nft on the machine
/// replaced by a trap that fails and records its call.
#[test]
fn demo_runs_without_nft_or_ping() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let trap = NftTrap::new("demo");
    trap.assert_armed();
    let out = Command::new(trap.wrap(&binaries::tether()))
        .arg("demo")
        .env_remove("CNI_PATH")
        .output()
        .expect("running tether demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tether demo failed without nft and ping: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published port"), "{stdout}");
    assert_eq!(trap.calls(), "", "the demo ran nft or ping");
}

#[test]
fn macvlan_network_from_the_cli_puts_containers_on_the_physical_segment() {
    let seg = SwitchSegment::new("clim", "mvp0");
    let t = Tether::new(&seg.host);
    let (c1, c2) = (seg.host.container("c1"), seg.host.container("c2"));
    for (mode, neighbours_meet) in [("bridge", true), ("private", false)] {
        t.ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=mvp0",
            "-o",
            &format!("macvlan_mode={mode}"),
            "--subnet",
            SEGMENT_SUBNET,
            "--gateway",
            SEGMENT_GATEWAY,
            "--ip-range",
            "192.0.2.64/26",
            "lan",
        ]);
        let inspect = t.json(&["network", "inspect", "lan"]);
        assert_eq!(
            inspect[0]["config"]["plugins"][0]["mode"], mode,
            "{inspect}"
        );
        let a1 = attach_json(&t, "lan", &c1, &[]);
        let a2 = attach_json(&t, "lan", &c2, &[]);
        let (ip1, ip2) = (first_ip(&a1), first_ip(&a2));
        assert!(ip1.starts_with("192.0.2.") && ip1 != ip2, "{a1} {a2}");
        assert!(
            c1.ping_retry(SEGMENT_GATEWAY, 3),
            "{mode}: reaches the gateway"
        );
        assert!(
            c2.ping_retry(SEGMENT_MACHINE, 3),
            "{mode}: reaches the machine"
        );
        assert!(
            seg.machine.ping_retry(&ip1, 3),
            "{mode}: the machine reaches a container"
        );
        assert_eq!(
            c2.ping_retry(&ip1, 2),
            neighbours_meet,
            "{mode}: container to container"
        );
        assert_eq!(
            seg.host.link_names(),
            vec!["lo", "mvp0"],
            "macvlan children never appear on the host"
        );
        t.fails(&["network", "rm", "lan"]);
        t.ok(&["network", "rm", "--force", "lan"]);
        for c in [&c1, &c2] {
            assert_eq!(c.link_names(), vec!["lo"], "{mode}: detached by rm --force");
        }
        assert!(t.cache_entries().is_empty(), "{:?}", t.cache_entries());
    }
}

#[test]
fn create_on_a_host_whose_forward_policy_is_drop_warns_with_the_rules_that_let_tether_through() {
    let host = HostNs::new("cli");
    let t = Tether::new(&host);
    let quiet = t.run(&["network", "create", "calm"]);
    assert!(quiet.status.success());
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("warning"),
        "no warning on a host without a drop policy: {}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    host.exec_ok(&["iptables", "-P", "FORWARD", "DROP"]);
    let out = t.run(&["network", "create", "web"]);
    assert!(out.status.success(), "the network is still created");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: chain FORWARD of table ip filter has policy drop")
            && stderr.contains("iptables -I DOCKER-USER -m devgroup --src-group 7447 -j ACCEPT"),
        "{stderr}"
    );
    // Only read: the other table is as the test left it.
    let filter = host.exec_ok(&["nft", "list", "table", "ip", "filter"]);
    assert!(!filter.contains("7447"), "{filter}");
}
