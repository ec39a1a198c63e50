//! tetherd lets go of containers that died without a DEL. Every check period the daemon hands this thread
//! the attachments it knows; one scan of `/proc` tells which namespaces are gone, and each gone
//! attachment is released as a DEL would (`Endpoints::release`: the chain's DEL with the cached config).
//! The DEL's plugins notify tetherd like any DEL, which closes the resolver's sockets in that namespace,
//! the last thing of tether that held it.
//!
//! Its own OS thread: a DEL runs plugins and waits for them, and those plugins talk to the daemon's
//! runtime, which must stay free to answer them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::endpoint::{Endpoints, Held};
use crate::netns::liveness::OccupiedOnDemand;
use crate::netns::{NetNs, NsId};
use crate::state::RecordDir;

type Key = (String, String, String);

/// A handle on the check thread; the thread ends with the daemon.
pub struct NamespaceWatch {
    checks: mpsc::SyncSender<Vec<Held>>,
    busy: Arc<AtomicBool>,
    /// Checks finished so far (`tetherd status`: a test waits for one to pass).
    done: Arc<AtomicU64>,
    /// Gone namespaces whose attachments could not be released, for the services to let go of.
    unreleased: mpsc::Receiver<NsId>,
}

impl NamespaceWatch {
    pub fn start(state_dir: &Path) -> std::io::Result<NamespaceWatch> {
        let (checks, queue) = mpsc::sync_channel::<Vec<Held>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let running = busy.clone();
        let done = Arc::new(AtomicU64::new(0));
        let counted = done.clone();
        let endpoints = Endpoints {
            state_dir: state_dir.to_path_buf(),
            ..Endpoints::from_env()
        };
        let state_dir = state_dir.to_path_buf();
        let (unreleased_tx, unreleased) = mpsc::channel();
        std::thread::Builder::new()
            .name("tetherd-gone".into())
            .spawn(move || {
                let mut seen = Seen::default();
                for held in queue {
                    release_gone(&endpoints, &state_dir, held, &mut seen, &unreleased_tx);
                    counted.fetch_add(1, Ordering::AcqRel);
                    running.store(false, Ordering::Release);
                }
            })?;
        Ok(NamespaceWatch {
            checks,
            busy,
            done,
            unreleased,
        })
    }

    /// Hands the attachments to the check thread; a check still running makes this one a no-op.
    pub fn check(&self, held: Vec<Held>) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.checks.try_send(held).is_err() {
            self.busy.store(false, Ordering::Release);
        }
    }

    pub fn checks_done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Gone namespaces whose release failed since the last call.
    pub fn take_unreleased(&self) -> Vec<NsId> {
        self.unreleased.try_iter().collect()
    }

    /// A check (and the DELs it runs) is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

/// What the check thread remembers between checks.
#[derive(Default)]
struct Seen {
    /// For records written before identities were kept: the namespace the path named when first seen.
    first: HashMap<Key, NsId>,
    /// Releases that failed (logged once); retried by `tether gc` or the runtime's DEL, not every period.
    failed: HashMap<Key, Option<NsId>>,
}

fn release_gone(
    endpoints: &Endpoints,
    state_dir: &Path,
    held: Vec<Held>,
    seen: &mut Seen,
    unreleased: &mpsc::Sender<NsId>,
) {
    forget_released(seen, &held);
    let first_seen = &mut seen.first;
    let held: Vec<Held> = held
        .into_iter()
        .map(|mut h| {
            if h.netns_id.is_none() {
                let k = key(&h);
                h.netns_id = match first_seen.get(&k) {
                    Some(id) => Some(*id),
                    None => {
                        let id = NetNs::open(&h.netns).and_then(|ns| ns.id()).ok();
                        if let Some(id) = id {
                            first_seen.insert(k, id);
                        }
                        id
                    }
                };
            }
            h
        })
        .collect();
    if held.is_empty() {
        return;
    }
    let mut occupied = OccupiedOnDemand::of_proc();
    for h in held.iter().filter(|h| h.is_gone(&mut occupied)) {
        if seen.failed.get(&key(h)) == Some(&h.netns_id) {
            continue;
        }
        // The record may have changed since the daemon's snapshot (a DEL, or an ADD of the same id into
        // a new namespace): release only what still names the namespace found gone.
        let now = RecordDir::new(state_dir, &h.network)
            .read(&h.container_id, &h.ifname)
            .ok()
            .flatten()
            .and_then(|r| Held::of_record(&r));
        let Some(now) = now else { continue };
        if now.netns != h.netns || now.netns_id.is_some_and(|id| Some(id) != h.netns_id) {
            continue;
        }
        h.log_release("tetherd");
        if let Err(e) = endpoints.release(&h.network, &h.container_id, &h.ifname) {
            tracing::warn!(
                network = %h.network,
                container = %h.container_id,
                ifname = %h.ifname,
                error = %e,
                "releasing the attachment of a gone namespace failed; `tether gc` or the runtime's DEL can retry"
            );
            seen.failed.insert(key(h), h.netns_id);
            if let Some(id) = h.netns_id {
                let _ = unreleased.send(id);
            }
        }
        seen.first.remove(&key(h));
    }
}

/// Drops what is remembered of attachments no longer held. One set of the held keys, borrowed: a
/// scan of `held` per remembered key was quadratic, seconds of CPU a minute at a thousand containers
/// whose records predate namespace identities.
fn forget_released(seen: &mut Seen, held: &[Held]) {
    let live: HashSet<(&str, &str, &str)> = held
        .iter()
        .map(|h| {
            (
                h.network.as_str(),
                h.container_id.as_str(),
                h.ifname.as_str(),
            )
        })
        .collect();
    let is_live = |k: &Key| live.contains(&(k.0.as_str(), k.1.as_str(), k.2.as_str()));
    seen.first.retain(|k, _| is_live(k));
    seen.failed.retain(|k, _| is_live(k));
}

fn key(h: &Held) -> Key {
    (h.network.clone(), h.container_id.clone(), h.ifname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(container: &str) -> Held {
        Held {
            network: "n1".into(),
            container_id: container.into(),
            ifname: "eth0".into(),
            netns: format!("/run/netns/{container}").into(),
            netns_id: None,
        }
    }

    #[test]
    fn what_is_remembered_of_attachments_no_longer_held_is_forgotten_and_the_rest_kept() {
        let id = NsId { dev: 4, ino: 1 };
        let mut seen = Seen::default();
        for c in ["a", "b", "c"] {
            seen.first.insert(key(&held(c)), id);
        }
        seen.failed.insert(key(&held("b")), Some(id));
        seen.failed.insert(key(&held("d")), None);
        forget_released(&mut seen, &[held("a"), held("b")]);
        let mut first: Vec<_> = seen.first.keys().map(|k| k.1.clone()).collect();
        first.sort();
        assert_eq!(first, ["a", "b"]);
        let failed: Vec<_> = seen.failed.keys().map(|k| k.1.clone()).collect();
        assert_eq!(failed, ["b"]);
    }
}
