//! Other tables whose forward hook drops by default (Docker and iptables leave
//! `ip filter FORWARD` at policy DROP). An accept in `inet tether` only ends tether's own
//! chain: every other base chain at the hook still runs, and a drop anywhere is final. tether
//! may never edit another table, so it makes its traffic easy to let through there: every bridge
//! it creates is in device group [`TETHER_BRIDGE_GROUP`], and one pair of rules on that group in the
//! other table admits all tether networks, present and future. tether's own drops (isolation, ingress
//! that was not published) still hold, since a drop in `inet tether` is final too. This module finds
//! such chains and says exactly which rules to add.

use super::error::FirewallError;
use super::netlink::requests;
use super::netlink::uapi::{NFPROTO_UNSPEC, NF_DROP, NF_INET_FORWARD};
use super::netlink::{replies, uapi};
use super::table;
use super::Firewall;
use crate::link::TETHER_BRIDGE_GROUP;

/// A base chain of someone else's table that drops forwarded traffic by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignForwardDrop {
    /// `ip`, `ip6`, `inet`...
    pub family: &'static str,
    pub table: String,
    pub chain: String,
}

impl ForeignForwardDrop {
    /// The rules that let tether's bridges through this chain, as a person would type them.
    pub fn remedy(&self) -> String {
        let g = TETHER_BRIDGE_GROUP;
        let nft = format!(
            "nft insert rule {f} {t} {c} meta iifgroup {g} accept; \
             nft insert rule {f} {t} {c} meta oifgroup {g} accept",
            f = self.family,
            t = self.table,
            c = self.chain
        );
        if self.family == "inet" {
            return nft;
        }
        let iptables = if self.family == "ip6" {
            "ip6tables"
        } else {
            "iptables"
        };
        format!(
            "{nft} (or, where iptables manages it, as with Docker: \
             {iptables} -I DOCKER-USER -m devgroup --src-group {g} -j ACCEPT; \
             {iptables} -I DOCKER-USER -m devgroup --dst-group {g} -j ACCEPT)"
        )
    }
}

impl std::fmt::Display for ForeignForwardDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {} of table {} {} has policy drop at the forward hook, so traffic of tether's \
             containers is dropped there; let tether's bridges (device group {}) through it: {}",
            self.chain,
            self.family,
            self.table,
            TETHER_BRIDGE_GROUP,
            self.remedy()
        )
    }
}

fn family_name(nfproto: u8) -> &'static str {
    match nfproto {
        uapi::NFPROTO_INET => "inet",
        2 => "ip",
        10 => "ip6",
        uapi::NFPROTO_BRIDGE => "bridge",
        _ => "other",
    }
}

impl Firewall {
    /// Forward base chains of other tables with policy drop (iptables-nft's
    /// `ip filter FORWARD` shows up here too). For a warning at network setup; tether
    /// changes none of them.
    pub fn foreign_forward_drops(&self) -> Result<Vec<ForeignForwardDrop>, FirewallError> {
        let socket = self.socket();
        let seq = socket.reserve_seqs(1);
        let answer = socket
            .dump(&requests::dump_chains_of(NFPROTO_UNSPEC, seq), seq)
            .map_err(|source| FirewallError::SocketIo {
                op: "listing chains",
                source,
            })?;
        let payloads = answer.unwrap_or_default();
        Ok(payloads
            .iter()
            .map(|payload| replies::chain(payload))
            .filter(|chain| {
                matches!(family_name(chain.family), "ip" | "ip6" | "inet")
                    && chain.hook == Some(NF_INET_FORWARD)
                    && chain.policy == Some(NF_DROP)
                    && !(chain.table == table::NAME && chain.family == uapi::NFPROTO_INET)
            })
            .map(|chain| ForeignForwardDrop {
                family: family_name(chain.family),
                table: chain.table,
                chain: chain.name,
            })
            .collect())
    }
}
