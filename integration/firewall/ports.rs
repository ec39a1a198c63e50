//! Published-port elements: uniqueness in the kernel, overlap, removal of only our own.

use crate::harness::HostNs;
use tether::firewall::{Firewall, FirewallError, PortMapping, PortmapOptions, Protocol};

fn mapping(host_ip: Option<&str>, host_port: u16, container: &str) -> PortMapping {
    PortMapping {
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port,
        container_ip: container.parse().unwrap(),
        container_port: 80,
        protocol: Protocol::Tcp,
    }
}

#[test]
fn second_container_publishing_the_same_host_port_is_refused_whole() {
    let ns = HostNs::new("fw");
    let first = [
        mapping(None, 8080, "10.0.0.2"),
        mapping(None, 8080, "fd00::2"),
    ];
    let second = [
        mapping(None, 9090, "10.0.0.3"),
        mapping(None, 8080, "10.0.0.3"),
    ];
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        let err = fw.add_ports(&first).unwrap_err();
        assert!(matches!(err, FirewallError::PortmapNotInstalled), "{err}");
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        fw.add_ports(&first).unwrap();
        assert!(fw.ports_present(&first).unwrap());

        let err = fw.add_ports(&second).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FirewallError::PortInUse { .. }), "{text}");
        assert!(
            text.contains("*:8080/tcp") && text.contains("10.0.0.2:80"),
            "{text}"
        );
        // Nothing of the refused batch stays, not even its free port 9090.
        assert!(!fw.ports_present(&second[..1]).unwrap());

        // The same port for UDP is another key.
        let udp = [PortMapping {
            protocol: Protocol::Udp,
            ..second[1]
        }];
        fw.add_ports(&udp).unwrap();

        // DEL of the refused container leaves the holder's mapping alone.
        fw.remove_ports(&second).unwrap();
        assert!(fw.ports_present(&first).unwrap());

        fw.remove_ports(&first).unwrap();
        fw.remove_ports(&first).unwrap();
        assert!(!fw.ports_present(&first[..1]).unwrap());
        assert!(!fw.ports_present(&first[1..]).unwrap());
        fw.add_ports(&second).unwrap();
    });
    let table = ns.nft_ok(&["list", "map", "inet", "tether", "ports4_any"]);
    assert!(
        table.contains("tcp . 8080 counter packets 0 bytes 0 : 10.0.0.3 . 80"),
        "{table}"
    );
    assert!(
        table.contains("udp . 8080 counter packets 0 bytes 0 : 10.0.0.3 . 80"),
        "{table}"
    );
    assert!(!table.contains("10.0.0.2"), "{table}");
}

#[test]
fn a_port_on_all_addresses_and_on_one_address_cannot_coexist() {
    let ns = HostNs::new("fw");
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        fw.add_ports(&[mapping(None, 8080, "10.0.0.2")]).unwrap();
        let err = fw
            .add_ports(&[mapping(Some("127.0.0.1"), 8080, "10.0.0.3")])
            .unwrap_err();
        assert!(matches!(err, FirewallError::PortInUse { .. }), "{err}");
        assert!(err.to_string().contains("on all host addresses"), "{err}");

        fw.add_ports(&[mapping(Some("127.0.0.1"), 8081, "10.0.0.3")])
            .unwrap();
        // Another address for the same port is fine; all addresses is not.
        fw.add_ports(&[mapping(Some("192.0.2.1"), 8081, "10.0.0.4")])
            .unwrap();
        let err = fw
            .add_ports(&[mapping(None, 8081, "10.0.0.2")])
            .unwrap_err();
        assert!(matches!(err, FirewallError::PortInUse { .. }), "{err}");
        assert!(!fw
            .ports_present(&[mapping(None, 8081, "10.0.0.2")])
            .unwrap());
        assert!(fw
            .ports_present(&[mapping(Some("127.0.0.1"), 8081, "10.0.0.3")])
            .unwrap());
    });
}

#[test]
fn changing_portmap_options_rewrites_only_the_masquerade_rules() {
    let ns = HostNs::new("fw");
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.ensure_portmap(&PortmapOptions::default()).unwrap();
        fw.add_ports(&[mapping(None, 8080, "10.0.0.2")]).unwrap();
        fw.ensure_portmap(&PortmapOptions {
            snat: true,
            masq_all: true,
        })
        .unwrap();
        assert!(fw
            .ports_present(&[mapping(None, 8080, "10.0.0.2")])
            .unwrap());
    });
    let masq = ns.nft_ok(&["list", "chain", "inet", "tether", "ports_masq"]);
    assert!(masq.contains("ct status dnat masquerade"), "{masq}");
    assert!(masq.contains("masqall=1"), "{masq}");
    let post = ns.nft_ok(&["list", "chain", "inet", "tether", "ports_postrouting"]);
    assert_eq!(post.matches("jump ports_masq").count(), 1, "{post}");
}
