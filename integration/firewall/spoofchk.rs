//! macspoofchk with real frames: a container that changes its MAC is cut off.

use super::{reaches, shell};
use crate::harness::HostNs;
use tether::firewall::Firewall;

const MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x14, 0x00, 0x02];

#[test]
fn a_container_sending_from_another_mac_is_dropped() {
    let host = HostNs::new("fw");
    let ctr = host.container("ctr");
    let (h, c) = (&host.name, &ctr.name);
    assert!(shell(&format!(
        "set -e
         ip -n {h} link add tbs0 type bridge
         ip -n {h} addr add 10.20.0.1/24 dev tbs0
         ip -n {h} link set tbs0 up
         ip -n {h} link add tvs0 type veth peer name eth0 netns {c}
         ip -n {h} link set tvs0 master tbs0 up
         ip -n {c} link set eth0 address 02:42:0a:14:00:02
         ip -n {c} addr add 10.20.0.2/24 dev eth0
         ip -n {c} link set eth0 up"
    )));
    let ping = format!("ip netns exec {c} ping -c1 -W1 10.20.0.1 >/dev/null 2>&1");
    let set_mac = |mac: &str| {
        assert!(shell(&format!(
            "ip -n {c} link set eth0 address {mac} && ip -n {h} neigh flush dev tbs0"
        )))
    };
    assert!(reaches(&ping), "ping must work before macspoofchk");

    host.run_inside(|| {
        let fw = Firewall::open().unwrap();
        assert!(!fw.spoofchk_present("tvs0", MAC).unwrap());
        fw.add_spoofchk("tvs0", MAC).unwrap();
        // Twice is fine (a retried ADD).
        fw.add_spoofchk("tvs0", MAC).unwrap();
        assert!(fw.spoofchk_present("tvs0", MAC).unwrap());
        assert!(!fw.spoofchk_present("tvs0", [2, 0, 0, 0, 0, 9]).unwrap());
    });
    assert!(
        reaches(&ping),
        "ping from the container's own MAC must pass"
    );

    set_mac("02:42:0a:14:00:99");
    assert!(!shell(&ping), "ping from a spoofed MAC must be dropped");
    set_mac("02:42:0a:14:00:02");
    assert!(reaches(&ping), "ping must work again with the real MAC");

    host.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.remove_spoofchk("tvs0", MAC).unwrap();
        fw.remove_spoofchk("tvs0", MAC).unwrap();
        assert!(!fw.spoofchk_present("tvs0", MAC).unwrap());
    });
    set_mac("02:42:0a:14:00:99");
    assert!(reaches(&ping), "without macspoofchk any MAC passes");
}

#[test]
fn removing_spoofchk_without_the_table_is_fine() {
    let ns = HostNs::new("fw");
    ns.run_inside(|| {
        let fw = Firewall::open().unwrap();
        fw.remove_spoofchk("tvnone", MAC).unwrap();
        assert!(!fw.spoofchk_present("tvnone", MAC).unwrap());
    });
}
