//! containerd 1.6 from Debian as a real client: `ctr run --cni` attaches a busybox container through
//! tether's plugins, and a task deleted without CNI DEL is collected by `tether gc` (containerd 1.6's
//! libcni cache entries hold no namespace path; tether's own attachment record does).

#[path = "harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::containerd::Containerd;
use harness::overlay_cluster::wait_until;
use harness::tether_cli::TetherCli;
use harness::{binaries, busybox_rootfs, store, HostNs};
use serde_json::{json, Value};

const NETWORK: &str = "ctrnet";

fn cache_entries(cli: &TetherCli) -> Vec<(String, Value)> {
    let Ok(dir) = std::fs::read_dir(cli.cache_dir().join("results")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect()
}

/// A containerd running busybox `sleep` as container c1, attached by `ctr run --cni` to a tether-bridge
/// network with embedded DNS on or off, with the test's dirs; `tether` (the returned CLI) sees the same
/// conf and cache dirs.
fn start_c1(host: &HostNs, dns: bool) -> (TetherCli<'_>, Containerd) {
    let resolv_conf = host.dir().join("resolv.conf");
    std::fs::write(&resolv_conf, "# no servers\n").unwrap();
    let daemon_conf = host.dir().join("tetherd.json");
    std::fs::write(&daemon_conf, r#"{"idleGraceMs": 500}"#).unwrap();
    let cli = TetherCli::new(host);
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "tether-bridge",
            "bridge": "tct0",
            "isGateway": true,
            "embeddedDns": dns,
            "ipam": {"type": "tether-ipam", "subnet": "10.73.0.0/24", "dataDir": host.data_dir_str()}
        }]
    });
    std::fs::create_dir_all(cli.conf_dir()).unwrap();
    std::fs::write(
        cli.conf_dir().join("10-ctrnet.conflist"),
        serde_json::to_vec_pretty(&conflist).unwrap(),
    )
    .unwrap();
    let path = |p: PathBuf| p.display().to_string();
    let env = vec![
        ("TETHER_STATE_DIR".into(), path(host.state_dir())),
        ("TETHER_RUN_DIR".into(), path(host.run_dir())),
        ("TETHER_RESOLV_CONF".into(), path(resolv_conf)),
        ("TETHER_DAEMON_CONFIG".into(), path(daemon_conf)),
    ];
    let ctrd = Containerd::start(
        host,
        &host.dir().join("containerd"),
        &cli.conf_dir(),
        &cli.cache_dir(),
        &[binaries::tether_bridge(), binaries::tether_ipam()],
        env,
    );
    let rootfs = busybox_rootfs::make(&host.dir().join("rootfs"), "");
    ctrd.run_cni("c1", &rootfs, &["/bin/sleep", "600"]);
    (cli, ctrd)
}

#[test]
fn gc_collects_a_ctr_run_cni_container_whose_task_was_deleted_without_del() {
    let host = HostNs::new("ctrd");
    // No embedded DNS: no tetherd runs, so only `tether gc` can let the dead container go.
    let (cli, ctrd) = start_c1(&host, false);

    let entries = cache_entries(&cli);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (file, entry) = &entries[0];
    let container_id = format!("{}-c1", ctrd.namespace());
    assert_eq!(file, &format!("{NETWORK}-{container_id}-eth0"));
    assert!(
        entry.get("netns").is_none(),
        "containerd 1.6 caches no namespace path (the case tether's record must answer): {entry}"
    );
    let leases = store::leases(&host.data_dir(), NETWORK);
    assert_eq!(leases.len(), 1, "{leases:?}");
    let veths: Vec<String> = host
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("tv"))
        .collect();
    assert_eq!(veths.len(), 1, "{veths:?}");

    // While the container runs, gc leaves it alone.
    assert_eq!(cli.ok(&["gc"]).trim(), "nothing to collect");
    assert_eq!(store::leases(&host.data_dir(), NETWORK).len(), 1);

    ctrd.kill_task("c1");
    // The task's namespace dies with its last process (no tetherd holds it): its veth goes with it.
    wait_until("the task's veth is gone", Duration::from_secs(10), || {
        !host.has_link(&veths[0])
    });
    assert_eq!(
        store::leases(&host.data_dir(), NETWORK).len(),
        1,
        "no DEL ran: the address is still leased"
    );

    // The veth can vanish a moment before every trace of the namespace does (containerd unmounts its
    // netns file on its own schedule): gc is asked until it sees the namespace gone.
    let detached = format!("detached {container_id} from {NETWORK}");
    let mut out = String::new();
    wait_until(
        "gc collects the dead container",
        Duration::from_secs(10),
        || {
            out = cli.ok(&["gc"]);
            out.contains(&detached)
        },
    );
    assert!(out.contains(&detached), "{out}");
    assert!(store::leases(&host.data_dir(), NETWORK).is_empty());
    assert!(
        cache_entries(&cli).is_empty(),
        "its cache entry is collected too"
    );
    assert!(!host
        .state_dir()
        .join("attachments")
        .join(NETWORK)
        .join(format!("{container_id}.eth0.json"))
        .exists());
    assert_eq!(cli.ok(&["gc"]).trim(), "nothing to collect");
    let _ = ctrd.ctr(&["container", "delete", "c1"]);
}

#[test]
fn tetherd_releases_a_ctr_run_cni_task_deleted_without_del() {
    let host = HostNs::new("ctrt");
    let (cli, ctrd) = start_c1(&host, true);
    assert!(
        tether::client::notify::answers(&host.run_dir()),
        "the ADD started tetherd for the container's resolver"
    );
    assert_eq!(store::leases(&host.data_dir(), NETWORK).len(), 1);
    assert_eq!(cache_entries(&cli).len(), 1);

    // tetherd's resolver sockets would keep the namespace alive; its check sees no process left and
    // the /proc/PID/ns/net path gone, and runs the DEL ctr never ran.
    ctrd.kill_task("c1");
    wait_until(
        "tetherd released the dead task",
        Duration::from_secs(30),
        // The cache entry goes last, once the chain's DEL is done.
        || store::leases(&host.data_dir(), NETWORK).is_empty() && cache_entries(&cli).is_empty(),
    );
    assert!(
        !host.link_names().iter().any(|n| n.starts_with("tv")),
        "{:?}",
        host.link_names()
    );
    wait_until(
        "tetherd exits with nothing to serve",
        Duration::from_secs(10),
        || !tether::client::notify::answers(&host.run_dir()),
    );
    assert_eq!(cli.ok(&["gc"]).trim(), "nothing to collect");
    let _ = ctrd.ctr(&["container", "delete", "c1"]);
}
