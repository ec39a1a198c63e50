//! tether-ipam on its own, called as a runtime (or a foreign bridge plugin) would call it.

#[path = "harness/mod.rs"]
mod harness;

use harness::{cni_result, network_conf, spec_versions, store, HostNs, NetNs};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn add(host: &HostNs, c: &NetNs, conf: &Value) -> Value {
    host.tether_ipam().add(c, conf)
}

fn del(host: &HostNs, c: &NetNs, conf: &Value) {
    host.tether_ipam().del(c, conf)
}

#[test]
fn version_lists_every_spec_version_from_0_1_0_to_1_1_0() {
    let host = HostNs::new("ipam");
    for asked in ["0.4.0", "1.1.0"] {
        let out = host
            .tether_ipam()
            .cmd("VERSION")
            .conf(&json!({"cniVersion": asked}))
            .run();
        let v = out.result();
        // As libcni's skel does, VERSION answers with the newest spec version the plugin speaks,
        // whatever version the caller put on stdin.
        assert_eq!(v["cniVersion"], "1.1.0", "VERSION answer for {asked}");
        let supported: BTreeSet<&str> = v["supportedVersions"]
            .as_array()
            .expect("supportedVersions is a list")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for version in spec_versions::ALL {
            assert!(supported.contains(version), "{version} missing from {v}");
        }
    }
}

#[test]
fn add_answers_in_the_shape_of_every_cni_version() {
    let host = HostNs::new("ipam");
    let conf_for = |v: &str| network_conf::tether_ipam(&host, v, &["10.30.0.0/24", "fd00:30::/64"]);
    for (i, version) in spec_versions::ALL.iter().enumerate() {
        let c = host.container(&format!("v{i}"));
        let r = add(&host, &c, &conf_for(version));
        assert_eq!(
            r["cniVersion"], *version,
            "result in the conf's version: {r}"
        );
        match *version {
            "0.1.0" | "0.2.0" => {
                assert!(r.get("ips").is_none(), "{version} has no ips list: {r}");
                let ip4 = r["ip4"]["ip"].as_str().expect("ip4.ip");
                assert!(ip4.starts_with("10.30.0.") && ip4.ends_with("/24"), "{r}");
                assert_eq!(r["ip4"]["gateway"], "10.30.0.1", "{r}");
                let ip6 = r["ip6"]["ip"].as_str().expect("ip6.ip");
                assert!(ip6.starts_with("fd00:30::") && ip6.ends_with("/64"), "{r}");
            }
            _ => {
                let ips = r["ips"].as_array().expect("ips list");
                assert_eq!(ips.len(), 2, "one address per range set: {r}");
                for ip in ips {
                    let addr = ip["address"].as_str().expect("address");
                    let family = if addr.contains(':') { "6" } else { "4" };
                    if version.starts_with("0.") {
                        assert_eq!(ip["version"], family, "0.3.x/0.4.0 carry version: {r}");
                    } else {
                        assert!(ip.get("version").is_none(), "1.x drops version: {r}");
                    }
                    assert!(ip["gateway"].is_string(), "gateway given: {r}");
                }
                assert!(r.get("ip4").is_none(), "{r}");
            }
        }
    }
    for (i, version) in spec_versions::ALL.iter().enumerate() {
        del(
            &host,
            &NetNs {
                label: format!("v{i}"),
                name: String::new(),
            },
            &conf_for(version),
        );
    }
    assert!(
        store::is_empty(&host.data_dir(), "net1"),
        "{:?}",
        store::leases(&host.data_dir(), "net1")
    );
}

#[test]
fn store_holds_one_lease_file_per_ip_and_an_attachment_record() {
    let host = HostNs::new("ipam");
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.31.0.0/24"]);
    let c = host.container("c1");
    let r = add(&host, &c, &conf);
    let ip = cni_result::ip(&r, "4");
    let net = host.data_dir().join("net1");
    let leases = store::leases(&host.data_dir(), "net1");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].0, ip, "lease file named by the IP");
    let lines: Vec<&str> = leases[0].1.lines().collect();
    assert_eq!(
        lines,
        ["c1", "eth0", ip.as_str()],
        "lease holds container id and ifname lines, then the address (it is the index too)"
    );
    assert_eq!(
        store::attachments(&host.data_dir(), "net1"),
        vec!["c1.eth0".to_owned()]
    );
    // One file for a one-address attachment: the index is a second name of the lease.
    use std::os::unix::fs::MetadataExt;
    let lease = std::fs::metadata(net.join(&ip)).unwrap();
    let index = std::fs::metadata(net.join("attachments/c1.eth0")).unwrap();
    assert_eq!((index.ino(), lease.nlink()), (lease.ino(), 2));
    assert!(net.join("lock").exists(), "lock file");
    let last = std::fs::read_to_string(net.join("last_reserved_ip.0")).expect("last_reserved_ip.0");
    assert_eq!(last.trim(), ip);

    del(&host, &c, &conf);
    assert!(store::is_empty(&host.data_dir(), "net1"));
    assert!(
        net.join("attachments").is_dir(),
        "empty attachments dir stays"
    );
    del(&host, &c, &conf);
    // DEL kept the file as a spare beside the stores; the next ADD's lease is that file (no new inode).
    let spare = std::fs::metadata(host.data_dir().join(".spare/0")).expect("a spare after DEL");
    let r = add(&host, &host.container("c2"), &conf);
    let next = std::fs::metadata(net.join(cni_result::ip(&r, "4"))).unwrap();
    assert_eq!(next.ino(), spare.ino());
}

#[test]
fn second_add_gets_a_different_address() {
    let host = HostNs::new("ipam");
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.32.0.0/24"]);
    let a = cni_result::ip(&add(&host, &host.container("c1"), &conf), "4");
    let b = cni_result::ip(&add(&host, &host.container("c2"), &conf), "4");
    assert_ne!(a, b);
    assert_ne!(a, "10.32.0.1", "gateway is never leased");
    assert_ne!(b, "10.32.0.1", "gateway is never leased");
}

#[test]
fn static_ip_from_cni_args_is_leased() {
    let host = HostNs::new("ipam");
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.1.2.0/24"]);
    let c = host.container("c1");
    let out = host
        .tether_ipam()
        .cmd("ADD")
        .container(&c)
        .args("IP=10.1.2.3")
        .conf(&conf)
        .run();
    assert_eq!(
        cni_result::addresses(out.result()),
        vec!["10.1.2.3/24".to_owned()]
    );
    assert_eq!(store::leases(&host.data_dir(), "net1")[0].0, "10.1.2.3");
}

#[test]
fn static_ip_from_runtime_config_ips_capability_is_leased() {
    let host = HostNs::new("ipam");
    let mut conf = network_conf::tether_ipam(&host, "1.1.0", &["10.1.3.0/24"]);
    conf["capabilities"] = json!({"ips": true});
    conf["runtimeConfig"] = json!({"ips": ["10.1.3.7/24"]});
    let r = add(&host, &host.container("c1"), &conf);
    assert_eq!(cni_result::addresses(&r), vec!["10.1.3.7/24".to_owned()]);
}

#[test]
fn check_passes_for_a_live_lease() {
    let host = HostNs::new("ipam");
    let mut conf = network_conf::tether_ipam(&host, "1.1.0", &["10.33.0.0/24"]);
    let c = host.container("c1");
    conf["prevResult"] = add(&host, &c, &conf);
    host.tether_ipam()
        .cmd("CHECK")
        .container(&c)
        .conf(&conf)
        .run()
        .assert_ok();
}

#[test]
fn status_fails_with_code_50_once_a_range_set_is_exhausted() {
    let host = HostNs::new("ipam");
    // A /30 has two hosts; .1 is the gateway, so exactly one lease is free.
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.34.0.0/30"]);
    host.tether_ipam()
        .cmd("STATUS")
        .conf(&conf)
        .run()
        .assert_ok();
    let r = add(&host, &host.container("c1"), &conf);
    assert_eq!(cni_result::ip(&r, "4"), "10.34.0.2");
    host.tether_ipam()
        .cmd("STATUS")
        .conf(&conf)
        .run()
        .expect_error(50);
    let full = host
        .tether_ipam()
        .cmd("ADD")
        .container(&host.container("c2"))
        .conf(&conf)
        .run();
    assert!(
        !full.success(),
        "ADD into a full range succeeded: {}",
        full.stdout
    );
    assert!(
        full.stdout_json["code"].is_u64(),
        "full range answers a CNI error: {}",
        full.stdout
    );
}

#[test]
fn gc_frees_leases_of_containers_not_in_valid_attachments() {
    let host = HostNs::new("ipam");
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.35.0.0/24"]);
    let keep = cni_result::ip(&add(&host, &host.container("c1"), &conf), "4");
    add(&host, &host.container("c2"), &conf);
    add(&host, &host.container("c3"), &conf);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    host.tether_ipam().cmd("GC").conf(&gc).run().assert_ok();
    let leases: Vec<String> = store::leases(&host.data_dir(), "net1")
        .into_iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(leases, vec![keep]);
    assert_eq!(
        store::attachments(&host.data_dir(), "net1"),
        vec!["c1.eth0".to_owned()]
    );
}

#[test]
fn hundred_concurrent_adds_get_distinct_addresses_and_dels_empty_the_store() {
    let host = HostNs::new("ipamc");
    let conf = network_conf::tether_ipam(&host, "1.1.0", &["10.36.0.0/16"]);
    // IPAM touches no namespace: every call may name the host's own.
    let ns = |i: usize| NetNs {
        label: format!("c{i}"),
        name: host.name.clone(),
    };
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let (host, conf, c) = (&host, &conf, ns(i));
                s.spawn(move || cni_result::ip(&add(host, &c, conf), "4"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 100, "duplicate addresses handed out");
    assert_eq!(store::leases(&host.data_dir(), "net1").len(), 100);
    std::thread::scope(|s| {
        for i in 0..100 {
            let (host, conf, c) = (&host, &conf, ns(i));
            s.spawn(move || del(host, &c, conf));
        }
    });
    assert!(store::is_empty(&host.data_dir(), "net1"));
}
