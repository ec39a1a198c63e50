//! Containers that die without a DEL: tetherd notices their namespace is gone and releases what tether held
//! for them as a DEL would (veth, address, published port, names), but never while a process is still in
//! the namespace. Containers are attached with the `tether` CLI in the test's own host namespace; the
//! tetherd the first attach starts serves only this test's dirs and runs with its default check period.

#[path = "harness/mod.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::overlay_cluster::wait_until;
use harness::switch_segment::{SwitchSegment, SEGMENT_SUBNET};
use harness::tether_cli::TetherCli;
use harness::{store, tcp, HostNs, NetNs};
use serde_json::Value;
use tether::client::protocol::Request;

/// Long enough for tetherd's default 5 s check period and the DEL it runs, well within 30 s.
const RELEASE_WITHIN: Duration = Duration::from_secs(30);

struct Setup<'h> {
    host: &'h HostNs,
    cli: TetherCli<'h>,
}

impl<'h> Setup<'h> {
    /// A `tether` CLI with no upstream resolver (names of this test only) and a short idle grace.
    fn new(host: &'h HostNs) -> Setup<'h> {
        let cli = TetherCli::without_upstreams(host, r#"{"idleGraceMs": 500}"#);
        Setup { host, cli }
    }

    fn attach(&self, network: &str, c: &NetNs, extra: &[&str]) -> Value {
        self.cli.attach_json(network, c, extra)
    }

    fn host_veth_exists(&self, name: &str) -> bool {
        self.host.has_link(name)
    }

    fn tetherd_log(&self) -> String {
        std::fs::read_to_string(self.host.run_dir().join("tetherd.log")).unwrap_or_default()
    }

    fn status(&self) -> Value {
        let reply = tether::client::notify::request(
            &self.host.run_dir(),
            &Request::Status,
            Duration::from_secs(2),
        )
        .expect("tetherd answers status");
        reply.status.unwrap_or_default()
    }

    /// How many namespace checks tetherd has finished.
    fn checks_done(&self) -> u64 {
        self.status()["namespaceChecks"]
            .as_u64()
            .expect("status has namespaceChecks")
    }

    /// How many namespaces tetherd's resolver holds sockets in.
    fn served_namespaces(&self) -> u64 {
        self.status()["services"]["dns"]["namespaces"]
            .as_u64()
            .expect("status has dns.namespaces")
    }

    /// Waits until tetherd has finished two more checks: at least one ran wholly after this call.
    fn wait_for_a_full_check(&self) {
        let before = self.checks_done();
        wait_until("tetherd checked the namespaces", RELEASE_WITHIN, || {
            self.checks_done() >= before + 2
        });
    }
}

fn first_ip(a: &Value) -> String {
    a["ips"][0]
        .as_str()
        .expect("an address")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// The host end of the container's veth, from the attach result.
fn host_veth(a: &Value) -> String {
    a["result"]["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| {
            i.get("sandbox").is_none() && i["name"].as_str().is_some_and(|n| n.starts_with("tv"))
        })
        .and_then(|i| i["name"].as_str())
        .unwrap_or_else(|| panic!("no host veth in {a}"))
        .to_owned()
}

/// `dig +short NAME @127.0.0.11` from inside `c`: the addresses it answered.
fn resolve(c: &NetNs, name: &str) -> Vec<String> {
    let out = c.exec(&["dig", "+short", "+time=2", "+tries=1", "@127.0.0.11", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.starts_with(';'))
        .collect()
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn tetherd_releases_a_container_whose_namespace_was_deleted_without_del() {
    let host = HostNs::new("gone");
    let t = Setup::new(&host);
    let outside = host.outside();
    t.cli.create_network("gonenet", "10.71.0.0/24");
    let (dead, client) = (host.container("dead"), host.container("cl"));
    let a = t.attach("gonenet", &dead, &["--name", "dead", "-p", "8091:80"]);
    t.attach("gonenet", &client, &["--name", "client"]);
    let (ip, veth) = (first_ip(&a), host_veth(&a));
    assert_eq!(resolve(&client, "dead"), vec![ip.clone()]);
    assert_eq!(t.served_namespaces(), 2);
    assert_eq!(
        store::leases(&host.state_dir().join("ipam"), "gonenet").len(),
        2
    );

    // The namespace goes without a DEL; nothing but tetherd's resolver sockets was in it.
    host.delete_container(&dead);
    wait_until("the dead container's veth is gone", RELEASE_WITHIN, || {
        !t.host_veth_exists(&veth)
    });

    assert!(
        resolve(&client, "dead.gonenet").is_empty(),
        "its name no longer resolves"
    );
    assert!(resolve(&client, "dead").is_empty());
    wait_until(
        "the resolver's sockets no longer hold the dead namespace",
        Duration::from_secs(5),
        || t.served_namespaces() == 1,
    );
    let leases = store::leases(&host.state_dir().join("ipam"), "gonenet");
    assert_eq!(
        leases.len(),
        1,
        "only the live container keeps an address: {leases:?}"
    );
    let ps = t.cli.ok(&["ps"]);
    assert!(!ps.contains("dead") && ps.contains("cl"), "{ps}");
    let log = t.tetherd_log();
    let line = log
        .lines()
        .find(|l| l.contains("releasing its attachment"))
        .unwrap_or_else(|| panic!("no release line in the log:\n{log}"));
    assert!(
        line.contains("network=gonenet")
            && line.contains("container=dead")
            && line.contains("ifname=eth0")
            && line.contains(&format!("netns={}", dead.path_str())),
        "{line}"
    );

    // The runtime's DEL, arriving late, finds nothing left and succeeds.
    t.cli.ok(&["detach", "dead"]);

    // Its host port is free again: a new container publishes it and is reached through it.
    let next = host.container("next");
    let b = t.attach("gonenet", &next, &["--name", "next", "-p", "8091:80"]);
    let next_ip = first_ip(&b);
    tcp::exchange_via(
        &next,
        sock(&next_ip, 80),
        &outside.ns,
        sock(outside.host_addr, 8091),
    )
    .expect("an outside client reaches the new container through the port the dead one held");
    assert_eq!(resolve(&client, "next"), vec![next_ip]);

    t.cli.ok(&["detach", "next"]);
    t.cli.ok(&["detach", "cl"]);
    t.cli.ok(&["network", "rm", "gonenet"]);
}

/// A process left in the namespace (here a `sleep` entered with nsenter) until dropped.
struct Holder(Child);

impl Holder {
    fn start(c: &NetNs) -> Holder {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", c.path_str()))
            .args(["--", "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nsenter sleep");
        // Inside once nsenter has exec'd sleep: its namespace differs from ours.
        let pid = child.id();
        wait_until(
            "the holder is in the container's namespace",
            Duration::from_secs(5),
            || {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.ends_with("sleep"))
            },
        );
        Holder(child)
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_namespace_whose_path_is_removed_is_kept_while_a_process_is_in_it() {
    let host = HostNs::new("held");
    let t = Setup::new(&host);
    t.cli.create_network("heldnet", "10.72.0.0/24");
    let (kept, client) = (host.container("kept"), host.container("cl"));
    let a = t.attach("heldnet", &kept, &["--name", "kept"]);
    t.attach("heldnet", &client, &["--name", "client"]);
    let (ip, veth) = (first_ip(&a), host_veth(&a));

    let mut holder = Holder::start(&kept);
    host.delete_container(&kept);
    assert!(
        !PathBuf::from(kept.path_str()).exists(),
        "the /run/netns path is gone"
    );
    t.wait_for_a_full_check();
    assert!(
        t.host_veth_exists(&veth),
        "a namespace with a process in it is not released"
    );
    assert_eq!(resolve(&client, "kept"), vec![ip.clone()]);
    assert!(!t.tetherd_log().contains("releasing its attachment"));

    // The last process leaves: now the namespace is gone, and released.
    holder.stop();
    wait_until("the container's veth is gone", RELEASE_WITHIN, || {
        !t.host_veth_exists(&veth)
    });
    assert!(resolve(&client, "kept.heldnet").is_empty());
    assert_eq!(
        store::leases(&host.state_dir().join("ipam"), "heldnet").len(),
        1
    );

    t.cli.ok(&["detach", "cl"]);
    t.cli.ok(&["network", "rm", "heldnet"]);
}

#[test]
fn tether_gc_without_tetherd_keeps_a_held_namespace_and_collects_a_reused_name() {
    let host = HostNs::new("gcns");
    let t = Setup::new(&host);
    t.cli.create_network("quiet", "10.74.0.0/24");
    // DNS off: nothing needs tetherd, so only `tether gc` lets dead containers go.
    let conf_path = t.cli.conf_dir().join("quiet.conflist");
    let mut conf: Value = serde_json::from_slice(&std::fs::read(&conf_path).unwrap()).unwrap();
    conf["plugins"][0]["embeddedDns"] = Value::Bool(false);
    std::fs::write(&conf_path, serde_json::to_vec(&conf).unwrap()).unwrap();
    let (held, reused) = (host.container("held"), host.container("reused"));
    let a = t.attach("quiet", &held, &[]);
    t.attach("quiet", &reused, &[]);
    assert!(
        !tether::client::notify::answers(&host.run_dir()),
        "no tetherd runs for a network without DNS"
    );
    let ipam = host.state_dir().join("ipam");
    assert_eq!(store::leases(&ipam, "quiet").len(), 2);

    let mut holder = Holder::start(&held);
    host.delete_container(&held);
    // The name is reused for a new namespace: the path opens, but not as the namespace ADD was given.
    host.delete_container(&reused);
    let _new = host.container("reused");

    let out = t.cli.ok(&["gc"]);
    assert!(out.contains("detached reused from quiet"), "{out}");
    assert!(!out.contains("held"), "a process is still in it: {out}");
    assert!(t.host_veth_exists(&host_veth(&a)));
    assert_eq!(store::leases(&ipam, "quiet").len(), 1);

    holder.stop();
    let out = t.cli.ok(&["gc"]);
    assert!(out.contains("detached held from quiet"), "{out}");
    assert!(store::leases(&ipam, "quiet").is_empty());
    assert_eq!(t.cli.ok(&["gc"]).trim(), "nothing to collect");
    t.cli.ok(&["network", "rm", "quiet"]);
}

#[test]
fn tetherd_releases_a_dead_macvlan_container_too() {
    let seg = SwitchSegment::new("gonem", "mvg0");
    let t = Setup::new(&seg.host);
    // No traffic here: the segment's default addresses will do.
    let create = ["network", "create", "-d", "macvlan", "-o", "parent=mvg0"];
    t.cli
        .ok(&[&create[..], &["--subnet", SEGMENT_SUBNET, "lan"]].concat());
    let (dead, client) = (seg.host.container("dead"), seg.host.container("cl"));
    let a = t.attach("lan", &dead, &["--name", "dead"]);
    t.attach("lan", &client, &["--name", "client"]);
    assert_eq!(resolve(&client, "dead"), vec![first_ip(&a)]);
    let ipam = seg.host.state_dir().join("ipam");
    assert_eq!(store::leases(&ipam, "lan").len(), 2);

    seg.host.delete_container(&dead);
    wait_until(
        "the dead container's address is free",
        RELEASE_WITHIN,
        || store::leases(&ipam, "lan").len() == 1,
    );
    wait_until(
        "the resolver's sockets no longer hold the dead namespace",
        Duration::from_secs(5),
        || t.served_namespaces() == 1,
    );
    assert!(resolve(&client, "dead.lan").is_empty());
    let ps = t.cli.ok(&["ps"]);
    assert!(!ps.contains("dead"), "{ps}");

    t.cli.ok(&["detach", "cl"]);
    t.cli.ok(&["network", "rm", "lan"]);
}

#[test]
fn a_release_that_cannot_run_still_closes_the_resolver_in_the_gone_namespace() {
    let host = HostNs::new("gonef");
    let t = Setup::new(&host);
    // Plugins run by a script with a conflist this host does not define: no cache entry and no conflist,
    // so tetherd can run no DEL for the dead container.
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "adhoc",
        "type": "tether-bridge",
        "bridge": "tgf0",
        "isGateway": true,
        "ipam": {"type": "tether-ipam", "subnet": "10.75.0.0/24", "dataDir": host.data_dir_str()}
    });
    let dirs = [
        ("TETHER_RESOLV_CONF", host.dir().join("resolv.conf")),
        ("TETHER_DAEMON_CONFIG", host.dir().join("tetherd.json")),
        ("TETHER_CONF_DIR", t.cli.conf_dir()),
        ("TETHER_CNI_CACHE_DIR", t.cli.cache_dir()),
    ];
    let call = |cmd: &str, c: &NetNs| {
        let mut call = host
            .tether_bridge()
            .cmd(cmd)
            .container(c)
            .args(&format!("K8S_POD_NAME={}", c.label))
            .conf(&conf);
        for (key, dir) in &dirs {
            call = call.env(key, Some(&dir.display().to_string()));
        }
        call.run().assert_ok().clone()
    };
    let (dead, client) = (host.container("dead"), host.container("cl"));
    call("ADD", &dead);
    call("ADD", &client);
    assert_eq!(t.served_namespaces(), 2);

    host.delete_container(&dead);
    wait_until(
        "the resolver's sockets no longer hold the dead namespace",
        RELEASE_WITHIN,
        || t.served_namespaces() == 1,
    );
    let log = t.tetherd_log();
    assert!(
        log.contains("releasing the attachment of a gone namespace failed"),
        "{log}"
    );
    // The runtime's DEL, when it comes, finds the namespace gone and releases the rest.
    call("DEL", &dead);
    assert_eq!(store::leases(&host.data_dir(), "adhoc").len(), 1);
    call("DEL", &client);
}
