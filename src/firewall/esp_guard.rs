//! The input guard of an encrypted overlay port: VXLAN that did not come out of an IPsec state is
//! dropped before the VXLAN socket sees it, so cleartext injected into an encrypted network never
//! reaches its bridge.
//!
//! ```text
//! table inet tether {
//!     chain esp_in_4789 {
//!         type filter hook input priority -160; policy accept;
//!         meta l4proto udp th dport 4789 meta secpath missing drop   (nft 1.0.6 prints `meta ipsec missing`)
//!     }
//! }
//! ```
//!
//! One base chain per port, written whole in one transaction (add, flush, rule): idempotent, so racing
//! first ADDs of two networks each leave it right. Decrypted ESP (transport mode) passes input again
//! with its secpath set, so only cleartext meets the drop.

use std::io;

use super::netlink::ruleset::{
    BaseChain, Change, Expr, MetaKey, PayloadBase, Register, RulesetBatch, Verdict,
};
use super::netlink::socket::NfSocket;
use super::netlink::uapi::{NFPROTO_INET, NF_INET_LOCAL_IN};
use super::table::NAME as TABLE;
use super::FirewallError;

/// Before the filter priority (0) and before mangle (-150): nothing else of the host's input sees the
/// packet first and accepts it.
pub const ESP_GUARD_PRIORITY: i32 = -160;
const IPPROTO_UDP: u8 = 17;

/// The guard of one UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspGuard {
    pub port: u16,
}

impl EspGuard {
    pub fn chain(&self) -> String {
        format!("esp_in_{}", self.port)
    }

    /// Installs (or rewrites) the guard in the calling thread's namespace.
    pub fn install(&self) -> Result<(), FirewallError> {
        self.send(self.install_changes(), "installing the ESP input guard")
    }

    /// Removes the guard; one that is not there is fine.
    pub fn remove(&self) -> Result<(), FirewallError> {
        let chain = self.chain();
        // Adding first makes the delete succeed on a chain that is not there.
        let mut changes = self.install_changes();
        changes.push(Change::FlushChain(chain.clone()));
        changes.push(Change::DeleteChain(chain));
        self.send(changes, "removing the ESP input guard")
    }

    fn install_changes(&self) -> Vec<Change> {
        let chain = self.chain();
        vec![
            Change::AddTable,
            Change::AddBaseChain(BaseChain {
                name: chain.clone(),
                kind: "filter",
                hook: NF_INET_LOCAL_IN,
                priority: ESP_GUARD_PRIORITY,
            }),
            Change::FlushChain(chain.clone()),
            Change::AddRule {
                chain,
                exprs: self.rule(),
            },
        ]
    }

    /// `meta l4proto udp th dport PORT meta secpath missing drop`.
    fn rule(&self) -> Vec<Expr> {
        vec![
            Expr::Meta(MetaKey::L4Proto, Register::R1),
            Expr::Equals(Register::R1, vec![IPPROTO_UDP]),
            Expr::Payload {
                base: PayloadBase::Transport,
                offset: 2,
                len: 2,
                into: Register::R1,
            },
            Expr::Equals(Register::R1, self.port.to_be_bytes().to_vec()),
            Expr::Meta(MetaKey::SecPath, Register::R1),
            Expr::Equals(Register::R1, vec![0]),
            Expr::Verdict(Verdict::Drop),
        ]
    }

    fn send(&self, changes: Vec<Change>, op: &'static str) -> Result<(), FirewallError> {
        let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
        let batch = RulesetBatch {
            family: NFPROTO_INET,
            table: TABLE.into(),
            changes,
        };
        let source = match batch.apply(&socket) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(refusal)) => io::Error::from_raw_os_error(refusal.errno),
            Err(source) => source,
        };
        Err(FirewallError::EspGuard {
            op,
            chain: self.chain(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_drops_udp_to_its_port_without_a_secpath_only() {
        let g = EspGuard { port: 4790 };
        let rule = g.rule();
        assert_eq!(
            rule[4..6],
            [
                Expr::Meta(MetaKey::SecPath, Register::R1),
                Expr::Equals(Register::R1, vec![0])
            ]
        );
        assert_eq!(rule[3], Expr::Equals(Register::R1, vec![0x12, 0xb6]));
        assert_eq!(rule.last(), Some(&Expr::Verdict(Verdict::Drop)));
        assert_eq!(g.chain(), "esp_in_4790");
    }

    #[test]
    fn installing_rewrites_the_whole_chain_in_one_batch() {
        let changes = EspGuard { port: 4789 }.install_changes();
        assert!(
            matches!(&changes[1], Change::AddBaseChain(c) if c.hook == NF_INET_LOCAL_IN && c.priority == -160)
        );
        assert_eq!(changes[2], Change::FlushChain("esp_in_4789".into()));
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, Change::AddRule { .. }))
                .count(),
            1
        );
    }
}
