//! Docker (Debian's docker.io 20.10) over `tetherd --docker-plugin`: networks of the `tether` driver with the
//! `tether` IPAM driver, containers that reach each other by name through Docker's own 127.0.0.11, `-p` from
//! the host, isolation between networks, `-o` options, and restarts of tetherd and dockerd that lose
//! nothing. dockerd runs in the test's own network and mount namespaces (harness/dockerd.rs); after
//! `network rm` no link, nft element or iptables rule of tether is left.

#[path = "harness/mod.rs"]
mod harness;

use harness::dockerd::{Dockerd, IMAGE};
use harness::hook_host::fetch_from;
use harness::{nft, HostNs};

const PAGE: &str = "hello from tether\n";

fn create_network(d: &Dockerd, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "network",
        "create",
        "-d",
        "tether",
        "--ipam-driver",
        "tether",
    ];
    args.extend_from_slice(extra);
    args.push(name);
    d.docker_ok(&args)
}

fn subnet_of(d: &Dockerd, network: &str) -> String {
    d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        network,
    ])
}

fn run_web(d: &Dockerd, name: &str, network: &str, publish: &str) {
    d.run_on(
        (name, network),
        &["-p", publish],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
}

/// Whether `from` gets an answer to a ping of `target` (a name or an address).
fn pings(d: &Dockerd, from: &str, target: &str) -> bool {
    d.exec_in(from, &format!("ping -c 1 -W 2 {target}"))
        .status
        .success()
}

fn assert_pings(d: &Dockerd, from: &str, target: &str) {
    let out = d.exec_in(from, &format!("ping -c 2 -W 2 {target}"));
    assert!(
        out.status.success(),
        "{from} cannot ping {target}: {}{}\ntetherd's log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.tetherd_log()
    );
}

/// After every tether network is gone: no link but lo (and the link to the outside, when made), no nft element, no chain of a network, no
/// DOCKER-USER rule of tether, no record.
fn assert_nothing_left(host: &HostNs) {
    let links = host.ip_json(&["link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .expect("ip -j link is a list")
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| *n != "out0")
        .collect();
    assert_eq!(names, ["lo"], "links left after network rm");
    assert_eq!(
        nft::set_elements(host),
        Vec::<String>::new(),
        "nft elements left after network rm"
    );
    assert_eq!(
        nft::objects_named_for(host, "_fwd"),
        Vec::<String>::new(),
        "network chains left after network rm"
    );
    let rules = host.exec_ok(&["iptables", "-S", "DOCKER-USER"]);
    assert!(
        !rules.contains("devgroup"),
        "tether's DOCKER-USER rules left after the last network: {rules}"
    );
    for kind in ["networks", "endpoints", "pools"] {
        let dir = host.state_dir().join("docker").join(kind);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|it| it.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{kind} records left: {left:?}");
    }
}

fn remove_all(d: &Dockerd, containers: &[&str], networks: &[&str]) {
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend_from_slice(containers);
        d.docker_ok(&args);
    }
    for n in networks {
        d.docker_ok(&["network", "rm", n]);
    }
}

#[test]
fn docker_runs_containers_on_tether_networks() {
    let host = HostNs::new("dk");
    let outside = host.outside();
    let d = Dockerd::start(&host);

    // A subnet given, and one chosen: the automatic pool overlaps neither a pool in use nor a host route
    // (dockerd would ask again forever).
    host.ip(&["route", "add", "172.17.0.0/16", "dev", "lo"]);
    create_network(
        &d,
        "front",
        &[
            "--ipv6",
            "--subnet",
            "172.18.0.0/16",
            "--ip-range",
            "172.18.5.0/24",
            "--gateway",
            "172.18.0.254",
            "--subnet",
            "fd00:7e7e::/64",
        ],
    );
    create_network(&d, "back", &[]);
    assert_eq!(subnet_of(&d, "front"), "172.18.0.0/16");
    let back = subnet_of(&d, "back");
    assert_eq!(
        back, "172.19.0.0/16",
        "the first automatic pool clear of the route and of front"
    );
    host.ip(&["route", "del", "172.17.0.0/16", "dev", "lo"]);
    let refused = d.docker(&[
        "network",
        "create",
        "-d",
        "tether",
        "--ipam-driver",
        "tether",
        "--subnet",
        "172.18.5.0/24",
        "clash",
    ]);
    assert!(
        !refused.status.success(),
        "a subnet overlapping a pool in use must be refused"
    );

    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8090:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    d.run_sleeper("c1", "front");
    d.run_sleeper("c2", "back");
    // By name, through Docker's own resolver at 127.0.0.11.
    assert_pings(&d, "c1", "web");
    assert_pings(&d, "web", "c1");
    // --ip-range, --gateway and the IPv6 subnet, through tether's IPAM driver.
    let web_ip = d.address_of("web", "front");
    assert!(
        web_ip.starts_with("172.18.5."),
        "{web_ip} is outside --ip-range"
    );
    assert_eq!(subnet_gateway(&d, "front"), "172.18.0.254");
    let routes = d.docker_ok(&["exec", "c1", "ip", "route"]);
    assert!(routes.contains("default via 172.18.0.254"), "{routes}");
    let web_ip6 = d.docker_ok(&[
        "inspect",
        "-f",
        "{{(index .NetworkSettings.Networks \"front\").GlobalIPv6Address}}",
        "web",
    ]);
    assert!(web_ip6.starts_with("fd00:7e7e::"), "{web_ip6}");
    assert_pings(&d, "c1", &format!("-6 {web_ip6}"));
    let resolv = d.docker_ok(&["exec", "c1", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("127.0.0.11"), "{resolv}");

    // -p from the test's host namespace (where dockerd runs), on loopback and on the gateway address.
    for url in [
        "http://127.0.0.1:8080/",
        "http://172.18.0.254:8080/",
        "http://127.0.0.1:8090/",
    ] {
        assert_eq!(
            fetch_from(&host.path_str(), url).unwrap_or_else(|e| panic!("{url}: {e}")),
            PAGE
        );
    }
    // A host port another container holds is refused.
    let clash = d.docker(&[
        "run",
        "-d",
        "--name",
        "web2",
        "--network",
        "front",
        "-p",
        "8080:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(!clash.status.success(), "a second -p 8080 must be refused");
    let why = String::from_utf8_lossy(&clash.stderr);
    assert!(why.contains("8080"), "the refusal names the port: {why}");
    d.docker_ok(&["rm", "-f", "web2"]);
    assert_eq!(
        fetch_from(&host.path_str(), "http://127.0.0.1:8080/").as_deref(),
        Ok(PAGE),
        "the refused container took the port from its holder"
    );

    // Egress through Docker's FORWARD DROP, masqueraded (the outside has no route back to containers).
    assert_pings(&d, "c1", outside.addr);

    // Isolation between networks, as on the CNI path.
    assert!(!pings(&d, "c2", &web_ip), "back reaches front");
    assert!(
        !pings(&d, "c1", &d.address_of("c2", "back")),
        "front reaches back"
    );

    // connect/disconnect: c1 joins back, reaches c2 by name, and leaves again.
    d.docker_ok(&["network", "connect", "back", "c1"]);
    assert_pings(&d, "c1", "c2");
    assert_pings(&d, "c2", "c1");
    d.docker_ok(&["network", "disconnect", "back", "c1"]);
    assert!(
        !pings(&d, "c1", "c2"),
        "c1 still reaches back after disconnect"
    );
    assert_pings(&d, "c1", "web");

    // -o options: icc off keeps neighbours apart, mtu reaches the container; --internal has no default route.
    create_network(
        &d,
        "quiet",
        &[
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "-o",
            "com.docker.network.bridge.name=tq-quiet",
        ],
    );
    create_network(&d, "inner", &["--internal"]);
    d.run_sleeper("q1", "quiet");
    d.run_sleeper("q2", "quiet");
    d.run_sleeper("i1", "inner");
    assert!(host.ip(&["link", "show", "tq-quiet"]).contains("mtu 1400"));
    let mtu = d.docker_ok(&["exec", "q1", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu, "1400");
    assert!(
        !pings(&d, "q1", "q2"),
        "enable_icc=false: neighbours must not talk"
    );
    assert_pings(&d, "q1", &subnet_gateway(&d, "quiet"));
    let routes = d.docker_ok(&["exec", "i1", "ip", "route"]);
    assert!(
        !routes.contains("default"),
        "an internal network gives no default route: {routes}"
    );
    assert!(
        !pings(&d, "i1", outside.addr),
        "an internal network reaches the outside"
    );
    create_network(
        &d,
        "nomasq",
        &["-o", "com.docker.network.bridge.enable_ip_masquerade=false"],
    );
    d.run_sleeper("n1", "nomasq");
    assert!(
        !pings(&d, "n1", outside.addr),
        "without masquerade the outside cannot answer"
    );
    assert_pings(&d, "n1", &subnet_gateway(&d, "nomasq"));
    let bad = d.docker(&[
        "network",
        "create",
        "-d",
        "tether",
        "--ipam-driver",
        "tether",
        "-o",
        "parent=eth0",
        "bad",
    ]);
    assert!(!bad.status.success(), "an unknown -o must be refused");

    remove_all(
        &d,
        &["web", "c1", "c2", "q1", "q2", "i1", "n1"],
        &["front", "back", "quiet", "inner", "nomasq"],
    );
    assert_nothing_left(&host);
}

fn subnet_gateway(d: &Dockerd, network: &str) -> String {
    d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        network,
    ])
}

#[test]
fn restarts_of_tetherd_and_dockerd_lose_nothing() {
    let host = HostNs::new("dkr");
    let mut d = Dockerd::start(&host);
    create_network(&d, "net", &[]);
    run_web(&d, "web", "net", "8081:80");
    d.run_sleeper("c1", "net");
    assert_pings(&d, "c1", "web");

    // tetherd dies: what the kernel holds keeps working.
    d.kill_tetherd();
    assert_pings(&d, "c1", "web");
    assert_eq!(
        fetch_from(&host.path_str(), "http://127.0.0.1:8081/").as_deref(),
        Ok(PAGE)
    );
    // A new tetherd knows every network, endpoint and pool Docker made through the old one.
    d.start_tetherd();
    d.run_sleeper("c2", "net");
    assert_pings(&d, "c2", "web");
    assert_pings(&d, "web", "c2");
    assert_eq!(
        fetch_from(&host.path_str(), "http://127.0.0.1:8081/").as_deref(),
        Ok(PAGE)
    );
    // The new container's address is a fresh one: the pool remembered the others.
    let addrs: Vec<String> = ["web", "c1", "c2"]
        .iter()
        .map(|c| d.address_of(c, "net"))
        .collect();
    assert!(addrs[2] != addrs[0] && addrs[2] != addrs[1], "{addrs:?}");
    remove_all(&d, &["web", "c1", "c2"], &["net"]);
    assert_nothing_left(&host);

    // dockerd restarts under a running tetherd (its containers die with it), then both are down and
    // tetherd comes back first: networks keep working, new containers join, rm leaves nothing.
    create_network(&d, "net2", &["--subnet", "10.124.0.0/24"]);
    run_web(&d, "web", "net2", "8082:80");
    d.restart_daemon();
    d.docker_ok(&["start", "web"]);
    d.run_sleeper("c3", "net2");
    assert_pings(&d, "c3", "web");
    assert_eq!(
        fetch_from(&host.path_str(), "http://127.0.0.1:8082/").as_deref(),
        Ok(PAGE)
    );
    d.kill_tetherd();
    d.restart_daemon_with_tetherd_first();
    d.docker_ok(&["start", "web", "c3"]);
    assert_pings(&d, "c3", "web");
    assert_eq!(
        fetch_from(&host.path_str(), "http://127.0.0.1:8082/").as_deref(),
        Ok(PAGE)
    );
    remove_all(&d, &["web", "c3"], &["net2"]);
    assert_nothing_left(&host);
}

#[test]
fn macvlan_networks_on_a_parent_link() {
    let host = HostNs::new("dkm");
    let d = Dockerd::start(&host);
    // The parent: a veth end in the test's host namespace (this kernel has no dummy links).
    host.ip(&[
        "link", "add", "mvp0", "type", "veth", "peer", "name", "mvp1",
    ]);
    host.ip(&["link", "set", "mvp0", "up"]);
    host.ip(&["link", "set", "mvp1", "up"]);
    let macvlan = |name: &str, subnet: &str, extra: &[&str]| {
        let mut args = vec![
            "network",
            "create",
            "-d",
            "tether-macvlan",
            "--ipam-driver",
            "tether",
            "--subnet",
            subnet,
            "-o",
            "parent=mvp0",
        ];
        args.extend_from_slice(extra);
        args.push(name);
        d.docker_ok(&args);
    };
    macvlan(
        "mvb",
        "10.126.0.0/24",
        &["-o", "com.docker.network.driver.mtu=1400"],
    );
    macvlan("mvp", "10.127.0.0/24", &["-o", "macvlan_mode=private"]);
    d.run_sleeper("b1", "mvb");
    d.run_sleeper("b2", "mvb");
    d.run_sleeper("p1", "mvp");
    d.run_sleeper("p2", "mvp");
    // bridge mode: siblings meet inside the kernel, by name through Docker's resolver.
    assert_pings(&d, "b1", "b2");
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "b1"]);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-d", "link", "show", "eth0"])
        .output()
        .expect("nsenter ip");
    let link = String::from_utf8_lossy(&out.stdout);
    assert!(
        link.contains("macvlan mode bridge") && link.contains("mtu 1400"),
        "{link}"
    );
    // private mode: siblings never meet.
    assert!(!pings(&d, "p1", "p2"), "private macvlan siblings talk");
    let bad = d.docker(&[
        "network",
        "create",
        "-d",
        "tether-macvlan",
        "--ipam-driver",
        "tether",
        "--subnet",
        "10.128.0.0/24",
        "-o",
        "parent=nonexistent0",
        "bad",
    ]);
    assert!(!bad.status.success(), "a missing parent must be refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nonexistent0"));

    remove_all(&d, &["b1", "b2", "p1", "p2"], &["mvb", "mvp"]);
    host.ip(&["link", "del", "mvp0"]);
    assert_nothing_left(&host);
}
