//! The Docker driver `tether-overlay` across two standalone Docker hosts: two test host namespaces on a
//! fabric bridge (harness/overlay_cluster.rs), each with its tetherd control plane on one cluster store
//! (gossip, then etcd) and its own dockerd with `tetherd --docker-plugin` (harness/dockerd.rs). Containers on
//! different hosts ping each other by address over VXLAN, egress goes through Docker's own gateway network,
//! the driver killed and restarted keeps running containers' networking and serves new ones, a restarted
//! dockerd runs new containers on the network, and `network rm` on both hosts leaves no link, record or
//! overlay state of tether.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::dockerd::{Dockerd, IMAGE};
use harness::overlay_cluster::{on_both_stores, wait_until, Cluster, Host, Store, Timings};

const SUBNET: &str = "10.47.0.0/16";
const VNI: &str = "4700";

fn create_overlay(d: &Dockerd) {
    d.docker_ok(&[
        "network",
        "create",
        "-d",
        "tether-overlay",
        "--ipam-driver",
        "tether",
        "--subnet",
        SUBNET,
        "-o",
        &format!("vni={VNI}"),
        "-o",
        "underlay=ul0",
        "ov",
    ]);
}

/// A sleeping container on `ov`; its address there.
fn run_sleeper(d: &Dockerd, name: &str) -> String {
    d.run_sleeper(name, "ov");
    d.address_of(name, "ov")
}

/// Pings until one answers (the other host learns a new container within a reconcile period or two).
fn assert_reaches(d: &Dockerd, from: &str, target: &str) {
    let mut last = String::new();
    let reached = (0..20).any(|_| {
        let out = d.exec_in(from, &format!("ping -c 1 -W 1 {target}"));
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    });
    assert!(
        reached,
        "{from} cannot ping {target}: {last}\ntetherd --docker-plugin's log:\n{}",
        d.tetherd_log()
    );
}

/// The names in `dir` (none when it is gone).
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// No link, record or overlay state of the network left on `host` (Docker's own docker_gwbridge stays,
/// as it does after Docker's overlay).
fn assert_nothing_left(host: &Host) {
    let links = host.ns.ip_json(&["link", "show"]);
    let ours: Vec<&str> = links
        .as_array()
        .expect("ip -j link is a list")
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| ["tob", "tvx", "tv", "tc"].iter().any(|p| n.starts_with(p)))
        .collect();
    assert_eq!(
        ours,
        Vec::<&str>::new(),
        "tether links left after network rm"
    );
    let state = host.ns.state_dir();
    for dir in [
        state.join("overlay").join(format!("docker-vni{VNI}")),
        state.join("attachments").join(format!("docker-vni{VNI}")),
    ] {
        // The control plane keeps writing what blocks the other hosts claim in a network (a first ADD here
        // must avoid them) while any host has it: that file is the control plane's, not the network's.
        let left: Vec<String> = entries(&dir)
            .into_iter()
            .filter(|n| n != "peer_claims.json")
            .collect();
        assert!(left.is_empty(), "{} left: {left:?}", dir.display());
    }
    for kind in ["networks", "endpoints"] {
        let left = entries(&state.join("docker").join(kind));
        assert!(left.is_empty(), "docker {kind} records left: {left:?}");
    }
}

/// `docker` that must fail, saying `words`.
fn assert_refused(d: &Dockerd, args: &[&str], words: &str) {
    let out = d.docker(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(words),
        "docker {args:?} was not refused with {words:?}: {stderr}"
    );
}

/// What the driver refuses, with a message that says what to do, leaving nothing behind.
fn refusals(d: &Dockerd) {
    let create = ["network", "create", "-d", "tether-overlay"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        create.iter().chain(extra).copied().collect()
    };
    let tether_ipam = ["--ipam-driver", "tether", "--subnet", "10.48.0.0/16"];
    // The same VNI twice on one host.
    let mut args = with(&tether_ipam);
    args.extend(["-o", "vni=4700", "-o", "underlay=ul0", "ov2"]);
    assert_refused(d, &args, "vni 4700 is taken");
    let mut args = with(&tether_ipam);
    args.extend(["-o", "underlay=ul0", "ov2"]);
    assert_refused(d, &args, "needs -o vni=N");
    let mut args = with(&tether_ipam);
    args.extend(["--ipv6", "-o", "vni=4800", "-o", "underlay=ul0", "ov2"]);
    assert_refused(d, &args, "IPv4 only");
    // Docker's default IPAM: the network is made, but no container gets an address other hosts may hold.
    let mut args = with(&["--subnet", "10.48.0.0/16"]);
    args.extend(["-o", "vni=4800", "-o", "underlay=ul0", "ov2"]);
    d.docker_ok(&args);
    assert_refused(
        d,
        &[
            "run",
            "-d",
            "--name",
            "x1",
            "--network",
            "ov2",
            IMAGE,
            "sleep",
            "600",
        ],
        "--ipam-driver tether",
    );
    let _ = d.docker(&["rm", "-f", "x1"]);
    d.docker_ok(&["network", "rm", "ov2"]);
    let links = d.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!links.lines().any(|n| n == "ov2"), "{links}");
}

on_both_stores!(docker_overlay_connects_containers_of_two_docker_hosts);
fn docker_overlay_connects_containers_of_two_docker_hosts(store: Store) {
    let cluster = Cluster::on(&store.label("dko"), 2, Timings::FAST, store);
    let (h0, h1) = (&cluster.hosts[0], &cluster.hosts[1]);
    let mut d0 = Dockerd::start(&h0.ns);
    let d1 = Dockerd::start(&h1.ns);
    create_overlay(&d0);
    create_overlay(&d1);
    refusals(&d0);

    let a1 = run_sleeper(&d0, "a1");
    let b1 = run_sleeper(&d1, "b1");
    assert_ne!(a1, b1, "two hosts handed out one address");
    assert!(
        a1.starts_with("10.47.") && b1.starts_with("10.47."),
        "{a1} {b1}"
    );
    assert_reaches(&d0, "a1", &b1);
    assert_reaches(&d1, "b1", &a1);
    // The traffic crossed the fabric as VXLAN.
    assert!(cluster.vxlan_packets() > 0, "no VXLAN packet on the fabric");

    // Same host, by name through Docker's own resolver at 127.0.0.11.
    run_sleeper(&d0, "a2");
    assert_reaches(&d0, "a2", "a1");

    // Egress: Join named no gateway, so Docker gave the container its gateway network (docker_gwbridge)
    // and the default route through it; the gateway answers.
    let routes = d0.docker_ok(&["exec", "a1", "ip", "route"]);
    let gateway = routes
        .lines()
        .find_map(|l| l.strip_prefix("default via "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no default route in a1: {routes}"))
        .to_string();
    assert!(
        !gateway.starts_with("10.47."),
        "the default route goes through the overlay: {routes}"
    );
    assert!(
        d0.docker_ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == "docker_gwbridge"),
        "Docker made no gateway network"
    );
    assert_reaches(&d0, "a1", &gateway);
    // ... and leaves the host masqueraded: host 1 would send a reply to 172.x to its own docker_gwbridge.
    assert_reaches(&d0, "a1", &h1.addr);

    // The driver killed mid-test: running containers keep their networking, and a restarted driver
    // serves new containers on the network it never saw created.
    d0.kill_tetherd();
    assert_reaches(&d0, "a1", &b1);
    d0.start_tetherd();
    let a3 = run_sleeper(&d0, "a3");
    assert_reaches(&d0, "a3", &b1);
    assert_reaches(&d1, "b1", &a3);

    // A removed container is withdrawn from the other host.
    d0.docker_ok(&["rm", "-f", "a3"]);
    wait_until(
        &format!("{a3} unreachable from b1"),
        Duration::from_secs(10),
        || {
            !d1.exec_in("b1", &format!("ping -c 1 -W 1 {a3}"))
                .status
                .success()
        },
    );

    // dockerd restarted (its containers stop with it): it finds the network at the driver as it left it.
    d0.restart_daemon();
    d0.docker_ok(&["rm", "-f", "a1", "a2"]);
    let a4 = run_sleeper(&d0, "a4");
    assert_reaches(&d0, "a4", &b1);
    assert_reaches(&d1, "b1", &a4);

    d0.docker_ok(&["rm", "-f", "a4"]);
    d1.docker_ok(&["rm", "-f", "b1"]);
    d0.docker_ok(&["network", "rm", "ov"]);
    d1.docker_ok(&["network", "rm", "ov"]);
    assert_nothing_left(h0);
    assert_nothing_left(h1);
}
