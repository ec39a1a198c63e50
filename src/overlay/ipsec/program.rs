//! Writes `plan::Wanted` to the kernel over NETLINK_XFRM: states first, then policies, and only then may
//! a peer's FDB entries exist (the agent asks [`Programmed::ready`]). tether's states (reqid prefix
//! `driver::overlay::encryption::REQID_PREFIX`) that nobody wants any more are deleted; anyone else's are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::plan::Wanted;
use crate::driver::overlay::encryption::is_ours;
use crate::link::xfrm::{ListedState, Policy, PolicyDir, StateId, XfrmError, XfrmSocket};

/// What the kernel holds of tether's after a pass, and what failed.
#[derive(Debug, Default)]
pub struct Programmed {
    pub states: BTreeSet<StateId>,
    pub policies: BTreeSet<Policy>,
    pub changes: usize,
    pub errors: Vec<XfrmError>,
}

/// tether's states in `listed` that passed a soft lifetime.
pub fn soft_expired(listed: &[ListedState]) -> BTreeSet<StateId> {
    listed
        .iter()
        .filter(|s| is_ours(s.reqid) && s.soft_expired)
        .map(|s| s.id)
        .collect()
}

impl Programmed {
    /// A peer is ready when its send and current receive states and its policies exist.
    pub fn ready(&self, wanted: &Wanted, port: u16, peer: IpAddr) -> bool {
        let states = wanted
            .needs
            .get(&(port, peer))
            .is_some_and(|ids| ids.iter().all(|id| self.states.contains(id)));
        let policies = wanted
            .policies
            .iter()
            .filter(|p| {
                p.selector.dport == Some(port)
                    && match p.dir {
                        PolicyDir::Out => p.selector.dst == Some(peer),
                        PolicyDir::In => p.selector.src == Some(peer),
                    }
            })
            .all(|p| self.policies.contains(p));
        states && policies
    }
}

/// One pass over the states the kernel `listed` just now: `installed` is what the previous pass left
/// (policies are not read back from the kernel; a policy deleted by hand comes back at the next full
/// pass, when the agent clears `installed`).
pub fn apply(
    sock: &XfrmSocket,
    listed: &[ListedState],
    wanted: &Wanted,
    installed: &BTreeSet<Policy>,
) -> Programmed {
    let mut out = Programmed::default();
    let mut present: BTreeMap<StateId, u32> = listed.iter().map(|s| (s.id, s.reqid)).collect();
    let digests: BTreeMap<StateId, Option<u64>> =
        listed.iter().map(|s| (s.id, s.key_digest)).collect();
    for (id, state) in &wanted.states {
        if let Some(&digest) = digests.get(id) {
            if digest == Some(state.key_digest()) {
                out.states.insert(*id);
                continue;
            }
            // A generation three on takes its slot's SPI: the state there now holds an older key.
            if present.get(id).is_some_and(|r| is_ours(*r)) {
                match sock.delete_state(id) {
                    Ok(_) => {
                        present.remove(id);
                        out.changes += 1;
                    }
                    Err(e) => {
                        out.errors.push(e);
                        continue;
                    }
                }
            }
        }
        match sock.add_state(state) {
            Ok(_) => {
                out.states.insert(*id);
                out.changes += 1;
            }
            Err(e) => out.errors.push(e),
        }
    }
    for policy in &wanted.policies {
        if installed.contains(policy) {
            out.policies.insert(*policy);
            continue;
        }
        match sock.update_policy(policy) {
            Ok(()) => {
                out.policies.insert(*policy);
                out.changes += 1;
            }
            Err(e) => out.errors.push(e),
        }
    }
    for stale in installed.difference(&wanted.policies) {
        match sock.delete_policy(&stale.selector, stale.dir) {
            Ok(_) => out.changes += 1,
            Err(e) => out.errors.push(e),
        }
    }
    // Old epochs and departed peers: only after the new states are in, so no direction is ever without one.
    for (id, reqid) in &present {
        if is_ours(*reqid) && !wanted.states.contains_key(id) {
            match sock.delete_state(id) {
                Ok(_) => out.changes += 1,
                Err(e) => out.errors.push(e),
            }
        }
    }
    out
}
