//! The end of every interface driver's ADD: the attachment record on disk, tetherd told, the result's
//! interfaces and `dns`. The record goes first (tetherd and the next DEL read it), then the rollback is
//! dropped, then tetherd is told: without a tetherd the container keeps the runtime's resolvers rather
//! than a resolver that never answers.

use ipnetwork::IpNetwork;

use crate::client::notify::attachment_added;
use crate::cni::plugin::Call;
use crate::cni::result::{Dns, Interface};
use crate::driver::call_config::CallConfig;
use crate::driver::dns_endpoint::{EmbeddedDns, EndpointNames, PreparedResolver, ResolverHandover};
use crate::driver::rollback::Rollback;
use crate::error::Error;
use crate::ifname::IfName;
use crate::link::MacAddr;
use crate::netns::NetNs;
use crate::state::{AttachmentRecord, DriverKind, NetworkLock, RecordDir};
use std::os::fd::BorrowedFd;

/// What the driver made, for the record.
pub struct Made {
    pub driver: DriverKind,
    /// The host-side interface (or, for macvlan, the parent) and the bridge it hangs on.
    pub host_ifname: Option<IfName>,
    pub bridge: Option<IfName>,
    pub mac: Option<MacAddr>,
    pub macspoofchk: bool,
    /// The addresses tetherd publishes and DNS answers.
    pub ips: Vec<IpNetwork>,
}

/// How a finished ADD tells tetherd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// Only when the network's embedded DNS is on (nothing else of tetherd needs the attachment).
    WhenDnsOn,
    /// Always (the overlay's control plane publishes every attachment).
    Always,
}

pub struct Finish<'a, 'r> {
    pub call: &'a Call,
    pub netns: &'a NetNs,
    pub names: &'a EndpointNames,
    pub dns: &'a EmbeddedDns,
    pub rollback: Rollback<'r>,
    /// The network lock the ADD held since before it joined shared devices; released once the record is
    /// written, so a last DEL's teardown sees this attachment.
    pub lock: Option<NetworkLock>,
    pub notify: Notify,
}

impl<'a, 'r> Finish<'a, 'r> {
    /// Notifies tetherd only when DNS is on, holds no lock: change with [`Finish::holding`] and
    /// [`Finish::notifying`].
    pub fn new<C, I>(
        call: &'a Call,
        netns: &'a NetNs,
        cfg: &'a CallConfig<C, I>,
        rollback: Rollback<'r>,
    ) -> Finish<'a, 'r> {
        Finish {
            call,
            netns,
            names: &cfg.names,
            dns: &cfg.dns,
            rollback,
            lock: None,
            notify: Notify::WhenDnsOn,
        }
    }

    pub fn holding(self, lock: NetworkLock) -> Self {
        Finish {
            lock: Some(lock),
            ..self
        }
    }

    pub fn notifying(self, notify: Notify) -> Self {
        Finish { notify, ..self }
    }
}

/// ADD and CHECK always have CNI_CONTAINERID and CNI_IFNAME (`Env` refuses them without).
fn no_container() -> Error {
    Error::env("CNI_CONTAINERID and CNI_IFNAME are required to keep an attachment")
}

/// Writes the record and keeps the ADD (drops the lock, then the undos).
pub fn keep<'a>(f: Finish<'a, '_>, made: Made) -> Result<Kept<'a>, Error> {
    let net = f.call.conf.name.as_str();
    let PreparedResolver {
        own_resolver,
        handover,
    } = f.dns.prepare_resolver(f.netns);
    tracing::trace!(own_resolver, "container's port 53 probed");
    RecordDir::for_network(net).write(&AttachmentRecord {
        network: net.to_string(),
        container_id: f.call.env.container_id.clone().ok_or_else(no_container)?,
        ifname: f.call.env.ifname.clone().ok_or_else(no_container)?,
        driver: made.driver,
        netns: f.call.env.netns.clone(),
        netns_id: f.netns.id().ok(),
        host_ifname: made.host_ifname,
        bridge: made.bridge,
        mac: made.mac,
        macspoofchk: made.macspoofchk,
        ips: made.ips,
        name: f.names.name.clone(),
        aliases: f.names.aliases.clone(),
        dns: f.dns.enabled,
        internal: f.dns.internal,
        own_resolver,
        remote: None,
    })?;
    drop(f.lock);
    f.rollback.commit();
    Ok(Kept {
        call: f.call,
        dns: f.dns,
        notify: f.notify,
        own_resolver,
        handover,
    })
}

/// A kept ADD, not yet announced.
pub struct Kept<'a> {
    call: &'a Call,
    dns: &'a EmbeddedDns,
    notify: Notify,
    own_resolver: bool,
    handover: Option<ResolverHandover>,
}

impl Kept<'_> {
    /// Tells tetherd; returns the result's `dns` built on `base` (the network's or IPAM's).
    pub fn announce(self, base: Dns) -> Dns {
        self.announce_carrying(base, None).0
    }

    /// [`Kept::announce`], handing tetherd a reference to the plugin's nf_tables socket with the notify;
    /// also whether tetherd kept it.
    pub fn announce_carrying(self, base: Dns, socket: Option<BorrowedFd>) -> (Dns, bool) {
        tracing::trace!("attachment recorded");
        let net = self.call.conf.name.as_str();
        let (container_id, ifname) = (self.call.container_id(), self.call.ifname());
        let notify = self.notify == Notify::Always || self.dns.enabled;
        let mut sockets: Vec<BorrowedFd> = socket.into_iter().collect();
        if let Some(h) = &self.handover {
            sockets.extend(h.descriptors());
        }
        let notified = notify.then(|| attachment_added(net, container_id, ifname, &sockets));
        let resolver_up = self.dns.enabled && notified.is_some_and(|n| n.served);
        let dns = self.dns.result_dns(resolver_up && !self.own_resolver, base);
        (dns, notified.is_some_and(|n| n.socket_parked))
    }
}

/// An interface of the result.
pub fn result_interface(name: &str, mac: Option<MacAddr>) -> Interface {
    Interface {
        name: name.to_string(),
        mac: mac.map(|m| m.to_string()),
        ..Interface::default()
    }
}

/// The container's interface in the result: its namespace, MTU and MAC.
pub fn sandbox_interface(call: &Call, name: &str, mac: Option<MacAddr>, mtu: u32) -> Interface {
    Interface {
        sandbox: call.env.netns.as_ref().map(|p| p.display().to_string()),
        mtu: Some(mtu),
        ..result_interface(name, mac)
    }
}
