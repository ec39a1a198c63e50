//! The control plane as a tetherd service: started with the daemon when its config has an `"overlay"`
//! section, told on every record change (and answering once the change is published), needed while this
//! host has overlay attachments.

use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::agent::ControlPlane;
use super::config::PeerConfig;
use super::remote_names;
use crate::daemon::{RecordSnapshot, Service, ServiceContext};
use crate::state::{AttachmentRecord, DriverKind};

/// How long a notify waits for the rescan that publishes it.
const REFRESH_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct OverlayService {
    plane: Option<ControlPlane>,
}

impl OverlayService {
    pub fn new() -> OverlayService {
        OverlayService::default()
    }
}

impl Service for OverlayService {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> LocalBoxFuture<'a, Result<(), String>> {
        async move {
            let Some(cfg) = PeerConfig::from_section(&ctx.section("overlay")).map_err(|e| e.to_string())? else {
                tracing::info!("no \"overlay\" section in the tetherd config; overlay networks stay host-local");
                return Ok(());
            };
            self.plane = Some(ControlPlane::start(cfg, &ctx.state_dir, &ctx.run_dir).map_err(|e| e.to_string())?);
            Ok(())
        }
        .boxed_local()
    }

    fn on_records_changed<'a>(
        &'a mut self,
        _records: &'a RecordSnapshot,
        _ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        async move {
            // The control plane reads the overlay state directory itself (it needs the claims and network
            // facts too); the wait is a few milliseconds of file reads and one push.
            if let Some(plane) = &self.plane {
                plane.refresh(REFRESH_TIMEOUT);
            }
        }
        .boxed_local()
    }

    /// Other hosts' overlay containers, for the resolver (see `remote_names`).
    fn extra_records(&self, ctx: &ServiceContext) -> Vec<AttachmentRecord> {
        remote_names::load(&ctx.state_dir)
    }

    fn needed(&self, records: &RecordSnapshot) -> bool {
        self.plane.is_some() && records.iter().any(|r| r.driver == DriverKind::Overlay)
    }

    fn stop<'a>(&'a mut self) -> LocalBoxFuture<'a, ()> {
        async move {
            if let Some(plane) = self.plane.take() {
                plane.stop();
            }
        }
        .boxed_local()
    }

    /// `{"cluster": "status"}`, `{"cluster": "forget", "host": "192.0.2.3"}` and
    /// `{"cluster": "rotation", "intervalS": 3600}` (`tether cluster`);
    /// `{"cluster": "network", "network": "NET"}` (`tether inspect` on an overlay).
    fn command(&mut self, command: &serde_json::Value) -> Result<serde_json::Value, String> {
        let Some(plane) = &self.plane else {
            return Err(
                "this tetherd runs no overlay control plane (no \"overlay\" section in its config)"
                    .into(),
            );
        };
        match command["cluster"].as_str() {
            Some("status") => plane
                .cluster_status()
                .ok_or_else(|| "the overlay control plane did not answer".to_string())
                .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string())),
            Some("network") => {
                let network = command["network"]
                    .as_str()
                    .ok_or_else(|| "network needs a network name".to_string())?;
                plane
                    .network_view(network)
                    .ok_or_else(|| "the overlay control plane did not answer".to_string())
                    .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            }
            Some("rotation") => {
                let seconds = command["intervalS"]
                    .as_u64()
                    .filter(|s| *s >= 2)
                    .ok_or_else(|| {
                        "rotation needs an interval of at least 2 seconds".to_string()
                    })?;
                let schedule = plane.set_rotation(std::time::Duration::from_secs(seconds))?;
                serde_json::to_value(schedule).map_err(|e| e.to_string())
            }
            Some("forget") => {
                let host: std::net::IpAddr = command["host"]
                    .as_str()
                    .and_then(|h| h.parse().ok())
                    .ok_or_else(|| "forget needs a host address, e.g. 192.0.2.3".to_string())?;
                let removed = plane.forget(host)?;
                Ok(serde_json::json!({"host": host, "removed": removed}))
            }
            _ => Err(format!("unknown overlay command {command}")),
        }
    }

    fn status(&self) -> serde_json::Value {
        match &self.plane {
            Some(p) => serde_json::to_value(p.status()).unwrap_or_default(),
            None => serde_json::Value::Null,
        }
    }
}
