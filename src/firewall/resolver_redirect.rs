//! The redirect inside a container's namespace that keeps port 53 the container's own (Docker's
//! arrangement): tetherd's resolver sockets sit on 127.0.0.11 at private ports, and table `ip tether` of
//! the container's namespace sends what the container's processes address to 127.0.0.11:53 there.
//!
//! ```text
//! table ip tether {
//!     chain resolver {
//!         type nat hook output priority dstnat; policy accept;
//!         ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:UDP_PORT
//!         ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:TCP_PORT
//!     }
//! }
//! ```
//!
//! Only the output hook and only destination 127.0.0.11: traffic to the container's own addresses on port
//! 53 (from neighbours, through published ports) never meets it. Conntrack rewrites the replies back to
//! 127.0.0.11:53. The table is in the container's namespace, not the host's, and goes with it.

use std::io;
use std::net::Ipv4Addr;

use super::netlink::ruleset::{
    BaseChain, Change, Expr, MetaKey, PayloadBase, Register, RulesetBatch,
};
use super::netlink::socket::NfSocket;
use super::netlink::uapi::{NFPROTO_IPV4, NF_INET_LOCAL_OUT};
use super::FirewallError;

/// The table, in the container's namespace (the host's tether table is `inet tether`).
pub const TABLE: &str = "tether";
pub const CHAIN: &str = "resolver";
/// NF_IP_PRI_NAT_DST: `priority dstnat`.
const DSTNAT: i32 = -100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Where 127.0.0.11:53 is sent: the resolver's own ports on the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverRedirect {
    pub address: Ipv4Addr,
    pub udp_port: u16,
    pub tcp_port: u16,
}

impl ResolverRedirect {
    /// Installs the redirect in the calling thread's namespace, replacing any earlier one (a restarted
    /// tetherd's sockets have new ports) in one transaction: no query meets a half-made table.
    pub fn install(&self) -> Result<(), FirewallError> {
        let mut changes = vec![
            // Add-then-delete: the delete cannot fail on a table that is not there yet.
            Change::AddTable,
            Change::DeleteTable,
            Change::AddTable,
            Change::AddBaseChain(BaseChain {
                name: CHAIN.into(),
                kind: "nat",
                hook: NF_INET_LOCAL_OUT,
                priority: DSTNAT,
            }),
        ];
        for (proto, port) in [(IPPROTO_UDP, self.udp_port), (IPPROTO_TCP, self.tcp_port)] {
            changes.push(Change::AddRule {
                chain: CHAIN.into(),
                exprs: self.rule(proto, port),
            });
        }
        send(&changes, "installing the resolver redirect")
    }

    /// Removes the redirect from the calling thread's namespace; one that is not there is fine.
    pub fn remove() -> Result<(), FirewallError> {
        send(
            &[Change::AddTable, Change::DeleteTable],
            "removing the resolver redirect",
        )
    }

    /// `ip daddr ADDRESS <proto> dport 53 dnat to ADDRESS:port`.
    fn rule(&self, proto: u8, port: u16) -> Vec<Expr> {
        let addr = self.address.octets().to_vec();
        vec![
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                into: Register::R1,
            },
            Expr::Equals(Register::R1, addr.clone()),
            Expr::Meta(MetaKey::L4Proto, Register::R1),
            Expr::Equals(Register::R1, vec![proto]),
            // The destination port sits at offset 2 of both the UDP and the TCP header.
            Expr::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                into: Register::R1,
            },
            Expr::Equals(Register::R1, 53u16.to_be_bytes().to_vec()),
            Expr::Immediate(Register::R1, addr),
            Expr::Immediate(Register::R2, port.to_be_bytes().to_vec()),
            Expr::Dnat {
                family: NFPROTO_IPV4,
                addr: Register::R1,
                port: Register::R2,
            },
        ]
    }
}

fn send(changes: &[Change], op: &'static str) -> Result<(), FirewallError> {
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let batch = RulesetBatch {
        family: NFPROTO_IPV4,
        table: TABLE.into(),
        changes: changes.to_vec(),
    };
    let answer = batch.apply(&socket);
    // The last release of a socket whose transaction deleted something waits for an RCU grace period
    // (~10 ms); the caller (tetherd, answering an ADD) need not. Not a fresh thread per call: it would be
    // born in the container's namespace (this runs on tetherd's namespace thread) and count as in it.
    socket.close_in_background();
    let source = match answer {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(refusal)) => io::Error::from_raw_os_error(refusal.errno),
        Err(source) => source,
    };
    Err(FirewallError::ResolverRedirect { op, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_destination_127_0_0_11_port_53_of_one_protocol_is_rewritten() {
        let r = ResolverRedirect {
            address: Ipv4Addr::new(127, 0, 0, 11),
            udp_port: 40000,
            tcp_port: 40001,
        };
        let rule = r.rule(IPPROTO_TCP, r.tcp_port);
        let matches: Vec<&Vec<u8>> = rule
            .iter()
            .filter_map(|e| match e {
                Expr::Equals(_, v) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(matches, vec![&vec![127, 0, 0, 11], &vec![6], &vec![0, 53]]);
        assert_eq!(
            rule[rule.len() - 2],
            Expr::Immediate(Register::R2, 40001u16.to_be_bytes().to_vec())
        );
        assert!(matches!(rule.last(), Some(Expr::Dnat { .. })));
    }
}
