//! Validates the harness itself against Debian's reference bridge + host-local: if these fail, the
//! harness is wrong, not tether.

#[path = "harness/mod.rs"]
mod harness;

use harness::{cni_result, network_conf, store, tcp, HostNs};

#[test]
fn reference_bridge_two_containers_ping_and_talk_tcp() {
    let host = HostNs::new("selftest");
    let conf = network_conf::reference_bridge(&host, "1.0.0", "10.200.0.0/24");
    let c1 = host.container("c1");
    let c2 = host.container("c2");
    let r1 = host
        .reference("bridge")
        .cmd("ADD")
        .container(&c1)
        .conf(&conf)
        .run();
    let r2 = host
        .reference("bridge")
        .cmd("ADD")
        .container(&c2)
        .conf(&conf)
        .run();
    let ip1 = cni_result::ip(r1.assert_ok(), "4");
    let ip2 = cni_result::ip(r2.assert_ok(), "4");
    assert_eq!(c1.global_addresses("eth0"), vec![format!("{ip1}/24")]);
    assert_eq!(c1.default_gateway("-4").as_deref(), Some("10.200.0.1"));
    assert!(c1.ping_retry(&ip2, 3), "c1 cannot ping {ip2}");
    tcp::exchange(&c2, &ip2, 8080, &c1).expect("tcp c1 -> c2");
    assert_eq!(store::leases(&host.data_dir(), "net1").len(), 2);

    for c in [&c1, &c2] {
        host.reference("bridge")
            .cmd("DEL")
            .container(c)
            .conf(&conf)
            .run()
            .assert_ok();
    }
    assert!(store::leases(&host.data_dir(), "net1").is_empty());
}

#[test]
fn reference_bridge_check_fails_after_address_removed_and_del_after_netns_gone() {
    let host = HostNs::new("selftest");
    let conf = network_conf::reference_bridge(&host, "1.0.0", "10.201.0.0/24");
    let c1 = host.container("c1");
    let r = host
        .reference("bridge")
        .cmd("ADD")
        .container(&c1)
        .conf(&conf)
        .run();
    let result = r.assert_ok().clone();
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = result.clone();
    host.reference("bridge")
        .cmd("CHECK")
        .container(&c1)
        .conf(&check_conf)
        .run()
        .assert_ok();
    let addr = cni_result::addresses(&result)[0].clone();
    c1.ip(&["addr", "del", &addr, "dev", "eth0"]);
    let out = host
        .reference("bridge")
        .cmd("CHECK")
        .container(&c1)
        .conf(&check_conf)
        .run();
    assert!(!out.success(), "CHECK passed after tampering");
    assert!(
        out.stdout_json["code"].is_u64(),
        "not a CNI error: {}",
        out.stdout
    );

    host.delete_container(&c1);
    host.reference("bridge")
        .cmd("DEL")
        .container(&c1)
        .conf(&conf)
        .run()
        .assert_ok();
    host.reference("bridge")
        .cmd("DEL")
        .container(&c1)
        .conf(&conf)
        .run()
        .assert_ok();
}

#[test]
fn reference_bridge_masquerade_reaches_outside_only_with_ip_masq() {
    let host = HostNs::new("selftest");
    let outside = host.outside();
    for (masq, subnet) in [(true, "10.202.0.0/24"), (false, "10.203.0.0/24")] {
        let mut conf = network_conf::reference_bridge(&host, "1.0.0", subnet);
        conf["ipMasq"] = masq.into();
        conf["name"] = format!("masq{masq}").into();
        conf["bridge"] = format!("tt{}", masq as u8).into();
        let c = host.container(&format!("m{masq}"));
        host.reference("bridge")
            .cmd("ADD")
            .container(&c)
            .conf(&conf)
            .run()
            .assert_ok();
        assert_eq!(host.sysctl("net.ipv4.ip_forward"), "1");
        assert_eq!(c.ping_retry(outside.addr, 2), masq, "ipMasq={masq}");
    }
}

#[test]
fn harness_deletes_its_namespaces_on_panic() {
    let name = std::panic::catch_unwind(|| {
        let host = HostNs::new("selftest");
        let c = host.container("c1");
        let names = (host.name.clone(), c.name.clone());
        std::panic::panic_any(names);
    })
    .unwrap_err();
    let (host, c) = name.downcast_ref::<(String, String)>().unwrap().clone();
    for n in [host, c] {
        assert!(
            !std::path::Path::new("/run/netns").join(&n).exists(),
            "{n} left behind"
        );
    }
}

/// Children forked while an exchange runs hold copies of its sockets until they exec (a plugin call's
/// pre_exec makes std fork): back-to-back exchanges on one address must still bind and see EOF.
#[test]
fn back_to_back_exchanges_on_one_address_survive_children_forked_meanwhile() {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let host = HostNs::new("fdsel");
    let (a, b) = (host.container("a"), host.container("b"));
    a.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
    ]);
    a.ip(&["addr", "add", "10.201.0.1/24", "dev", "eth0"]);
    b.ip(&["addr", "add", "10.201.0.2/24", "dev", "eth0"]);
    a.ip(&["link", "set", "eth0", "up"]);
    b.ip(&["link", "set", "eth0", "up"]);

    let stop = Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut cmd = std::process::Command::new("true");
                    // SAFETY: usleep is async-signal-safe; it widens the fork-to-exec window a loaded
                    // machine opens by chance.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::usleep(20_000);
                            Ok(())
                        });
                    }
                    let _ = cmd.status();
                }
            })
        })
        .collect();
    let outcomes: Vec<Result<(), String>> = (0..20)
        .map(|_| tcp::exchange(&a, "10.201.0.1", 80, &b))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for spawner in spawners {
        spawner.join().unwrap();
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.is_ok(), "exchange {i}: {outcome:?}");
    }
}
