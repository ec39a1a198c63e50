//! A period kept by the kernel (`timerfd`): one wake-up per tick. A tokio interval of seconds sits on an upper
//! level of the runtime's timer wheel and wakes the runtime two more times on its way down to the tick
//! (measured on the 5 s check for gone namespaces: 0.6 wake-ups/s for 0.2 ticks/s), which is most of what a
//! tetherd at rest does.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::kernel_fd;

pub struct PeriodicTimer {
    clock: Clock,
    period: Duration,
}

enum Clock {
    Kernel(AsyncFd<OwnedFd>),
    /// Where no timerfd can be had (or read): the runtime's interval, its extra wake-ups and all.
    Runtime(tokio::time::Interval),
}

impl PeriodicTimer {
    /// Ticks at once, then every `period`.
    pub fn start(period: Duration) -> PeriodicTimer {
        let clock = match timerfd(period) {
            Ok(fd) => Clock::Kernel(fd),
            Err(e) => {
                tracing::warn!(error = %e, "no timerfd; ticking on the runtime's clock");
                Clock::Runtime(runtime_interval(period))
            }
        };
        PeriodicTimer { clock, period }
    }

    /// Waits for the next tick; ticks missed meanwhile count as one.
    pub async fn tick(&mut self) {
        match &mut self.clock {
            Clock::Kernel(fd) => {
                // The count of expirations since the last read: missed ticks count as one.
                let mut expirations = [0u8; 8];
                if let Err(e) = kernel_fd::read(fd, &mut expirations).await {
                    tracing::warn!(error = %e, "reading a timerfd failed; ticking on the runtime's clock");
                    self.clock = Clock::Runtime(runtime_interval(self.period));
                }
            }
            Clock::Runtime(interval) => {
                interval.tick().await;
            }
        }
    }
}

fn runtime_interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

fn timerfd(period: Duration) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: timerfd_create returns a new descriptor or -1.
    let fd = kernel_fd::register(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    let spec = libc::itimerspec {
        it_interval: timespec(period),
        // An all-zero value would disarm the timer: the first tick a nanosecond from now.
        it_value: libc::timespec {
            tv_sec: 0,
            tv_nsec: 1,
        },
    };
    // SAFETY: fd is a timerfd and spec a valid itimerspec; the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn timespec(d: Duration) -> libc::timespec {
    // The fields' own types: libc's `time_t` alias is deprecated on musl (it becomes 64-bit there).
    libc::timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn it_ticks_at_once_then_every_period() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // The first tick long before the first period would end.
            let mut slow = PeriodicTimer::start(Duration::from_secs(600));
            assert!(matches!(slow.clock, Clock::Kernel(_)));
            let first = tokio::time::timeout(Duration::from_secs(60), slow.tick()).await;
            assert!(first.is_ok(), "the first tick comes at once");
            let period = Duration::from_millis(50);
            let mut timer = PeriodicTimer::start(period);
            let started = Instant::now();
            for _ in 0..3 {
                timer.tick().await;
            }
            assert!(
                started.elapsed() >= period * 2,
                "three ticks take two periods at least"
            );
        });
    }
}
