//! Rotation without a leader: every host reads the epoch off its own clock (`unix time / interval`). A
//! host sends with the current epoch's key and receives with the previous, current and next ones: the
//! next key is in place one interval before any peer sends with it, and the previous one stays one
//! interval after, so clocks may disagree by up to an interval and no packet in flight is lost.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub interval: Duration,
}

impl Rotation {
    /// The epoch `now` falls in.
    pub fn epoch_at(&self, now: SystemTime) -> u64 {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        (secs / self.interval.as_millis().max(1)) as u64
    }

    /// When the epoch after `epoch` starts.
    pub fn next_start(&self, epoch: u64) -> SystemTime {
        let millis = self.interval.as_millis().max(1) as u64;
        UNIX_EPOCH + Duration::from_millis((epoch + 1).saturating_mul(millis))
    }
}

/// The epochs a host receives in while `epoch` sends.
pub fn receiving(epoch: u64) -> [u64; 3] {
    [epoch.saturating_sub(1), epoch, epoch + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_the_clock_and_the_interval() {
        let r = Rotation {
            interval: Duration::from_secs(10),
        };
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(r.epoch_at(at(0)), 0);
        assert_eq!(r.epoch_at(at(9)), 0);
        assert_eq!(r.epoch_at(at(10)), 1);
        assert_eq!(r.epoch_at(at(43_210)), 4321);
        assert_eq!(r.next_start(4321), at(43_220));
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
}
