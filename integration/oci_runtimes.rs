//! Real OCI runtimes calling `tether hook`: runc and crun run busybox bundles whose config.json installs
//! the hook as createRuntime and poststop, inside the test's host namespace. The container gets its
//! address, reaches a second container, serves a published port to an outside namespace, and after
//! `delete` nothing of it is left; a failing hook makes `run` fail and leaves nothing either.

#[path = "harness/mod.rs"]
mod harness;

use std::process::Command;

use harness::hook_host::{fetch_from, HookHost};
use harness::nft;
use harness::oci_bundle::OciBundle;
use harness::oci_runtime::{OciRuntime, RunningContainer, RuntimeKind};
use serde_json::json;

fn start<'r>(runtime: &'r OciRuntime, id: &str, bundle: &OciBundle) -> RunningContainer<'r> {
    bundle.write();
    let outcome = runtime.run_detached(id, &bundle.dir);
    assert!(outcome.success, "run {id} failed: {}", outcome.log);
    RunningContainer {
        runtime,
        id: id.to_string(),
    }
}

/// The IPv4 address on the container's eth0, read from its namespace.
fn container_ipv4(container: &RunningContainer) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", container.netns_path()))
        .args(["ip", "-j", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no eth0 in {}: {}",
        container.id,
        String::from_utf8_lossy(&out.stderr)
    );
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    links[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or_else(|| panic!("eth0 of {} has no IPv4 address: {links}", container.id))
        .to_string()
}

fn container_mac(container: &RunningContainer) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", container.netns_path()))
        .args(["ip", "-j", "link", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links[0]["address"].as_str().unwrap_or_default().to_string()
}

fn link_names_in(netns: &str) -> Vec<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "-j", "link", "show"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}:{}",
                l["ifname"].as_str().unwrap(),
                l["operstate"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn container_fetch(container: &RunningContainer, url: &str) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..3 {
        // `timeout`, not wget's own -T: busybox 1.35's `wget -T` dies of SIGSEGV.
        let (ok, text) = container.exec(&["timeout", "5", "wget", "-q", "-O", "-", url]);
        if ok {
            return Ok(text);
        }
        last = text;
    }
    Err(last)
}

/// The whole life of two containers under one runtime: networked at create, talking to each other and
/// to the outside through a published port, and gone without a trace after delete.
fn two_containers_on_one_network(kind: RuntimeKind) {
    let setup = HookHost::new(&kind.binary()[..2]);
    let outside = setup.host.outside();
    let runtime = setup.runtime(kind);

    // web: network and port from annotations; client: network from the hook's arguments.
    let mut web = setup.bundle(
        "web",
        "hello from web\n",
        &["httpd", "-f", "-p", "80", "-h", "/www"],
        &[],
    );
    web.annotation("tether.network", "front")
        .annotation("tether.ports", "8080:80")
        .annotation("tether.aliases", "www");
    let client = setup.bundle(
        "client",
        "",
        &["sleep", "600"],
        &[
            "--network",
            "front",
            "--ip",
            "10.77.0.50",
            "--mac",
            "02:00:0a:4d:00:32",
        ],
    );

    let web_c = start(&runtime, "web", &web);
    let client_c = start(&runtime, "client", &client);

    let web_ip = container_ipv4(&web_c);
    let client_ip = container_ipv4(&client_c);
    assert!(web_ip.starts_with("10.77.0."), "web got {web_ip}");
    assert_eq!(client_ip, "10.77.0.50", "the hook's --ip was not used");
    assert_eq!(
        container_mac(&client_c),
        "02:00:0a:4d:00:32",
        "the hook's --mac was not used"
    );
    assert!(
        link_names_in(&web_c.netns_path()).contains(&"lo:UNKNOWN".to_string()),
        "lo is not up in web: {:?}",
        link_names_in(&web_c.netns_path())
    );

    // The hook wrote the container's own files into its writable rootfs.
    let hosts = web
        .rootfs_file("etc/hosts")
        .expect("no /etc/hosts in web's rootfs");
    assert!(hosts.contains(&format!("{web_ip}\tweb www")), "{hosts}");
    let resolv = web
        .rootfs_file("etc/resolv.conf")
        .expect("no /etc/resolv.conf in web's rootfs");
    assert!(resolv.contains("tether hook"), "{resolv}");

    // Container to container: ICMP and HTTP.
    // Up to three single echoes: the first may go to ARP on a loaded machine.
    let mut ping_out = String::new();
    let pinged = (0..3).any(|_| {
        let (ok, text) = client_c.exec(&["ping", "-c", "1", "-W", "2", &web_ip]);
        ping_out = text;
        ok
    });
    assert!(pinged, "client cannot ping web {web_ip}: {ping_out}");
    let page =
        container_fetch(&client_c, &format!("http://{web_ip}/")).expect("client cannot fetch web");
    assert_eq!(page, "hello from web\n");

    // The published port, from a machine outside the host.
    let page = fetch_from(
        &outside.ns.path_str(),
        &format!("http://{}:8080/", outside.host_addr),
    )
    .unwrap_or_else(|e| panic!("outside cannot reach web through 8080: {e}"));
    assert_eq!(page, "hello from web\n");
    assert!(nft::has_element(&setup.host.ns, &web_ip));

    web_c.delete().expect("deleting web");
    client_c.delete().expect("deleting client");
    setup.assert_nothing_left(&[web_ip.clone(), client_ip]);

    // poststop may run again (a second delete, a cleanup after a crash): still a success.
    let state = json!({"ociVersion": "1.0.2", "id": "web", "status": "stopped",
                       "bundle": web.dir, "annotations": {"tether.network": "front"}});
    let out = setup.run_hook(&[], &state.to_string());
    assert!(
        out.status.success(),
        "second detach failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn runc_containers_get_addresses_talk_publish_and_leave_nothing() {
    two_containers_on_one_network(RuntimeKind::Runc);
}

#[test]
fn crun_containers_get_addresses_talk_publish_and_leave_nothing() {
    two_containers_on_one_network(RuntimeKind::Crun);
}

/// A hook that fails makes `run` fail; the network attached before the failure is rolled back.
fn failing_hook_leaves_nothing(kind: RuntimeKind) {
    let setup = HookHost::new(&format!("{}f", &kind.binary()[..1]));
    let runtime = setup.runtime(kind);
    // front attaches first; nosuch fails, so front must be rolled back.
    let bundle = setup.bundle("bad", "", &["sleep", "600"], &["--network", "front,nosuch"]);
    bundle.write();
    let outcome = runtime.run_detached("bad", &bundle.dir);
    let _guard = RunningContainer {
        runtime: &runtime,
        id: "bad".into(),
    };
    assert!(!outcome.success, "run succeeded with a bad network");
    // runc shows the hook's stderr; crun says only that the hook failed.
    let named = match kind {
        RuntimeKind::Runc => outcome.log.contains("network nosuch"),
        RuntimeKind::Crun => outcome.log.contains("error executing hook"),
    };
    assert!(named, "the error does not say why: {}", outcome.log);
    assert!(
        runtime
            .state("bad")
            .is_none_or(|s| s["status"] == "stopped"),
        "container left running"
    );
    setup.assert_nothing_left(&[]);
}

#[test]
fn a_failing_hook_makes_runc_run_fail_and_leaves_nothing() {
    failing_hook_leaves_nothing(RuntimeKind::Runc);
}

#[test]
fn a_failing_hook_makes_crun_run_fail_and_leaves_nothing() {
    failing_hook_leaves_nothing(RuntimeKind::Crun);
}

#[test]
fn two_networks_become_eth0_and_eth1_and_both_go_on_delete() {
    let setup = HookHost::new("r2");
    // Both networks offer a default route; the container keeps the first one.
    setup.write_network("back", "tt1", "10.78.0.0/24");
    let runtime = setup.runtime(RuntimeKind::Runc);
    let bundle = setup.bundle("multi", "", &["sleep", "600"], &["--network", "front,back"]);
    let c = start(&runtime, "multi", &bundle);
    let names = link_names_in(&c.netns_path());
    assert!(
        names.iter().any(|n| n.starts_with("eth0:"))
            && names.iter().any(|n| n.starts_with("eth1:")),
        "{names:?}"
    );
    assert!(container_ipv4(&c).starts_with("10.77.0."));
    assert_eq!(
        setup.cached_results().len(),
        2,
        "{:?}",
        setup.cached_results()
    );
    assert_eq!(setup.host_veths().len(), 2);
    c.delete().expect("deleting multi");
    setup.assert_nothing_left(&[]);
}

#[test]
fn no_network_leaves_loopback_only() {
    let setup = HookHost::new("rn");
    let runtime = setup.runtime(RuntimeKind::Runc);
    let bundle = setup.bundle("lonely", "", &["sleep", "600"], &[]);
    let c = start(&runtime, "lonely", &bundle);
    assert_eq!(link_names_in(&c.netns_path()), ["lo:UNKNOWN"]);
    c.delete().expect("deleting lonely");
    setup.assert_nothing_left(&[]);
}

#[test]
fn a_container_sharing_the_runtimes_namespace_is_refused_unless_host() {
    let setup = HookHost::new("rh");
    let runtime = setup.runtime(RuntimeKind::Runc);
    let before = setup.host.ns.link_names();

    let mut shared = setup.bundle("shared", "", &["sleep", "600"], &["--network", "front"]);
    shared.share_host_network().write();
    let outcome = runtime.run_detached("shared", &shared.dir);
    let _guard = RunningContainer {
        runtime: &runtime,
        id: "shared".into(),
    };
    assert!(
        !outcome.success,
        "attaching the runtime's own namespace was allowed"
    );
    assert!(
        outcome
            .log
            .contains("shares the runtime's network namespace"),
        "{}",
        outcome.log
    );

    let mut host_mode = setup.bundle("hostmode", "", &["sleep", "600"], &["--network", "host"]);
    host_mode.share_host_network();
    let c = start(&runtime, "hostmode", &host_mode);
    assert_eq!(
        setup.host.ns.link_names(),
        before,
        "host mode changed the host's links"
    );
    c.delete().expect("deleting hostmode");
    setup.assert_nothing_left(&[]);
}

/// A process started in `ns`, killed on drop: stands in for a container's init.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start(ns: &harness::NetNs) -> Sleeper {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path_str()))
            .args(["sleep", "600"])
            .spawn()
            .unwrap();
        Sleeper(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn poststop_never_enters_a_namespace_that_a_reused_pid_now_names() {
    let setup = HookHost::new("rp");
    // The reference bridge enters CNI_NETNS on DEL and deletes the interface there.
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "ref",
        "plugins": [{
            "type": "bridge", "bridge": "tr0", "isGateway": true,
            "ipam": {"type": "host-local", "subnet": "10.79.0.0/24", "dataDir": setup.host.data_dir_str()}
        }]
    });
    std::fs::write(setup.conf_dir.join("ref.conflist"), conflist.to_string()).unwrap();

    let container_ns = setup.host.container("c1");
    let mut init = Sleeper::start(&container_ns);
    let state = json!({"ociVersion": "1.0.2", "id": "c1", "status": "creating", "pid": init.pid()});
    let out = setup.run_hook(&["--network", "ref"], &state.to_string());
    assert!(
        out.status.success(),
        "attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(container_ns.has_link("eth0"));

    // The container's init exits and its pid goes to a process in another namespace with an eth0.
    let victim = setup.host.container("victim");
    victim.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "v0"]);
    let bystander = Sleeper::start(&victim);
    let cache_file = setup.cache_dir.join("results/ref-c1-eth0");
    let mut entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache_file).unwrap()).unwrap();
    assert_eq!(entry["netns"], format!("/proc/{}/ns/net", init.pid()));
    entry["netns"] = json!(format!("/proc/{}/ns/net", bystander.pid()));
    std::fs::write(&cache_file, entry.to_string()).unwrap();
    let _ = init.0.kill();
    let _ = init.0.wait();

    let stopped = json!({"ociVersion": "1.0.2", "id": "c1", "status": "stopped"});
    let out = setup.run_hook(&["--network", "ref"], &stopped.to_string());
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        victim.has_link("eth0"),
        "poststop deleted another namespace's eth0"
    );
    assert!(
        setup.cached_results().is_empty(),
        "{:?}",
        setup.cached_results()
    );
    assert!(harness::store::all_leases(&setup.host.data_dir()).is_empty());
}

#[test]
fn a_container_id_whose_poststop_never_ran_can_be_attached_again() {
    let setup = HookHost::new("ra");
    let first_ns = setup.host.container("first");
    let mut first = Sleeper::start(&first_ns);
    let state =
        |pid: u32| json!({"ociVersion": "1.0.2", "id": "again", "status": "creating", "pid": pid});
    let out = setup.run_hook(&["--network", "front"], &state(first.pid()).to_string());
    assert!(
        out.status.success(),
        "first attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first container dies without a poststop (runtime killed, host rebooted).
    let _ = first.0.kill();
    let _ = first.0.wait();
    setup.host.delete_container(&first_ns);

    let second_ns = setup.host.container("second");
    let second = Sleeper::start(&second_ns);
    let out = setup.run_hook(&["--network", "front"], &state(second.pid()).to_string());
    assert!(
        out.status.success(),
        "second attach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(second_ns.has_link("eth0"));
    assert_eq!(
        setup.cached_results().len(),
        1,
        "{:?}",
        setup.cached_results()
    );
    assert_eq!(harness::store::all_leases(&setup.host.data_dir()).len(), 1);
    assert_eq!(setup.host_veths().len(), 1);

    let stopped = json!({"ociVersion": "1.0.2", "id": "again", "status": "stopped"});
    drop(second);
    let out = setup.run_hook(&["--network", "front"], &stopped.to_string());
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    setup.assert_nothing_left(&[]);
}

/// Two runc containers named by annotation find each other through the resolver the hook points their
/// /etc/resolv.conf at, and the tetherd serving them exits once both are deleted.
#[test]
fn runc_containers_named_by_annotation_resolve_each_other() {
    let setup = HookHost::new("rd");
    let runtime = setup.runtime(RuntimeKind::Runc);
    let mut alpha = setup.bundle("alpha", "", &["sleep", "600"], &[]);
    alpha
        .annotation("tether.network", "front")
        .annotation("tether.name", "alpha");
    let mut beta = setup.bundle("beta", "", &["sleep", "600"], &[]);
    beta.annotation("tether.network", "front")
        .annotation("tether.name", "beta")
        .annotation("tether.aliases", "db");
    let alpha_c = start(&runtime, "alpha", &alpha);
    let beta_c = start(&runtime, "beta", &beta);
    let (alpha_ip, beta_ip) = (container_ipv4(&alpha_c), container_ipv4(&beta_c));

    let resolv = alpha
        .rootfs_file("etc/resolv.conf")
        .expect("no /etc/resolv.conf in alpha's rootfs");
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(nameservers, ["127.0.0.11"], "{resolv}");
    assert!(setup.tetherd_pid().is_some(), "no tetherd after two ADDs");

    // busybox nslookup with no server argument: it asks what /etc/resolv.conf names.
    for (from, name, ip) in [
        (&alpha_c, "beta", &beta_ip),
        (&alpha_c, "db", &beta_ip),
        (&beta_c, "alpha", &alpha_ip),
        (&beta_c, "alpha.front", &alpha_ip),
    ] {
        let (ok, out) = from.exec(&["nslookup", name]);
        assert!(
            ok && out.contains(ip.as_str()),
            "{} nslookup {name}: {out}",
            from.id
        );
    }
    let (ok, out) = alpha_c.exec(&["nslookup", "nobody.front"]);
    assert!(!ok && !out.contains("10.77.0."), "nobody.front: {out}");

    alpha_c.delete().expect("deleting alpha");
    beta_c.delete().expect("deleting beta");
    setup.assert_nothing_left(&[alpha_ip, beta_ip]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while setup.tetherd_pid().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        setup.tetherd_pid(),
        None,
        "tetherd still runs after both containers were deleted"
    );
}

/// Containers named by the hook's `tether.aliases` annotation are the backends of service `api`: a
/// third container's requests to the VIP reach both.
#[test]
fn runc_containers_aliased_by_annotation_become_service_backends() {
    let setup = HookHost::new("rsv");
    let runtime = setup.runtime(RuntimeKind::Runc);
    let mut running = Vec::new();
    for name in ["api1", "api2"] {
        let mut bundle = setup.bundle(
            name,
            &format!("{name}\n"),
            &["httpd", "-f", "-p", "80", "-h", "/www"],
            &[],
        );
        bundle
            .annotation("tether.network", "front")
            .annotation("tether.aliases", "api");
        running.push(start(&runtime, name, &bundle));
    }
    let mut client = setup.bundle("client", "", &["sleep", "600"], &[]);
    client.annotation("tether.network", "front");
    let client_c = start(&runtime, "client", &client);
    let vip = setup.create_http_service("api", 2);
    let pages: std::collections::HashSet<String> = (0..30)
        .map(|_| container_fetch(&client_c, &format!("http://{vip}/")).unwrap())
        .collect();
    assert_eq!(pages.len(), 2, "30 requests to the VIP reached {pages:?}");
    setup.tether_ok(&["service", "rm", "api"]);
    client_c.delete().expect("deleting client");
    for c in running {
        c.delete().expect("deleting a replica");
    }
}
