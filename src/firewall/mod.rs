//! nftables for tether: table `inet tether` (docs/design.md §3), plus `bridge tether` for
//! macspoofchk (only the bridge family sees frames crossing a bridge).
//!
//! Layout of `inet tether`:
//! - base chains `forward` (filter, policy accept: traffic that is not ours keeps the host's
//!   verdict) and `postrouting` (srcnat), which only dispatch through verdict maps:
//!   `oifname vmap @fwd_out` (ingress first, so a network decides what enters it),
//!   `iifname vmap @fwd_in` (bridge name -> network forward chain),
//!   `iifname vmap @nat_in` (bridge name -> network NAT chain; one element per network, so a container's
//!   ADD adds no jump), then `ip saddr vmap @nat4`, `ip6 saddr vmap @nat6` (container address -> network
//!   NAT chain: what tethers before `nat_in` added per container, still removed by DEL);
//! - per network `<id>_fwd` (isolation: replies, published and same-network traffic in,
//!   the rest dropped; no direct path to other tether bridges), `<id>_nat` and the container
//!   address sets `<id>_c4`, `<id>_c6`; the bridge is in `tether_bridges` and `hairpin_ifs`;
//! - published ports (`published_ports`): maps `ports{4,6}_{any,bound}`, chains
//!   `ports_dnat`, `ports_prerouting`, `ports_output`, `ports_postrouting`, `ports_masq`.
//!
//! Inside each container namespace tetherd serves, table `ip tether` redirects 127.0.0.11:53 to the
//! resolver's private ports (`resolver_redirect`).
//!
//! Everything goes over netlink, in one transaction per call: per-network setup and teardown
//! (the statements `render` describes), and the per-container path (addresses, published
//! ports, macspoofchk), which only adds or removes set and map elements. No `nft` process.
//! A container's address and published-port elements each carry their own `counter` expression, added
//! with the element (the sets need no declaration for it, so tables made by an older tether keep
//! working); `element_counters` reads them back for `tether inspect`. nft lists such elements but cannot
//! load that listing back (`nft -f` wants the set declared with `counter`).

mod balancing;
pub mod conntrack;
mod element_counters;
mod error;
mod esp_guard;
mod forward_policy;
pub mod mesh_ports;
pub mod netlink;
mod network_id;
mod network_spec;
mod port_mapping;
mod published_ports;
mod render;
mod resolver_redirect;
pub mod service_balance;
mod spoofchk;
mod table;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

pub use crate::transport::Protocol;
pub use element_counters::{Counter, ElementState};
pub use error::FirewallError;
pub use esp_guard::{EspGuard, ESP_GUARD_PRIORITY};
pub use forward_policy::ForeignForwardDrop;
pub use network_id::NetworkId;
pub use port_mapping::{PortMapping, PortmapOptions};
pub use published_ports::route_localnet_sysctl;
pub use resolver_redirect::ResolverRedirect;

use netlink::replies;
use netlink::requests::{self, ElementChange, ElementOp, SetElement};
use netlink::socket::NfSocket;
use network_spec::{validate_network_name, InstalledNetwork, NetworkSpec};
use table::Family;

/// What tether needs from the firewall for one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The CNI network name.
    pub name: String,
    /// The network's Linux bridge.
    pub bridge: String,
    /// Masquerade container traffic leaving through any other interface (`ipMasq`).
    pub masquerade: bool,
    /// Docker-style isolation (the default): nothing enters the network from outside the
    /// host or from another tether network unless it is a reply or came through a
    /// published port, and the network's containers do not reach other tether networks.
    /// Traffic between containers of one network is not the firewall's business: it is
    /// bridged, not routed (icc=false is the bridge ports' `isolated` flag).
    pub isolation: bool,
}

/// A netlink socket to nf_tables in the network namespace current when `open` was called.
#[derive(Debug)]
pub struct Firewall {
    /// One request at a time: replies are read from the same socket.
    socket: Mutex<NfSocket>,
}

/// ERESTART: the ruleset changed since the generation a batch was made for.
const ERESTART: i32 = libc::ERESTART;

impl Firewall {
    pub fn open() -> Result<Firewall, FirewallError> {
        let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
        Ok(Firewall {
            socket: Mutex::new(socket),
        })
    }

    /// The socket's descriptor, to hand tetherd a reference to it with the notify (`client::notify`): while
    /// tetherd holds one, this process's release is not the last and waits for nothing.
    pub fn socket_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        let raw = self.socket().as_fd().as_raw_fd();
        // SAFETY: the socket lives in `self`, so its descriptor stays open as long as `self` is borrowed.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }

    /// Ends this handle without making the caller wait for the kernel. Releasing an nf_tables socket flushes
    /// the kernel's pending destroy work, which waits for an RCU grace period (~10 ms here; nft_rcv_nl_event
    /// on NETLINK_URELEASE). That work is global: a commit that deleted anything in any namespace (another
    /// container's DEL a moment ago) queues it, so even a socket that only added waits. A forked child keeps
    /// a copy of the socket until this process exits, so that last release, and its wait, happen in the
    /// child. Call it only while holding no lock file (the child would hold it too) and with no other thread
    /// running.
    pub fn release_in_background(self) {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, read, ForkResult};
        use std::os::fd::IntoRawFd;

        let Ok((read_end, write_end)) = pipe2(OFlag::O_CLOEXEC) else {
            return; // the ordinary close below then waits; correct, only slower
        };
        // SAFETY: the caller runs no other thread (see above), so the child may run ordinary code; it only
        // silences its output, waits on the pipe and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                if let Ok(null) = open(c"/dev/null", OFlag::O_RDWR, Mode::empty()) {
                    let _ = (dup2_stdin(&null), dup2_stdout(&null), dup2_stderr(&null));
                }
                drop(write_end);
                let mut byte = [0u8; 1];
                // Returns 0 (EOF) when the parent, the only holder of the write end, has exited.
                while matches!(read(&read_end, &mut byte), Ok(1..)) {}
                // _exit: no atexit handlers or buffered output of the parent's copy of the process.
                // SAFETY: ends this process at once; nothing of it is used afterwards.
                unsafe { libc::_exit(0) }
            }
            Ok(ForkResult::Parent { .. }) => {
                // The write end stays open for the rest of this process's life on purpose.
                let _ = write_end.into_raw_fd();
            }
            Err(_) => {}
        }
    }

    fn socket(&self) -> MutexGuard<'_, NfSocket> {
        // A panic elsewhere cannot leave the socket half-used: every call reads its own
        // replies by sequence number.
        self.socket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `statements` to table `family tether` as one transaction: all of them or none.
    fn apply(
        &self,
        statements: &[render::Statement],
        family: Family,
        subject: &str,
        action: &'static str,
    ) -> Result<(), FirewallError> {
        tracing::debug!(
            subject,
            action,
            ruleset = %render::render(statements, family),
            "applying ruleset"
        );
        let batch = render::batch(statements, family);
        let answer = batch
            .apply(&self.socket())
            .map_err(|source| FirewallError::SocketIo {
                op: "applying a ruleset",
                source,
            })?;
        answer.map_err(|refusal| FirewallError::RulesetRefused {
            subject: subject.to_string(),
            action,
            statement: statements[refusal.index].render(family),
            source: io::Error::from_raw_os_error(refusal.errno),
        })
    }

    /// Makes sure the network's chains, sets and map elements exist with these settings.
    /// One netlink round trip when they do; otherwise one more transaction, safe against
    /// racing callers.
    pub fn ensure_network(&self, net: &NetworkRules) -> Result<(), FirewallError> {
        let spec = NetworkSpec::parse(net)?;
        let replacing = match self.installed(spec.id)? {
            Some(installed) if !spec.same_network_as(&installed) => {
                return Err(FirewallError::NetworkIdCollision {
                    network: spec.name.clone(),
                    other: installed.name,
                    id: spec.id.to_string(),
                });
            }
            Some(installed) if spec.same_settings_as(&installed) => return Ok(()),
            Some(installed) => Some(installed),
            None => None,
        };
        tracing::info!(
            network = %spec.name,
            id = %spec.id,
            bridge = %spec.bridge,
            masquerade = spec.masquerade,
            isolation = spec.isolation,
            reinstall = replacing.is_some(),
            "installing network firewall rules"
        );
        let statements = render::install(&spec, replacing.as_ref());
        self.apply(&statements, Family::Inet, &spec.name, "installing")?;
        // Rare path: worth one more dump to tell the user why traffic may still not flow.
        for drop in self.foreign_forward_drops().unwrap_or_default() {
            tracing::warn!(network = %spec.name, "{drop}");
        }
        Ok(())
    }

    /// Deletes the network's chains, sets and map elements; then the table, when no network
    /// is left in it. Succeeds when the network is not installed.
    pub fn remove_network(&self, name: &str) -> Result<(), FirewallError> {
        validate_network_name(name)?;
        let id = NetworkId::of(name);
        let Some(installed) = self.installed(id)? else {
            return Ok(());
        };
        if !name.starts_with(&installed.name) {
            return Err(FirewallError::NetworkIdCollision {
                network: name.to_string(),
                other: installed.name,
                id: id.to_string(),
            });
        }
        let mut leftovers = self.set_addresses(&id.ipv4_set())?;
        leftovers.extend(self.set_addresses(&id.ipv6_set())?);
        tracing::info!(network = name, %id, leftovers = leftovers.len(), "removing network firewall rules");
        let statements = render::teardown(id, &installed, &leftovers);
        self.apply(&statements, Family::Inet, name, "removing")?;
        self.delete_table_if_unused()
    }

    /// Adds the container's addresses to its network's sets and NAT maps in one batch.
    pub fn add_container(&self, network: &str, addrs: &[IpAddr]) -> Result<(), FirewallError> {
        validate_network_name(network)?;
        let changes = container_changes(NetworkId::of(network), addrs, ElementOp::Add);
        if changes.is_empty() {
            return Ok(());
        }
        match self.send_batch(&changes)? {
            None => Ok(()),
            Some((_, code)) if code == libc::ENOENT => Err(FirewallError::NetworkNotInstalled {
                network: network.to_string(),
            }),
            Some((change, code)) => Err(kernel_error(change, code)),
        }
    }

    /// Removes the container's addresses; addresses (or a network) already gone are fine.
    pub fn remove_container(&self, network: &str, addrs: &[IpAddr]) -> Result<(), FirewallError> {
        validate_network_name(network)?;
        let changes = container_changes(NetworkId::of(network), addrs, ElementOp::Destroy);
        self.remove_elements(&changes)
    }

    /// Sends `Destroy` changes; elements, sets or a table already gone are fine.
    fn remove_elements(&self, changes: &[ElementChange]) -> Result<(), FirewallError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self.send_batch(changes)? {
            None => Ok(()),
            // ENOENT: a set is gone (the whole batch was refused). EINVAL/EOPNOTSUPP: a
            // kernel before 6.3 without DESTROYSETELEM. Either way, delete one element at
            // a time and let each absent one pass.
            Some((_, libc::ENOENT | libc::EINVAL | libc::EOPNOTSUPP)) => {
                self.delete_elements_one_by_one(changes)
            }
            Some((change, code)) => Err(kernel_error(change, code)),
        }
    }

    /// Whether every address is in its network's set and NAT map (for CNI CHECK).
    pub fn container_present(
        &self,
        network: &str,
        addrs: &[IpAddr],
    ) -> Result<bool, FirewallError> {
        validate_network_name(network)?;
        let id = NetworkId::of(network);
        for change in container_changes(id, addrs, ElementOp::Add) {
            if !self.elements_present(&change)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every key of `change` is in its set (data is not compared).
    fn elements_present(&self, change: &ElementChange) -> Result<bool, FirewallError> {
        let keys: Vec<Vec<u8>> = change.elements.iter().map(|e| e.key.clone()).collect();
        Ok(self
            .lookup_elements(change.family, &change.set, &keys)?
            .is_some())
    }

    /// The elements with these keys, with their data; None when any key (or the set, or
    /// the table) is absent.
    fn lookup_elements(
        &self,
        family: Family,
        set: &str,
        keys: &[Vec<u8>],
    ) -> Result<Option<Vec<replies::ElementEntry>>, FirewallError> {
        let socket = self.socket();
        let seq = socket.reserve_seqs(1);
        let answer = socket
            .request(&requests::get_elements(family, set, keys, seq), seq)
            .map_err(|source| FirewallError::SocketIo {
                op: "looking up set elements",
                source,
            })?;
        match answer {
            Ok(payloads) => Ok(Some(
                payloads
                    .iter()
                    .flat_map(|payload| replies::element_entries(payload))
                    .collect(),
            )),
            Err(libc::ENOENT) => Ok(None),
            Err(code) => Err(FirewallError::Kernel {
                op: "looking up elements",
                set: set.to_string(),
                source: io::Error::from_raw_os_error(code),
                hint: "",
            }),
        }
    }

    /// Every element of a set, with its data; empty when the set is absent.
    fn dump_set(
        &self,
        family: Family,
        set: &str,
    ) -> Result<Vec<replies::ElementEntry>, FirewallError> {
        Ok(self
            .set_element_payloads(family, set)?
            .iter()
            .flat_map(|payload| replies::element_entries(payload))
            .collect())
    }

    /// The raw NEWSETELEM payloads of a set dump; empty when the set is absent.
    fn set_element_payloads(
        &self,
        family: Family,
        set: &str,
    ) -> Result<Vec<Vec<u8>>, FirewallError> {
        let socket = self.socket();
        let seq = socket.reserve_seqs(1);
        let answer = socket
            .dump(&requests::dump_elements(family, set, seq), seq)
            .map_err(|source| FirewallError::SocketIo {
                op: "listing set elements",
                source,
            })?;
        match answer {
            Ok(payloads) => Ok(payloads),
            Err(libc::ENOENT) => Ok(Vec::new()),
            Err(code) => Err(FirewallError::Kernel {
                op: "listing elements",
                set: set.to_string(),
                source: io::Error::from_raw_os_error(code),
                hint: "",
            }),
        }
    }

    /// Whether the network's rules are installed (its forward chain exists and is its own).
    pub fn network_installed(&self, name: &str) -> Result<bool, FirewallError> {
        validate_network_name(name)?;
        Ok(self
            .installed(NetworkId::of(name))?
            .is_some_and(|installed| name.starts_with(&installed.name)))
    }

    /// Reads the network's forward chain and its fingerprint comment: None when absent.
    fn installed(&self, id: NetworkId) -> Result<Option<InstalledNetwork>, FirewallError> {
        let chain = id.forward_chain();
        let socket = self.socket();
        let seq = socket.reserve_seqs(1);
        let answer = socket
            .request(&requests::get_chain(&chain, seq), seq)
            .map_err(|source| FirewallError::SocketIo {
                op: "looking up a chain",
                source,
            })?;
        let replies = match answer {
            Ok(replies) => replies,
            Err(libc::ENOENT) => return Ok(None),
            Err(code) => {
                return Err(FirewallError::Kernel {
                    op: "looking up chain",
                    set: chain,
                    source: io::Error::from_raw_os_error(code),
                    hint: "",
                })
            }
        };
        let comment = replies
            .first()
            .map(|payload| replies::chain(payload))
            .and_then(|reply| reply.comment);
        match comment.as_deref().and_then(InstalledNetwork::from_comment) {
            Some(installed) => Ok(Some(installed)),
            None => Err(FirewallError::MalformedReply {
                op: "looking up a network",
                detail: format!(
                    "chain {chain} in table inet tether has no tether fingerprint comment \
                     ({comment:?}); it was changed by hand: delete it with \
                     `nft delete table inet tether` and add the network again"
                ),
            }),
        }
    }

    fn set_addresses(&self, set: &str) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(self
            .set_element_payloads(Family::Inet, set)?
            .iter()
            .flat_map(|payload| replies::element_addresses(payload))
            .collect())
    }

    /// Sends `changes` as one transaction. Returns the first change the kernel refused,
    /// with its errno, or None when all were applied.
    fn send_batch<'c>(
        &self,
        changes: &'c [ElementChange],
    ) -> Result<Option<(&'c ElementChange, i32)>, FirewallError> {
        let socket = self.socket();
        let first_seq = socket.reserve_seqs(changes.len() as u32 + 2);
        let batch = requests::element_batch(changes, first_seq);
        let io_error = |source| FirewallError::SocketIo {
            op: "sending set elements",
            source,
        };
        socket.send(&batch.bytes).map_err(io_error)?;
        let answers: HashMap<u32, i32> = socket
            .collect_acks(&batch.change_seqs, batch.begin_seq)
            .map_err(io_error)?;
        Ok(changes
            .iter()
            .zip(&batch.change_seqs)
            .find_map(|(change, seq)| match answers.get(seq) {
                Some(0) | None => None,
                Some(code) => Some((change, *code)),
            }))
    }

    fn delete_elements_one_by_one(&self, changes: &[ElementChange]) -> Result<(), FirewallError> {
        for change in changes {
            for element in &change.elements {
                let single = [ElementChange {
                    counted: false,
                    family: change.family,
                    op: ElementOp::Delete,
                    set: change.set.clone(),
                    elements: vec![element.clone()],
                }];
                match self.send_batch(&single)? {
                    None => {}
                    Some((_, libc::ENOENT)) => {}
                    Some((refused, code)) => return Err(kernel_error(refused, code)),
                }
            }
        }
        Ok(())
    }

    /// Deletes table `inet tether` when only its base chains are left, unless the ruleset
    /// changed since we looked (then someone is installing a network; leave the table).
    fn delete_table_if_unused(&self) -> Result<(), FirewallError> {
        let socket = self.socket();
        let io_error = |source| FirewallError::SocketIo {
            op: "checking whether table inet tether is still used",
            source,
        };
        let seq = socket.reserve_seqs(1);
        let generation = match socket
            .request(&requests::get_generation(seq), seq)
            .map_err(io_error)?
        {
            Ok(replies) => replies.first().and_then(|p| replies::generation(p)),
            Err(_) => None,
        };
        let Some(generation) = generation else {
            return Ok(());
        };
        let seq = socket.reserve_seqs(1);
        let chains = match socket
            .dump(&requests::dump_chains(seq), seq)
            .map_err(io_error)?
        {
            Ok(replies) => replies,
            Err(_) => return Ok(()),
        };
        let in_use = chains
            .iter()
            .map(|payload| replies::chain(payload))
            .any(|chain| {
                chain.table == table::NAME
                    && chain.name != table::FORWARD_CHAIN
                    && chain.name != table::POSTROUTING_CHAIN
            });
        if in_use {
            return Ok(());
        }
        let first_seq = socket.reserve_seqs(3);
        socket
            .send(&requests::delete_table_if_unchanged(generation, first_seq))
            .map_err(io_error)?;
        let answers = socket
            .collect_acks(&[first_seq + 1], first_seq)
            .map_err(io_error)?;
        match answers.get(&(first_seq + 1)).copied().unwrap_or(0) {
            0 => {
                tracing::info!("deleted table inet tether: no network left in it");
                Ok(())
            }
            // Gone already, or changed under us: either way not ours to delete now.
            libc::ENOENT | ERESTART | libc::EBUSY => Ok(()),
            code => Err(FirewallError::Kernel {
                op: "deleting table",
                set: "(whole table)".into(),
                source: io::Error::from_raw_os_error(code),
                hint: "",
            }),
        }
    }
}

/// The element changes for one container: its addresses into (or out of) the network's sets. Removal
/// also takes them out of the NAT maps by address, where tethers before `nat_in` put them with a jump to
/// the network's NAT chain; an add puts no jump anywhere, so its commit validates nothing.
fn container_changes(id: NetworkId, addrs: &[IpAddr], op: ElementOp) -> Vec<ElementChange> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.iter().partition(|a| a.is_ipv4());
    let mut changes = Vec::new();
    for (family_addrs, set, map) in [
        (v4, id.ipv4_set(), table::NAT_V4_MAP),
        (v6, id.ipv6_set(), table::NAT_V6_MAP),
    ] {
        if family_addrs.is_empty() {
            continue;
        }
        let elements: Vec<SetElement> = family_addrs.iter().map(SetElement::address).collect();
        if op == ElementOp::Destroy {
            changes.push(ElementChange {
                counted: false,
                family: Family::Inet,
                op,
                set: map.to_string(),
                elements: elements.clone(),
            });
        }
        changes.push(ElementChange {
            counted: true,
            family: Family::Inet,
            op,
            set,
            elements,
        });
    }
    changes
}

/// The nft text of what tether installs, for the integration tests: they make the same ruleset with
/// `nft -f` (as a tether that spawned nft did) and compare the kernel's listings. Not part of the API.
#[doc(hidden)]
pub mod as_nft_text {
    use super::{render, Family, FirewallError, NetworkRules, NetworkSpec, PortmapOptions};

    pub fn network(net: &NetworkRules) -> Result<String, FirewallError> {
        let spec = NetworkSpec::parse(net)?;
        Ok(render::render(&render::install(&spec, None), Family::Inet))
    }

    pub fn published_ports(opts: &PortmapOptions) -> String {
        render::render(&super::published_ports::install(opts), Family::Inet)
    }

    pub fn spoofchk() -> String {
        render::render(&super::spoofchk::install(), Family::Bridge)
    }
}

impl Firewall {
    /// Applies a network's, the port maps' and macspoofchk's whole installs again over what is there (an
    /// upgrade over a ruleset nft made). For the integration tests; not part of the API.
    #[doc(hidden)]
    pub fn reapply_installs(
        &self,
        net: &NetworkRules,
        opts: &PortmapOptions,
    ) -> Result<(), FirewallError> {
        let spec = NetworkSpec::parse(net)?;
        self.apply(
            &render::install(&spec, None),
            Family::Inet,
            &spec.name,
            "re-applying",
        )?;
        self.apply(
            &published_ports::install(opts),
            Family::Inet,
            "port maps",
            "re-applying",
        )?;
        self.apply(
            &spoofchk::install(),
            Family::Bridge,
            "macspoofchk",
            "re-applying",
        )
    }
}

pub(super) fn kernel_error(change: &ElementChange, code: i32) -> FirewallError {
    let hint = match code {
        libc::EEXIST | libc::EBUSY => {
            "; the address is already in use by another container or network: remove it first"
        }
        libc::EPERM => "; this needs CAP_NET_ADMIN in the network namespace",
        _ => "",
    };
    FirewallError::Kernel {
        op: change.op.describe(),
        set: change.set.clone(),
        source: io::Error::from_raw_os_error(code),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_added_to_its_sets_only_and_removed_from_the_old_nat_maps_too() {
        let id = NetworkId::of("a");
        let addrs: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let added = container_changes(id, &addrs, ElementOp::Add);
        let sets: Vec<&str> = added.iter().map(|c| c.set.as_str()).collect();
        assert_eq!(sets, [id.ipv4_set(), id.ipv6_set()]);
        // No jump in an ADD's batch: a jump element makes the kernel validate the whole table at commit.
        assert!(added
            .iter()
            .flat_map(|c| &c.elements)
            .all(|e| e.data.is_none()));
        let removed = container_changes(id, &addrs, ElementOp::Destroy);
        let sets: Vec<&str> = removed.iter().map(|c| c.set.as_str()).collect();
        assert_eq!(
            sets,
            [
                table::NAT_V4_MAP.to_string(),
                id.ipv4_set(),
                table::NAT_V6_MAP.to_string(),
                id.ipv6_set()
            ]
        );
    }
}
