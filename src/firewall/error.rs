use std::io;

/// Everything that can go wrong while programming the `inet tether` table.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("network name {name:?} is not usable for firewall rules: {reason}")]
    InvalidNetworkName { name: String, reason: &'static str },

    #[error(
        "bridge name {bridge:?} of network {network:?} is not a valid interface name: {reason}"
    )]
    InvalidBridgeName {
        network: String,
        bridge: String,
        reason: &'static str,
    },

    #[error(
        "network {network:?} and network {other:?} map to the same firewall id {id}; rename one of them"
    )]
    NetworkIdCollision {
        network: String,
        other: String,
        id: String,
    },

    #[error(
        "nf_tables refused `{statement}` while {action} the rules of {subject}: {source}; \
         nothing of that change was applied"
    )]
    RulesetRefused {
        /// The network, or what else the rules are for ("published ports").
        subject: String,
        action: &'static str,
        /// The refused statement, as nft would print it.
        statement: String,
        #[source]
        source: io::Error,
    },

    #[error("could not open a NETLINK_NETFILTER socket: {source}; is nf_tables available in this kernel?")]
    SocketOpen {
        #[source]
        source: io::Error,
    },

    #[error("netlink {op} on table inet tether failed: {source}")]
    SocketIo {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{op} on set {set} of table inet tether failed: {source}{hint}")]
    Kernel {
        op: &'static str,
        set: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },

    #[error(
        "network {network:?} has no firewall rules in table inet tether; call ensure_network first"
    )]
    NetworkNotInstalled { network: String },

    #[error("malformed netlink reply from nf_tables during {op}: {detail}")]
    MalformedReply { op: &'static str, detail: String },

    #[error("interface name {name:?} is not valid: it must be 1 to 15 bytes without '/'")]
    InvalidInterfaceName { name: String },

    #[error("port mapping {mapping} is not valid: {reason}")]
    InvalidPortMapping {
        mapping: String,
        reason: &'static str,
    },

    #[error(
        "host port {host} is already published{existing}; \
         choose another host port or remove the container that holds it"
    )]
    PortInUse {
        /// `hostIP:port/proto`, `*:port/proto` for any host address.
        host: String,
        /// Where it goes now, when known (" to 10.88.0.5:80").
        existing: String,
    },

    #[error("{op} (table ip tether of the container's namespace) failed: {source}")]
    ResolverRedirect {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{op} (chain {chain} of table inet tether) failed: {source}")]
    EspGuard {
        op: &'static str,
        chain: String,
        #[source]
        source: io::Error,
    },

    #[error("{op} (table inet tether_svc of a container's namespace) failed: {source}")]
    ServiceTable {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("published ports are not set up in table inet tether; call ensure_portmap first")]
    PortmapNotInstalled,
}
