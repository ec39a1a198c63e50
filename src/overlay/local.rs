//! This host's side of the records: what the plugins wrote to the state directory (network facts, block
//! claims, attachment records) turned into the host's own records, and the peers' claims written back for
//! the plugin's block choice, with claim conflicts settled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;

use super::agreement::ClaimRef;
use super::records::{RecordKey, RecordTable, RecordValue};
use crate::ipam::Store;
use crate::state::overlay::{
    block_addresses, claims_lock_name, local_networks, next_free_block, now_ms, wins, Claim,
    ClaimState, HostClaims, NetworkFacts, OverlayDir, PeerClaim, Pool, LEASE_STORE,
};
use crate::state::service::read_healthy_backends;
use crate::state::NetworkLock;
use crate::state::{DriverKind, RecordDir};

/// What the state directory says this host has.
#[derive(Debug, Default)]
pub struct LocalState {
    pub networks: Vec<NetworkFacts>,
    pub wanted: BTreeMap<RecordKey, RecordValue>,
    /// This host's claims that want the members' agreement (pending or unconfirmed).
    pub proposing: Vec<(ClaimRef, ClaimState)>,
}

/// `run_dir` holds the balancer's verdicts on this host's backends (`state::service::backend_health_path`).
pub fn read_local(state_dir: &Path, run_dir: &Path, me: IpAddr) -> LocalState {
    let networks = local_networks(state_dir);
    let mut wanted = super::cluster_services::own_records(state_dir, me);
    let mut healthy: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for h in read_healthy_backends(run_dir) {
        healthy
            .entry((h.container_id, h.ifname))
            .or_default()
            .push(h.service);
    }
    for facts in &networks {
        let dir = OverlayDir::new(state_dir, &facts.network);
        match dir.claims() {
            Ok(claims) => {
                // Pending claims travel as proposals, not records: they hand out nothing yet.
                for c in claims
                    .claims
                    .into_iter()
                    .filter(|c| !c.lost && c.state != ClaimState::Pending)
                {
                    wanted.insert(
                        RecordKey::Claim {
                            host: me,
                            network: facts.network.clone(),
                            block: c.block,
                        },
                        RecordValue::Claim {
                            claimed_at_ms: c.claimed_at_ms,
                            confirmed: c.state == ClaimState::Confirmed,
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(network = %facts.network, error = %e, "unreadable overlay claims")
            }
        }
        let records = match RecordDir::new(state_dir, &facts.network).list() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(network = %facts.network, error = %e, "unreadable attachment records");
                continue;
            }
        };
        for rec in records.iter().filter(|r| r.driver == DriverKind::Overlay) {
            let names: Vec<String> = if rec.dns {
                rec.name.iter().chain(rec.aliases.iter()).cloned().collect()
            } else {
                Vec::new()
            };
            let Some(mac) = rec.mac else {
                continue;
            };
            let healthy_for = healthy
                .get(&(rec.container_id.to_string(), rec.ifname.to_string()))
                .cloned()
                .unwrap_or_default();
            // One record per address of the network's subnets (a dual-stack container has two).
            for ip in rec.ips.iter().map(|a| a.ip()) {
                if facts.pool_of(ip).is_some() {
                    wanted.insert(
                        RecordKey::Endpoint {
                            host: me,
                            network: facts.network.clone(),
                            ip,
                        },
                        RecordValue::Endpoint {
                            vni: facts.vni,
                            mac: mac.octets(),
                            vtep: facts.vtep,
                            names: names.clone(),
                            healthy_for: healthy_for.clone(),
                        },
                    );
                }
            }
        }
    }
    LocalState {
        networks,
        wanted,
        proposing: proposing_claims(state_dir),
    }
}

/// This host's usable claims as records, in every overlay network directory: also in one whose first ADD
/// has its block but has not written the network's facts yet (the etcd store must not take such a block
/// for released).
pub fn claim_records(state_dir: &Path, me: IpAddr) -> BTreeMap<RecordKey, RecordValue> {
    let Ok(entries) = std::fs::read_dir(OverlayDir::root(state_dir)) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for entry in entries.flatten() {
        let network = entry.file_name().to_string_lossy().to_string();
        let Ok(claims) = OverlayDir::new(state_dir, &network).claims() else {
            continue;
        };
        for c in claims
            .claims
            .into_iter()
            .filter(|c| !c.lost && c.state != ClaimState::Pending)
        {
            out.insert(
                RecordKey::Claim {
                    host: me,
                    network: network.clone(),
                    block: c.block,
                },
                RecordValue::Claim {
                    claimed_at_ms: c.claimed_at_ms,
                    confirmed: c.state == ClaimState::Confirmed,
                },
            );
        }
    }
    out
}

/// This host's claims that want the members' agreement, in every overlay network directory: also in one
/// whose first ADD is still waiting for its block (its network facts are written after the address).
fn proposing_claims(state_dir: &Path) -> Vec<(ClaimRef, ClaimState)> {
    let Ok(entries) = std::fs::read_dir(OverlayDir::root(state_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let network = entry.file_name().to_string_lossy().to_string();
        let Ok(claims) = OverlayDir::new(state_dir, &network).claims() else {
            continue;
        };
        out.extend(
            claims
                .claims
                .iter()
                .filter(|c| !c.lost && c.state != ClaimState::Confirmed)
                .map(|c| {
                    let claim = ClaimRef {
                        network: network.clone(),
                        block: c.block,
                        claimed_at_ms: c.claimed_at_ms,
                    };
                    (claim, c.state)
                }),
        );
    }
    out
}

/// Fewer free addresses than this fraction of a block in this host's confirmed blocks of a network, and
/// the control plane claims another block (with a store that claims ahead of need).
const LOW_WATER_DIVISOR: u128 = 2;

/// With a store that confirms every block (etcd), ADD never waits for it: for every network (and address
/// family) this host has, once the free addresses of its usable blocks fall below half a block, a pending
/// claim of one more block is written here (one at a time per family) and proposed like a plugin's.
/// Returns the claims written.
pub fn claim_ahead(
    state_dir: &Path,
    me: IpAddr,
    networks: &[NetworkFacts],
) -> Vec<(ClaimRef, ClaimState)> {
    let mut out = Vec::new();
    for facts in networks {
        let dir = OverlayDir::new(state_dir, &facts.network);
        let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(&facts.network)) else {
            continue;
        };
        // The plugin's last DEL removed the network here meanwhile.
        if !dir.path().exists() {
            continue;
        }
        let Ok(mut claims) = dir.claims() else {
            continue;
        };
        let leases: Vec<IpAddr> = leases(&dir);
        for pool in facts.pools() {
            let Some(claim) = claim_ahead_in(&dir, &mut claims, pool, me, &leases) else {
                continue;
            };
            tracing::info!(network = %facts.network, block = %claim.block, "claiming an address block ahead of need");
            out.push((
                ClaimRef {
                    network: facts.network.clone(),
                    block: claim.block,
                    claimed_at_ms: claim.claimed_at_ms,
                },
                ClaimState::Pending,
            ));
        }
    }
    out
}

/// [`claim_ahead`] for one family of one network, under its claims lock: the claim written, if one was
/// due.
fn claim_ahead_in(
    dir: &OverlayDir,
    claims: &mut HostClaims,
    pool: Pool,
    me: IpAddr,
    leases: &[IpAddr],
) -> Option<Claim> {
    let ours = |c: &&Claim| pool.holds_block(&c.block);
    if claims
        .claims
        .iter()
        .filter(ours)
        .any(|c| c.state != ClaimState::Confirmed && !c.lost)
    {
        // One claim at a time: the one in flight is proposed already.
        return None;
    }
    let usable: Vec<IpNetwork> = claims
        .claims
        .iter()
        .filter(ours)
        .filter(|c| c.usable())
        .map(|c| c.block)
        .collect();
    let capacity: u128 = usable.iter().map(|b| block_addresses(*b, b.prefix())).sum();
    let used = leases
        .iter()
        .filter(|ip| usable.iter().any(|b| b.contains(**ip)))
        .count() as u128;
    if capacity.saturating_sub(used) >= (pool.block_addresses() / LOW_WATER_DIVISOR).max(1) {
        return None;
    }
    let mut taken: BTreeSet<IpNetwork> = claims.claims.iter().map(|c| c.block).collect();
    taken.extend(
        dir.peer_claims()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.block),
    );
    let block = next_free_block(pool, &me.to_string(), &taken)?;
    let claim = Claim {
        block,
        claimed_at_ms: now_ms(),
        lost: false,
        state: ClaimState::Pending,
    };
    claims.claims.push(claim);
    if let Err(e) = dir.write_claims(claims) {
        tracing::warn!(%block, error = %e, "could not write a claim ahead of need");
        claims.claims.pop();
        return None;
    }
    Some(claim)
}

/// Gives `block` of `network` up to another host that holds it in the store: dropped when none of its
/// addresses is in use here, else marked lost (no new address from it). Returns whether the file changed.
pub fn yield_block(state_dir: &Path, network: &str, block: IpNetwork, holder: IpAddr) -> bool {
    let dir = OverlayDir::new(state_dir, network);
    let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(network)) else {
        return false;
    };
    let Ok(mut mine) = dir.claims() else {
        return false;
    };
    let leases: Vec<IpAddr> = leases(&dir);
    let in_use = leases.iter().any(|ip| block.contains(*ip));
    let before = mine.claims.clone();
    mine.claims.retain_mut(|c| {
        if c.block != block {
            return true;
        }
        if in_use {
            if !c.lost {
                tracing::error!(%block, network, other = %holder,
                    "the store gives this host's address block to another host while addresses of it \
                     are in use here; no new address comes from it: remove this host's containers in it");
                c.lost = true;
            }
            return true;
        }
        tracing::warn!(%block, network, other = %holder, "the store gives this block to another host; moving");
        false
    });
    if mine.claims == before {
        return false;
    }
    if let Err(e) = dir.write_claims(&mine) {
        tracing::warn!(network, error = %e, "could not rewrite claims");
        return false;
    }
    true
}

/// The addresses this host hands out on the network now.
fn leases(dir: &OverlayDir) -> Vec<IpAddr> {
    Store::existing(dir.lease_data_dir(), LEASE_STORE)
        .ok()
        .flatten()
        .and_then(|s| s.lock().and_then(|l| l.leases()).ok())
        .unwrap_or_default()
}

/// The live claims of other hosts, per network.
pub fn peer_claims(table: &RecordTable, me: IpAddr) -> BTreeMap<String, Vec<PeerClaim>> {
    let mut out: BTreeMap<String, Vec<PeerClaim>> = BTreeMap::new();
    for (key, value) in table.live() {
        if let (
            RecordKey::Claim {
                host,
                network,
                block,
            },
            RecordValue::Claim {
                claimed_at_ms,
                confirmed,
            },
        ) = (key, value)
        {
            if *host != me {
                out.entry(network.clone()).or_default().push(PeerClaim {
                    block: *block,
                    host: *host,
                    claimed_at_ms: *claimed_at_ms,
                    state: if *confirmed {
                        ClaimState::Confirmed
                    } else {
                        ClaimState::Unconfirmed
                    },
                });
            }
        }
    }
    out
}

/// Writes `peer_claims.json` for every network peers claim blocks in (also ones this host does not use
/// yet: its first ADD must avoid their blocks), and clears it for networks nobody else claims in.
/// `written` is what this plane last wrote per network: a network equal to it is not touched, one
/// missing from it is read back first (clear it to compare every file again).
pub fn publish_peer_claims(
    state_dir: &Path,
    claims: &BTreeMap<String, Vec<PeerClaim>>,
    written: &mut BTreeMap<String, Vec<PeerClaim>>,
) {
    let mut networks: BTreeSet<String> = claims.keys().cloned().collect();
    networks.extend(local_networks(state_dir).into_iter().map(|f| f.network));
    written.retain(|n, _| networks.contains(n));
    for network in networks {
        let dir = OverlayDir::new(state_dir, &network);
        let empty = Vec::new();
        let wanted = claims.get(&network).unwrap_or(&empty);
        let known = written.get(&network);
        if known == Some(wanted) {
            continue;
        }
        // The plugin's last DEL removes the directory under this lock; a write racing it would leave
        // the removal a non-empty directory.
        let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(&network)) else {
            continue;
        };
        let same = known.is_none() && dir.peer_claims().ok().as_ref() == Some(wanted);
        if !same {
            if let Err(e) = dir.write_peer_claims(wanted) {
                tracing::warn!(network = %network, error = %e, "could not write peer claims");
                continue;
            }
        }
        written.insert(network, wanted.clone());
    }
}

/// Whether a peer claims a block this host claims (`mine`: per network), the only case
/// [`settle_conflicts`] has anything to settle for a claim still held.
pub fn clashes(
    mine: &BTreeMap<String, BTreeSet<IpNetwork>>,
    theirs: &BTreeMap<String, Vec<PeerClaim>>,
) -> bool {
    theirs.iter().any(|(network, claims)| {
        mine.get(network)
            .is_some_and(|blocks| claims.iter().any(|c| blocks.contains(&c.block)))
    })
}

/// Gives up this host's claims that lose against a peer's claim of the same block, as long as no address
/// of the block is in use here (then the conflict is logged: it needs a person). Returns whether any
/// claim was given up.
pub fn settle_conflicts(
    state_dir: &Path,
    me: IpAddr,
    claims: &BTreeMap<String, Vec<PeerClaim>>,
) -> bool {
    let mut gave_up = false;
    for facts in local_networks(state_dir) {
        let Some(theirs) = claims.get(&facts.network) else {
            continue;
        };
        let dir = OverlayDir::new(state_dir, &facts.network);
        let Ok(_lock) = NetworkLock::exclusive(&claims_lock_name(&facts.network)) else {
            continue;
        };
        let Ok(mut mine) = dir.claims() else {
            continue;
        };
        let leases: Vec<IpAddr> = leases(&dir);
        let in_use = |block: IpNetwork| leases.iter().any(|ip| block.contains(*ip));
        let before = mine.claims.clone();
        settle(&mut mine.claims, me, theirs, in_use, &facts.network);
        if mine.claims != before {
            gave_up = true;
            if let Err(e) = dir.write_claims(&mine) {
                tracing::warn!(network = %facts.network, error = %e, "could not rewrite claims");
            }
        }
    }
    gave_up
}

/// Settles `mine` against the peers' claims: a claim a peer's claim of the same block beats is dropped,
/// or, while `in_use` says addresses of the block are handed out here, marked lost (no new address from
/// it; the clash with the winner's containers is logged, since moving would renumber running containers).
fn settle(
    mine: &mut Vec<Claim>,
    me: IpAddr,
    theirs: &[PeerClaim],
    in_use: impl Fn(IpNetwork) -> bool,
    network: &str,
) {
    mine.retain_mut(|c| {
        let Some(winner) = theirs
            .iter()
            .find(|p| p.block == c.block && !wins(c, me, p))
        else {
            return true;
        };
        if in_use(c.block) {
            if !c.lost {
                tracing::error!(block = %c.block, network, other = %winner.host,
                    "address block claimed by two hosts and addresses of it are in use here; no new \
                     address comes from it, but containers of both hosts may share addresses: remove \
                     this host's containers in the block");
                c.lost = true;
            }
            return true;
        }
        tracing::warn!(block = %c.block, network, other = %winner.host,
            "block claimed by two hosts; the other claim wins, this host moves to another block");
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_claim_of_one_of_this_hosts_blocks_in_the_same_network_clashes() {
        let block: IpNetwork = "10.0.0.0/26".parse().unwrap();
        let other: IpNetwork = "10.0.0.64/26".parse().unwrap();
        let peer = |block| PeerClaim {
            block,
            host: "192.0.2.1".parse().unwrap(),
            claimed_at_ms: 5,
            state: ClaimState::Confirmed,
        };
        let mine = BTreeMap::from([("a".to_string(), BTreeSet::from([block]))]);
        let theirs = |network: &str, b| BTreeMap::from([(network.to_string(), vec![peer(b)])]);
        assert!(clashes(&mine, &theirs("a", block)));
        assert!(!clashes(&mine, &theirs("a", other)));
        assert!(
            !clashes(&mine, &theirs("b", block)),
            "another network's block"
        );
        assert!(!clashes(&BTreeMap::new(), &theirs("a", block)));
    }

    #[test]
    fn the_losing_claim_moves_unless_its_addresses_are_in_use() {
        let me: IpAddr = "192.0.2.2".parse().unwrap();
        let block: IpNetwork = "10.0.0.0/26".parse().unwrap();
        let other: IpNetwork = "10.0.0.64/26".parse().unwrap();
        let theirs = vec![PeerClaim {
            block,
            host: "192.0.2.1".parse().unwrap(),
            claimed_at_ms: 5,
            state: ClaimState::Unconfirmed,
        }];
        let mut mine = vec![
            Claim {
                block,
                claimed_at_ms: 9,
                lost: false,
                state: ClaimState::Unconfirmed,
            },
            Claim {
                block: other,
                claimed_at_ms: 9,
                lost: false,
                state: ClaimState::Unconfirmed,
            },
        ];
        settle(&mut mine, me, &theirs, |_| true, "n");
        assert_eq!(mine.len(), 2, "a block with addresses in use stays");
        assert!(mine[0].lost && !mine[1].lost, "but gives no new address");
        settle(&mut mine, me, &theirs, |_| false, "n");
        assert_eq!(
            mine,
            vec![Claim {
                block: other,
                claimed_at_ms: 9,
                lost: false,
                state: ClaimState::Unconfirmed,
            }],
            "the later claim moves"
        );
        let mut earlier = vec![Claim {
            block,
            claimed_at_ms: 1,
            lost: false,
            state: ClaimState::Unconfirmed,
        }];
        settle(&mut earlier, me, &theirs, |_| false, "n");
        assert_eq!(earlier.len(), 1, "the earlier claim keeps its block");
    }
}
