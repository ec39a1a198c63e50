//! The seam between the daemon and what it serves. The daemon owns the lifecycle (start, record changes,
//! idle exit, stop); a service owns one protocol (the DNS resolver, the overlay control plane) and is
//! driven only through this trait, on the daemon's single-threaded runtime. The daemon knows no service by
//! name: `bins/tetherd.rs` hands it the list.

use std::cell::Cell;
use std::path::PathBuf;

use futures::future::LocalBoxFuture;

use super::config::DaemonConfig;
use super::records::RecordSnapshot;
use crate::client::protocol::AttachmentKey;
use crate::netns::NsId;
use crate::netns::NsWorker;
use crate::resolver_sockets::ResolverSockets;
use crate::state::AttachmentRecord;

/// One record a plugin's notify named (re-read, or gone), with what the plugin handed over for it.
pub struct RecordChange {
    pub network: String,
    pub attachment: AttachmentKey,
    /// The resolver's sockets the plugin made in the container's namespace, with the redirect to them
    /// (`resolver_sockets`); the resolver takes them when it starts serving that namespace, else they
    /// are closed after the change.
    pub resolver_sockets: Cell<Option<ResolverSockets>>,
}

impl RecordChange {
    pub fn new(network: String, attachment: AttachmentKey) -> RecordChange {
        RecordChange {
            network,
            attachment,
            resolver_sockets: Cell::new(None),
        }
    }
}

/// What every service gets from the daemon.
#[derive(Clone)]
pub struct ServiceContext {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub config: DaemonConfig,
    /// The thread that may enter namespaces; never call `setns` anywhere else.
    pub ns_worker: NsWorker,
}

impl ServiceContext {
    /// The service's own section of the config file, unparsed (`Null` when absent).
    pub fn section(&self, service: &str) -> serde_json::Value {
        self.config.section(service)
    }
}

pub trait Service {
    /// Short and stable: names the config section and appears in logs and status.
    fn name(&self) -> &'static str;

    /// Called once before the first records arrive. An error stops the daemon from starting.
    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> LocalBoxFuture<'a, Result<(), String>>;

    /// The records changed (or were read at start). Returns once the service has caught up, so the plugin
    /// that notified knows the new endpoint is served when its notify is answered.
    fn on_records_changed<'a>(
        &'a mut self,
        records: &'a RecordSnapshot,
        ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()>;

    /// Only the records named in `changed` changed since the last call: each one is in `records` again, or
    /// gone. A service that can update in place avoids work that grows with the number of containers; the
    /// default treats it as any change.
    fn on_records_refreshed<'a>(
        &'a mut self,
        records: &'a RecordSnapshot,
        changed: &'a [RecordChange],
        ctx: &'a ServiceContext,
    ) -> LocalBoxFuture<'a, ()> {
        let _ = changed;
        self.on_records_changed(records, ctx)
    }

    /// Records this service adds to the snapshot every service sees, read again on every full reload (the
    /// overlay adds other hosts' containers, so the resolver answers their names). None by default.
    fn extra_records(&self, ctx: &ServiceContext) -> Vec<AttachmentRecord> {
        let _ = ctx;
        Vec::new()
    }

    /// Whether these records still need this service; when no service does, the daemon exits after its
    /// idle grace.
    fn needed(&self, records: &RecordSnapshot) -> bool;

    /// These namespaces are gone, but what tether holds for their containers could not be released (see
    /// `namespace_watch`): let go of anything the service keeps inside them, as a socket there keeps the
    /// namespace alive.
    fn on_namespaces_gone(&mut self, gone: &[NsId]) {
        let _ = gone;
    }

    /// The daemon is exiting.
    fn stop<'a>(&'a mut self) -> LocalBoxFuture<'a, ()>;

    /// A command sent to this service by name (`Request::Service`); none by default.
    fn command(&mut self, command: &serde_json::Value) -> Result<serde_json::Value, String> {
        Err(format!("{} takes no commands (got {command})", self.name()))
    }

    /// A JSON summary for `tetherd status`.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
