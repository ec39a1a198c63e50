//! A host firewall as Docker leaves it (`ip filter FORWARD` at policy DROP, jumping to DOCKER-USER first),
//! and the two rules tether's README and warning give for it. Made inside the test's own host namespace.

use super::HostNs;

/// Docker's leftovers: FORWARD at policy DROP, DOCKER-USER consulted first.
pub fn leave_forward_drop(host: &HostNs) {
    host.exec_ok(&["iptables", "-N", "DOCKER-USER"]);
    host.exec_ok(&["iptables", "-I", "FORWARD", "-j", "DOCKER-USER"]);
    host.exec_ok(&["iptables", "-P", "FORWARD", "DROP"]);
}

/// The documented pair: accept traffic from and to tether's device group (7447) in DOCKER-USER.
pub fn accept_tether_device_group(host: &HostNs) {
    for dir in ["--src-group", "--dst-group"] {
        host.exec_ok(&[
            "iptables",
            "-I",
            "DOCKER-USER",
            "-m",
            "devgroup",
            dir,
            "7447",
            "-j",
            "ACCEPT",
        ]);
    }
}
