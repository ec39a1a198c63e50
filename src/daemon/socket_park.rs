//! Plugins' nf_tables sockets, kept here while containers come and go.
//!
//! Releasing an nf_tables socket takes its namespace's nf_tables commit mutex and, holding it, flushes the
//! kernel's global destroy work whenever any commit anywhere queued some (every commit does), which waits
//! for an RCU grace period (`nft_rcv_nl_event`, Linux 6.x). Every device registered in that namespace takes
//! the same mutex (`nf_tables_netdev_event`), so a plugin releasing its socket stalls the next ADD's veth for
//! the grace period (10-30 ms measured on a VM). A plugin hands tetherd a reference to its socket with its
//! notify; its own release is then not the last and flushes nothing. tetherd releases what it holds once no
//! socket came for [`QUIET`] (the destroy work has long run by then, so the release flushes nothing either),
//! and all of them at once when more than [`MOST`] pile up under steady churn: the first release of such a
//! batch may wait out one grace period, holding the lock (so no commit queues new work meanwhile), and the
//! rest find nothing to flush. Always on the closer thread, never on the daemon's loop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// No new socket for this long: containers stopped coming and going, release everything held.
pub const QUIET: Duration = Duration::from_secs(1);
/// At most this many held (each is one descriptor of tetherd's).
pub const MOST: usize = 128;

#[derive(Debug, Default)]
pub struct SocketPark {
    held: VecDeque<OwnedFd>,
    last: Option<Instant>,
}

impl SocketPark {
    /// Keeps `sockets`; returns those to release now: all held, once more than [`MOST`] are.
    pub fn park(&mut self, sockets: Vec<OwnedFd>, now: Instant) -> Vec<OwnedFd> {
        if sockets.is_empty() {
            return Vec::new();
        }
        self.held.extend(sockets);
        self.last = Some(now);
        if self.held.len() > MOST {
            return self.held.drain(..).collect();
        }
        Vec::new()
    }

    /// Everything held, once no socket came for [`QUIET`].
    pub fn due(&mut self, now: Instant) -> Vec<OwnedFd> {
        match self.last {
            Some(last) if now.duration_since(last) >= QUIET => {
                self.last = None;
                self.held.drain(..).collect()
            }
            _ => Vec::new(),
        }
    }

    /// When what is held will be due, if anything is.
    pub fn due_at(&self) -> Option<Instant> {
        self.last.map(|last| last + QUIET)
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The park the control connections fill, and the task that empties it when due: it sleeps until then,
/// and not at all while nothing is held.
#[derive(Debug, Default)]
pub struct SharedPark {
    park: RefCell<SocketPark>,
    parked: Notify,
}

impl SharedPark {
    /// Keeps `sockets` (releasing any overflow); whether there were any.
    pub fn park(&self, sockets: Vec<OwnedFd>) -> bool {
        if sockets.is_empty() {
            return false;
        }
        release(self.park.borrow_mut().park(sockets, Instant::now()));
        self.parked.notify_one();
        true
    }

    /// Releases what is held each time it falls due; runs until dropped.
    pub async fn release_when_due(&self) {
        loop {
            let due_at = self.park.borrow().due_at();
            match due_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                // A socket parked before this wait left its permit: no park goes unseen.
                None => self.parked.notified().await,
            }
            release(self.park.borrow_mut().due(Instant::now()));
        }
    }
}

/// Releases `sockets` on the closer thread.
pub fn release(sockets: Vec<OwnedFd>) {
    if !sockets.is_empty() {
        crate::firewall::netlink::socket::release_in_background(Box::new(sockets));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
            .collect()
    }

    #[test]
    fn sockets_are_held_until_none_came_for_the_quiet_period_and_all_go_together_past_the_most() {
        let mut park = SocketPark::default();
        let t0 = Instant::now();
        assert!(park.park(sockets(3), t0).is_empty());
        assert!(park.due(t0 + QUIET / 2).is_empty());
        assert!(park.park(sockets(1), t0 + QUIET / 2).is_empty());
        assert_eq!(park.due_at(), Some(t0 + QUIET / 2 + QUIET));
        // The quiet period runs from the newest socket.
        assert!(park.due(t0 + QUIET).is_empty());
        assert_eq!(park.due(t0 + QUIET / 2 + QUIET).len(), 4);
        assert!(park.is_empty());
        assert_eq!(park.due_at(), None);
        assert!(park.due(t0 + QUIET * 5).is_empty());

        assert!(park.park(sockets(MOST), t0).is_empty());
        assert_eq!(park.len(), MOST);
        assert_eq!(park.park(sockets(1), t0).len(), MOST + 1);
        assert!(park.is_empty());
    }

    #[test]
    fn the_releaser_closes_parked_sockets_once_quiet_and_sleeps_while_none_are_held() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let shared = std::rc::Rc::new(SharedPark::default());
            let releaser = shared.clone();
            tokio::task::spawn_local(async move { releaser.release_when_due().await });
            tokio::task::yield_now().await;
            assert!(!shared.park(Vec::new()));
            assert!(shared.park(sockets(1)));
            tokio::time::sleep(QUIET / 2).await;
            assert_eq!(shared.park.borrow().len(), 1, "held until quiet");
            tokio::time::sleep(QUIET).await;
            assert!(shared.park.borrow().is_empty(), "released once quiet");
            // And again, the releaser having waited with nothing held.
            assert!(shared.park(sockets(2)));
            tokio::time::sleep(QUIET + QUIET / 2).await;
            assert!(shared.park.borrow().is_empty(), "released once quiet again");
        });
    }
}
