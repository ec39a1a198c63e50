//! The redirect inside a container's namespace that keeps port 53 the container's own (Docker's
//! arrangement): tetherd's resolver sockets sit on 127.0.0.11 at private ports, and table `ip tether` of
//! the container's namespace sends what the container's processes address to 127.0.0.11:53 there.
//!
//! ```text
//! table ip tether {
//!     chain resolver {
//!         type filter hook output priority raw; policy accept;
//!         ip daddr 127.0.0.11 udp dport 53 notrack udp dport set UDP_PORT
//!         ip saddr 127.0.0.11 udp sport UDP_PORT notrack udp sport set 53
//!         ip daddr 127.0.0.11 tcp dport 53 notrack tcp dport set TCP_PORT
//!         ip saddr 127.0.0.11 tcp sport TCP_PORT notrack tcp sport set 53
//!         ip saddr 127.0.0.11 icmp type destination-unreachable icmp code port-unreachable
//!             (the quoted header: IPv4 without options, UDP to 127.0.0.11:UDP_PORT) quoted dport set 53
//!     }
//! }
//! ```
//!
//! Stateless: both directions are rewritten on the way out (every packet of the container's own namespace
//! leaves through `output`, replies included, as they travel over `lo`), so conntrack never sees a query. A
//! NAT redirect cost two conntrack lookups and a NAT rewrite per packet (about 5 % of the resolver's CPU per
//! query), turned conntrack on in every container, and gave each query's source port an entry in the
//! conntrack hash table all namespaces share. The ICMP rule keeps a query to a closed resolver port failing
//! at once: the error quotes the query as it travelled, and the client's socket only takes an error about
//! port 53.
//!
//! Only the output hook and only 127.0.0.11: traffic to the container's own addresses on port 53 (from
//! neighbours, through published ports) never meets it. A process of the container that talks to the
//! private ports themselves gets answers from port 53, which its socket drops. The table is in the
//! container's namespace, not the host's, and goes with it.

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
/// NF_IP_PRI_RAW: before conntrack (NF_IP_PRI_CONNTRACK, -200), so `notrack` holds.
const RAW: i32 = -300;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
/// ICMP destination unreachable, code port unreachable.
const ICMP_PORT_UNREACHABLE: [u8; 2] = [3, 3];
/// Where the quoted IPv4 header starts in an ICMP error (after type, code, checksum and 4 unused bytes).
const QUOTED: u32 = 8;
/// The internet checksum's offset in a UDP, a TCP and an ICMP header.
const UDP_CHECKSUM: u32 = 6;
const TCP_CHECKSUM: u32 = 16;
const ICMP_CHECKSUM: u32 = 2;
/// Offsets in an IPv4 header (source, destination address) and a UDP or TCP header (ports).
const IP_SOURCE: u32 = 12;
const IP_DESTINATION: u32 = 16;
const SOURCE_PORT: u32 = 0;
const DESTINATION_PORT: u32 = 2;

/// Where 127.0.0.11:53 is sent: the resolver's own ports on the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverRedirect {
    pub address: Ipv4Addr,
    pub udp_port: u16,
    pub tcp_port: u16,
}

impl ResolverRedirect {
    /// Installs the redirect in the calling thread's namespace, replacing any earlier one (a restarted
    /// tetherd's sockets have new ports; an older tetherd's was a NAT chain) in one transaction: no query
    /// meets a half-made table.
    pub fn install(&self) -> Result<(), FirewallError> {
        let table = self.table();
        // A new namespace has no table: create it, deleting nothing. A transaction that deletes leaves
        // destroy work, which the release of its socket waits out (an RCU grace period) holding the
        // namespace's nf_tables lock, so a DEL right after the ADD would wait behind it. Only a table
        // that is there already (a restarted tetherd) is replaced: add-then-delete, so the delete cannot
        // fail.
        let create = [vec![Change::CreateTable], table.clone()].concat();
        let replace = [
            vec![Change::AddTable, Change::DeleteTable, Change::AddTable],
            table,
        ]
        .concat();
        let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
        let answer = apply(
            &socket,
            &[&create, &replace],
            "installing the resolver redirect",
        );
        // The last release of a socket whose transaction deleted something waits for an RCU grace period
        // (~10 ms); the caller (tetherd, answering an ADD) need not. Not a fresh thread per call: it would be
        // born in the container's namespace (this runs on tetherd's namespace thread) and count as in it.
        socket.close_in_background();
        answer
    }

    /// Creates the redirect in the calling thread's namespace unless a table is there already (tetherd
    /// serves the namespace through another attachment, or an earlier tetherd left one): then it changes
    /// nothing and says `false`. Returns the socket it used, for the caller to hand to tetherd with the
    /// sockets this redirect points at: its release must not be the last (see `Firewall::socket_fd`).
    pub fn create(&self) -> Result<(bool, NfSocket), FirewallError> {
        let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
        let create = [vec![Change::CreateTable], self.table()].concat();
        let created = match apply(&socket, &[&create], "creating the resolver redirect") {
            Ok(()) => true,
            Err(FirewallError::ResolverRedirect { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                false
            }
            Err(e) => {
                socket.close_in_background();
                return Err(e);
            }
        };
        Ok((created, socket))
    }

    /// The chain and its rules (the table itself is the caller's choice: create or replace).
    fn table(&self) -> Vec<Change> {
        let rules = [
            (IPPROTO_UDP, self.udp_port, UDP_CHECKSUM),
            (IPPROTO_TCP, self.tcp_port, TCP_CHECKSUM),
        ]
        .into_iter()
        .flat_map(|(proto, port, checksum_at)| {
            [
                self.rewrite(
                    proto,
                    IP_DESTINATION,
                    DESTINATION_PORT,
                    DNS_PORT,
                    port,
                    checksum_at,
                ),
                self.rewrite(proto, IP_SOURCE, SOURCE_PORT, port, DNS_PORT, checksum_at),
            ]
        })
        .chain([self.quoted_query_rewrite()]);
        let mut table = vec![Change::AddBaseChain(BaseChain {
            name: CHAIN.into(),
            kind: "filter",
            hook: NF_INET_LOCAL_OUT,
            priority: RAW,
        })];
        table.extend(rules.map(|exprs| Change::AddRule {
            chain: CHAIN.into(),
            exprs,
        }));
        table
    }

    /// Removes the redirect from the calling thread's namespace; one that is not there is fine.
    pub fn remove() -> Result<(), FirewallError> {
        send(
            &[&[Change::AddTable, Change::DeleteTable]],
            "removing the resolver redirect",
        )
    }

    /// `ip <saddr|daddr> ADDRESS meta l4proto PROTO`, the address at `address_at` of the IPv4 header.
    fn address_and_protocol(&self, address_at: u32, proto: u8) -> Vec<Expr> {
        let mut exprs = header_is(
            PayloadBase::Network,
            address_at,
            self.address.octets().to_vec(),
        )
        .to_vec();
        exprs.extend([
            Expr::Meta(MetaKey::L4Proto, Register::R1),
            Expr::Equals(Register::R1, vec![proto]),
        ]);
        exprs
    }

    /// `ip <saddr|daddr> ADDRESS <proto> <sport|dport> FROM notrack <proto> <sport|dport> set TO`.
    fn rewrite(
        &self,
        proto: u8,
        address_at: u32,
        port_at: u32,
        from: u16,
        to: u16,
        checksum_at: u32,
    ) -> Vec<Expr> {
        let mut exprs = self.address_and_protocol(address_at, proto);
        exprs.extend(header_is(
            PayloadBase::Transport,
            port_at,
            from.to_be_bytes().to_vec(),
        ));
        exprs.push(Expr::Notrack);
        exprs.extend(port_set(port_at, to, checksum_at));
        exprs
    }

    /// The port-unreachable answer to a query that found no resolver socket quotes the query with the
    /// private port; the quote's port goes back to 53 (and the ICMP checksum with it).
    fn quoted_query_rewrite(&self) -> Vec<Expr> {
        let quoted_port = QUOTED + 20 + DESTINATION_PORT;
        let mut exprs = self.address_and_protocol(IP_SOURCE, IPPROTO_ICMP);
        for (offset, value) in [
            (0, ICMP_PORT_UNREACHABLE.to_vec()),
            // Version 4, header length 5 words: the quoted UDP header sits right after 20 bytes.
            (QUOTED, vec![0x45]),
            (QUOTED + 9, vec![IPPROTO_UDP]),
            (QUOTED + IP_DESTINATION, self.address.octets().to_vec()),
            (quoted_port, self.udp_port.to_be_bytes().to_vec()),
        ] {
            exprs.extend(header_is(PayloadBase::Transport, offset, value));
        }
        exprs.extend(port_set(quoted_port, DNS_PORT, ICMP_CHECKSUM));
        exprs
    }
}

/// The bytes of a header at `offset` are `value`, else the rule ends.
fn header_is(base: PayloadBase, offset: u32, value: Vec<u8>) -> [Expr; 2] {
    [
        Expr::Payload {
            base,
            offset,
            len: value.len() as u32,
            into: Register::R1,
        },
        Expr::Equals(Register::R1, value),
    ]
}

/// Writes `port` at `offset` of the transport header, updating the checksum at `checksum_at`.
fn port_set(offset: u32, port: u16, checksum_at: u32) -> [Expr; 2] {
    [
        Expr::Immediate(Register::R1, port.to_be_bytes().to_vec()),
        Expr::SetPayload {
            base: PayloadBase::Transport,
            offset,
            len: 2,
            from: Register::R1,
            checksum_at: Some(checksum_at),
        },
    ]
}

/// Applies the first transaction; one refused because something is already there (EEXIST) gives way to
/// the next, on the same socket.
fn send(tries: &[&[Change]], op: &'static str) -> Result<(), FirewallError> {
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let answer = apply(&socket, tries, op);
    // See `install`.
    socket.close_in_background();
    answer
}

/// Sends each batch of `tries` in turn while the previous one was refused with EEXIST.
fn apply(socket: &NfSocket, tries: &[&[Change]], op: &'static str) -> Result<(), FirewallError> {
    let mut answer = Ok(Ok(()));
    for changes in tries {
        let batch = RulesetBatch {
            family: NFPROTO_IPV4,
            table: TABLE.into(),
            changes: changes.to_vec(),
        };
        answer = batch.apply(socket);
        if !matches!(&answer, Ok(Err(refusal)) if refusal.errno == libc::EEXIST) {
            break;
        }
    }
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

    fn redirect() -> ResolverRedirect {
        ResolverRedirect {
            address: Ipv4Addr::new(127, 0, 0, 11),
            udp_port: 40000,
            tcp_port: 40001,
        }
    }

    fn matched(rule: &[Expr]) -> Vec<&Vec<u8>> {
        rule.iter()
            .filter_map(|e| match e {
                Expr::Equals(_, v) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_query_to_port_53_goes_untracked_to_the_private_port_and_its_answer_comes_back_from_53() {
        let r = redirect();
        let query = r.rewrite(
            IPPROTO_TCP,
            IP_DESTINATION,
            DESTINATION_PORT,
            53,
            40001,
            TCP_CHECKSUM,
        );
        assert_eq!(
            matched(&query),
            vec![&vec![127, 0, 0, 11], &vec![6], &vec![0, 53]]
        );
        let answer = r.rewrite(IPPROTO_TCP, IP_SOURCE, SOURCE_PORT, 40001, 53, TCP_CHECKSUM);
        assert_eq!(
            matched(&answer),
            vec![
                &vec![127, 0, 0, 11],
                &vec![6],
                &40001u16.to_be_bytes().to_vec()
            ]
        );
        for (rule, port_at, to) in [(&query, 2, 40001u16), (&answer, 0, 53)] {
            let n = rule.len();
            assert_eq!(rule[n - 3], Expr::Notrack);
            assert_eq!(
                rule[n - 2],
                Expr::Immediate(Register::R1, to.to_be_bytes().to_vec())
            );
            assert_eq!(
                rule[n - 1],
                Expr::SetPayload {
                    base: PayloadBase::Transport,
                    offset: port_at,
                    len: 2,
                    from: Register::R1,
                    checksum_at: Some(16),
                }
            );
        }
    }

    #[test]
    fn only_a_port_unreachable_quoting_a_udp_query_to_the_private_port_is_rewritten() {
        let rule = redirect().quoted_query_rewrite();
        assert_eq!(
            matched(&rule),
            vec![
                &vec![127, 0, 0, 11],
                &vec![1],
                &vec![3, 3],
                &vec![0x45],
                &vec![17],
                &vec![127, 0, 0, 11],
                &40000u16.to_be_bytes().to_vec(),
            ]
        );
        // The quoted destination port: ICMP header 8 bytes, quoted IPv4 header 20, then the UDP port at 2.
        assert!(matches!(
            rule.last(),
            Some(Expr::SetPayload {
                offset: 30,
                len: 2,
                checksum_at: Some(2),
                ..
            })
        ));
    }
}
