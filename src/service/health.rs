//! Health of backends: probes made from a socket inside the backend's own namespace (so they work on
//! every driver, `--internal` networks included, and need no address on the host), and the rise/fall
//! counting that turns probe results into in or out.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::netns::NsWorker;
use crate::state::service::{HealthCheck, HealthTiming};

/// Where a backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet `rise` passes since it appeared: not in the map.
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Probe results in a row, and the verdict they add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub health: Health,
    passes: u32,
    failures: u32,
}

impl Default for HealthState {
    fn default() -> HealthState {
        HealthState {
            health: Health::Starting,
            passes: 0,
            failures: 0,
        }
    }
}

impl HealthState {
    /// Counts one probe; true when the verdict changed.
    pub fn record(&mut self, passed: bool, timing: &HealthTiming) -> bool {
        let before = self.health;
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if self.passes >= timing.rise.max(1) {
                self.health = Health::Healthy;
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            // A backend that never passed stays starting (not in the map either way).
            if self.failures >= timing.fall.max(1) && self.health == Health::Healthy {
                self.health = Health::Unhealthy;
            }
        }
        self.health != before
    }
}

/// What one probe needs.
#[derive(Debug, Clone)]
pub struct Probe {
    pub netns: PathBuf,
    pub addr: IpAddr,
    pub port: u16,
    pub check: HealthCheck,
    pub timeout: Duration,
}

/// Runs one probe: true when the backend passed.
pub async fn run(worker: &NsWorker, probe: Probe) -> bool {
    let v4 = probe.addr.is_ipv4();
    // The socket is made in the backend's namespace and keeps talking there after the worker returns.
    let socket = match worker
        .run_in(&probe.netns, move || {
            if v4 {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
        })
        .await
    {
        Ok(Ok(s)) => s,
        _ => return false,
    };
    let target = SocketAddr::new(probe.addr, probe.port);
    let attempt = async {
        let mut stream = socket.connect(target).await.ok()?;
        let HealthCheck::Http(path) = &probe.check else {
            return Some(true);
        };
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: tetherd-health\r\nConnection: close\r\n\r\n",
            probe.addr
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Some(http_status_ok(&head[..got]))
    };
    matches!(
        tokio::time::timeout(probe.timeout, attempt).await,
        Ok(Some(true))
    )
}

/// `HTTP/1.x 2xx`.
fn http_status_ok(head: &[u8]) -> bool {
    head.len() >= 10 && head.starts_with(b"HTTP/1.") && head[8] == b' ' && head[9] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_brings_in_fall_takes_out() {
        let timing = HealthTiming {
            interval_ms: 100,
            rise: 2,
            fall: 3,
        };
        let mut s = HealthState::default();
        assert!(!s.record(true, &timing));
        assert!(s.record(true, &timing));
        assert_eq!(s.health, Health::Healthy);
        assert!(!s.record(false, &timing));
        assert!(!s.record(false, &timing));
        assert!(s.record(false, &timing));
        assert_eq!(s.health, Health::Unhealthy);
        s.record(true, &timing);
        assert!(s.record(true, &timing));
        assert_eq!(s.health, Health::Healthy);
    }

    #[test]
    fn only_2xx_passes() {
        assert!(http_status_ok(b"HTTP/1.1 204 No"));
        assert!(!http_status_ok(b"HTTP/1.0 500 x"));
        assert!(!http_status_ok(b"SSH-2.0"));
    }
}
