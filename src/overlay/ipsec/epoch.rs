//! Rotation without a leader: every host reads the epoch off its own clock and the cluster's schedule
//! (in the store, so every host numbers epochs alike). A host sends with the current epoch's key and
//! receives with the previous, current and next ones: the next key is in place one interval before any
//! peer sends with it, and the previous one stays one interval after, so clocks may disagree by up to an
//! interval and no packet in flight is lost. A new interval takes effect at an epoch boundary at least one
//! old interval ahead, and numbering goes on from there, so hosts that hear of it at different moments
//! still agree on every epoch.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state_file::{self, StateFileError};

/// One numbering of epochs: from `anchor_ms` (unix milliseconds) on, epoch `anchor_epoch + elapsed /
/// interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub interval_ms: u64,
    pub anchor_ms: u64,
    pub anchor_epoch: u64,
}

fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Rotation {
    /// Epochs of `interval` counted from the unix epoch.
    pub fn every(interval: Duration) -> Rotation {
        Rotation {
            interval_ms: (interval.as_millis() as u64).max(1),
            anchor_ms: 0,
            anchor_epoch: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    fn epoch_at_ms(&self, ms: u64) -> u64 {
        let interval = self.interval_ms.max(1);
        match ms.checked_sub(self.anchor_ms) {
            Some(elapsed) => self.anchor_epoch + elapsed / interval,
            None => self
                .anchor_epoch
                .saturating_sub((self.anchor_ms - ms).div_ceil(interval)),
        }
    }

    /// The epoch `now` falls in.
    pub fn epoch_at(&self, now: SystemTime) -> u64 {
        self.epoch_at_ms(unix_ms(now))
    }

    /// When `epoch` starts, in unix milliseconds.
    pub fn start_ms(&self, epoch: u64) -> u64 {
        let after = epoch.saturating_sub(self.anchor_epoch);
        self.anchor_ms + after.saturating_mul(self.interval_ms.max(1))
    }
}

/// The cluster's rotation: the numbering in force from `current.anchor_ms` on, the one before it until
/// then, and when it was set. Every host keeps a copy in the store; the greatest (latest set) wins
/// everywhere, so all agree once the copies have spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Unix milliseconds; 0 for a host's configured interval at its first start.
    pub set_at_ms: u64,
    pub current: Rotation,
    pub previous: Option<Rotation>,
}

impl Schedule {
    /// A host's configured rotation, as it enters an empty store.
    pub fn configured(rotation: Rotation) -> Schedule {
        Schedule {
            set_at_ms: 0,
            current: rotation,
            previous: None,
        }
    }

    /// The numbering in force at `ms`.
    pub fn in_force(&self, ms: u64) -> Rotation {
        match self.previous {
            Some(previous) if ms < self.current.anchor_ms => previous,
            _ => self.current,
        }
    }

    /// The epoch `now` falls in.
    pub fn epoch_at(&self, now: SystemTime) -> u64 {
        let ms = unix_ms(now);
        self.in_force(ms).epoch_at_ms(ms)
    }

    /// `interval` set at `now`: in force from the start of the epoch after next (at least one interval in
    /// force ahead, for the copies to spread), numbered on from there.
    pub fn with_interval(&self, interval: Duration, now: SystemTime) -> Schedule {
        let ms = unix_ms(now);
        let in_force = self.in_force(ms);
        let epoch = in_force.epoch_at_ms(ms) + 2;
        Schedule {
            set_at_ms: ms.max(self.set_at_ms + 1),
            current: Rotation {
                interval_ms: (interval.as_millis() as u64).max(1),
                anchor_ms: in_force.start_ms(epoch),
                anchor_epoch: epoch,
            },
            previous: Some(in_force),
        }
    }
}

fn copy_path(state_dir: &Path) -> PathBuf {
    state_dir.join("overlay-rotation.json")
}

/// `<state>/overlay-rotation.json`: this host's copy of the cluster's schedule, which it publishes (a host
/// that starts again republishes it instead of its config's interval).
pub fn read_copy(state_dir: &Path) -> Option<Schedule> {
    state_file::read_json(&copy_path(state_dir)).ok().flatten()
}

pub fn write_copy(state_dir: &Path, schedule: &Schedule) -> Result<(), StateFileError> {
    state_file::write_json(&copy_path(state_dir), schedule)
}

/// The epochs a host receives in while `epoch` sends.
pub fn receiving(epoch: u64) -> [u64; 3] {
    [epoch.saturating_sub(1), epoch, epoch + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn epochs_follow_the_clock_and_the_interval() {
        let r = Rotation::every(Duration::from_secs(10));
        assert_eq!(r.epoch_at(at(0)), 0);
        assert_eq!(r.epoch_at(at(9_999)), 0);
        assert_eq!(r.epoch_at(at(10_000)), 1);
        assert_eq!(r.epoch_at(at(43_210_000)), 4321);
        assert_eq!(r.start_ms(4322), 43_220_000);
    }

    #[test]
    fn the_next_key_receives_an_interval_early_and_the_old_one_an_interval_late() {
        // A sender one epoch ahead or behind is still understood.
        for sender in [4, 5, 6] {
            assert!(receiving(5).contains(&sender));
        }
        assert!(!receiving(5).contains(&7));
        assert!(!receiving(5).contains(&3));
    }

    #[test]
    fn a_new_interval_starts_at_a_boundary_an_interval_ahead_and_numbering_goes_on() {
        let old = Schedule::configured(Rotation::every(Duration::from_secs(10)));
        // Set at 1234.5 s, in epoch 123: in force from epoch 125, at 1250 s.
        let new = old.with_interval(Duration::from_secs(2), at(1_234_500));
        assert_eq!(new.current.anchor_ms, 1_250_000);
        assert_eq!(new.current.anchor_epoch, 125);
        assert!(new > old, "the later setting wins");
        // A host that has it and one that has not agree on every epoch until the new one takes over.
        for ms in [1_234_500, 1_240_000, 1_249_999] {
            assert_eq!(new.epoch_at(at(ms)), old.epoch_at(at(ms)), "at {ms}");
        }
        assert_eq!(new.epoch_at(at(1_250_000)), 125);
        assert_eq!(new.epoch_at(at(1_251_999)), 125);
        assert_eq!(new.epoch_at(at(1_252_000)), 126);
        assert_eq!(new.epoch_at(at(1_260_000)), 130);
        // Epochs never go back across the change.
        let mut last = new.epoch_at(at(1_200_000));
        for ms in (1_200_000..1_300_000).step_by(250) {
            let e = new.epoch_at(at(ms));
            assert!(e >= last && e <= last + 1, "at {ms}: {last} then {e}");
            last = e;
        }
    }

    #[test]
    fn the_copy_round_trips_through_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("tether-rotation-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_copy(&dir), None);
        let s = Schedule::configured(Rotation::every(Duration::from_secs(30)))
            .with_interval(Duration::from_secs(5), at(99_000));
        write_copy(&dir, &s).unwrap();
        assert_eq!(read_copy(&dir), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_change_before_the_first_took_effect_replaces_it() {
        let old = Schedule::configured(Rotation::every(Duration::from_secs(10)));
        let first = old.with_interval(Duration::from_secs(2), at(1_234_500));
        let second = first.with_interval(Duration::from_secs(60), at(1_236_000));
        assert_eq!(second.previous, Some(old.current));
        assert_eq!(second.current.anchor_ms, 1_250_000);
        assert_eq!(second.epoch_at(at(1_310_000)), 126);
        assert!(second > first);
    }
}
