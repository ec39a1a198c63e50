//! What an interface plugin (tether-bridge, tether-macvlan, tether-overlay) records for tetherd's DNS, and
//! the `dns` it puts in its result: one place, so every driver resolves names the same way.
//!
//! Names come from the runtime: the container's name from CNI_ARGS `K8S_POD_NAME` (podman and tether's CLI
//! pass the container name there, containerd the pod name), aliases from the `aliases` capability, which
//! podman sends as a map keyed by network name; a plain list is accepted too.

use std::net::SocketAddrV4;
use std::os::fd::BorrowedFd;

use serde::Deserialize;
use serde_json::Value;

use crate::cni::plugin::Call;
use crate::cni::result::Dns;
use crate::error::Error;
use crate::firewall::netlink::socket::NfSocket;
use crate::firewall::FirewallError;
use crate::netns::bound_sockets;
use crate::netns::NetNs;
use crate::resolver_sockets::ResolverSockets;

pub use crate::resolv_conf::{RESOLVER_ADDRESS, RESOLVER_IP};

/// The network-level DNS switches, read from the plugin's config. `dns` itself is the CNI spec's
/// resolv.conf object, so tether's switch has its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedDns {
    /// `embeddedDns` (default true): serve the resolver to this network's containers.
    pub enabled: bool,
    /// `internal` (default false): answer the network's names but forward nothing to the host's resolvers.
    pub internal: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEmbeddedDns {
    embedded_dns: Option<bool>,
    #[serde(default)]
    internal: bool,
}

impl EmbeddedDns {
    pub fn from_conf(raw: &Value) -> Result<EmbeddedDns, Error> {
        let r: RawEmbeddedDns = serde_json::from_value(raw.clone()).map_err(|e| {
            Error::config(format!(
                "invalid `embeddedDns`/`internal`: {e}; both are true or false"
            ))
        })?;
        Ok(EmbeddedDns {
            enabled: r.embedded_dns.unwrap_or(true),
            internal: r.internal,
        })
    }

    /// The result's `dns`: with the resolver on, containers ask 127.0.0.11 only (it forwards the rest);
    /// search domains and options the runtime or IPAM gave are kept.
    /// `resolver_up`: whether tetherd answered the notify (without it, the runtime's resolvers are kept
    /// rather than a resolver that never answers).
    /// Whether the container already holds 127.0.0.11:53 itself (a socket bound to exactly that address,
    /// not a wildcard one): then tether's resolver stays out of its namespace and the result keeps the
    /// runtime's resolvers. Read from the kernel's socket tables inside the namespace; a namespace whose
    /// tables cannot be read is taken as not holding it.
    ///
    /// Otherwise, while inside, the resolver's sockets are made there with the redirect to them, for
    /// tetherd to serve: it then need not enter the namespace itself before it answers the notify (its
    /// namespace thread, a redirect of its own, two thread hand-offs on the ADD's path). Where a redirect
    /// is there already (tetherd serves the namespace for another network) nothing is made; where any step
    /// fails, tetherd makes its own as before.
    pub fn prepare_resolver(&self, ns: &NetNs) -> PreparedResolver {
        let mut prepared = PreparedResolver::default();
        if !self.enabled {
            return prepared;
        }
        let resolver = SocketAddrV4::new(RESOLVER_IP, 53);
        let inside = ns.run(|| {
            let held = bound_sockets::held_exactly(resolver);
            let handover = match held {
                Ok(false) => Some(ResolverHandover::make()),
                _ => None,
            };
            (held, handover)
        });
        match inside {
            Ok((held, handover)) => {
                prepared.own_resolver = match held {
                    Ok(held) => held,
                    Err(e) => {
                        tracing::debug!(error = %e, "reading the container's socket tables failed");
                        false
                    }
                };
                if prepared.own_resolver {
                    tracing::info!(
                        netns = %ns.path().display(),
                        "the container holds 127.0.0.11:53 itself; tether's resolver stays out of it"
                    );
                }
                prepared.handover = match handover {
                    Some(Ok(h)) => Some(h),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "resolver sockets not made; tetherd makes its own");
                        None
                    }
                    None => None,
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, "entering the container namespace to probe port 53 failed")
            }
        }
        prepared
    }

    pub fn result_dns(&self, resolver_up: bool, base: Dns) -> Dns {
        if !self.enabled || !resolver_up {
            return base;
        }
        Dns {
            nameservers: vec![RESOLVER_ADDRESS.to_string()],
            ..base
        }
    }
}

/// What ADD learnt and made for the resolver inside the container's namespace.
#[derive(Debug, Default)]
pub struct PreparedResolver {
    /// The container holds 127.0.0.11:53 itself.
    pub own_resolver: bool,
    pub handover: Option<ResolverHandover>,
}

/// What the plugin hands tetherd with its notify (`SCM_RIGHTS`).
#[derive(Debug)]
pub struct ResolverHandover {
    /// The nf_tables socket that made (or found) the redirect: tetherd keeps it too, so this process's
    /// release is not the last one (see `firewall::Firewall::socket_fd`).
    firewall: NfSocket,
    /// The sockets the new redirect points at; none when the namespace had a redirect already.
    sockets: Option<ResolverSockets>,
}

impl ResolverHandover {
    /// In the calling thread's namespace: the sockets, then the redirect to them unless one is there.
    fn make() -> Result<ResolverHandover, HandoverError> {
        let sockets = ResolverSockets::bind().map_err(HandoverError::Bind)?;
        let redirect = sockets.redirect().map_err(HandoverError::Bind)?;
        let (created, firewall) = redirect.create()?;
        Ok(ResolverHandover {
            firewall,
            sockets: created.then_some(sockets),
        })
    }

    /// The descriptors to hand over: the nf_tables socket, then the resolver's two when they were made.
    pub fn descriptors(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.firewall.as_fd()];
        if let Some(s) = &self.sockets {
            fds.extend(s.descriptors());
        }
        fds
    }
}

/// Why no sockets were made (logged only: tetherd then makes its own).
#[derive(Debug, thiserror::Error)]
enum HandoverError {
    #[error("binding the resolver's sockets on 127.0.0.11: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Redirect(#[from] FirewallError),
}

/// The names a container answers to on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointNames {
    pub name: Option<String>,
    pub aliases: Vec<String>,
}

impl EndpointNames {
    pub fn from_call(call: &Call) -> EndpointNames {
        let name = call
            .env
            .arg("K8S_POD_NAME")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let aliases = call
            .conf
            .runtime_config
            .aliases
            .as_ref()
            .map(|v| aliases_for(v, &call.conf.name))
            .unwrap_or_default();
        EndpointNames { name, aliases }
    }
}

/// The aliases for `network` in the capability's value: `{"net": ["a","b"]}` or `["a","b"]`.
fn aliases_for(value: &Value, network: &str) -> Vec<String> {
    let list = match value {
        Value::Array(items) => items.as_slice(),
        // The capability's keys were lower-cased with the rest of runtimeConfig; network names are matched
        // the same way.
        Value::Object(map) => match map.get(&network.to_ascii_lowercase()) {
            Some(Value::Array(items)) => items.as_slice(),
            _ => &[],
        },
        _ => &[],
    };
    list.iter()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aliases_come_from_the_map_entry_of_this_network_or_a_plain_list() {
        let by_net = json!({"net1": ["web", "www"], "other": ["x"]});
        assert_eq!(aliases_for(&by_net, "net1"), vec!["web", "www"]);
        assert_eq!(aliases_for(&by_net, "NET1"), vec!["web", "www"]);
        assert!(aliases_for(&by_net, "net2").is_empty());
        assert_eq!(aliases_for(&json!(["a", "", 3]), "n"), vec!["a"]);
    }

    #[test]
    fn resolver_is_on_by_default_and_replaces_nameservers_only() {
        let d = EmbeddedDns::from_conf(&json!({"type": "tether-bridge"})).unwrap();
        assert!(d.enabled && !d.internal);
        let base = Dns {
            nameservers: vec!["8.8.8.8".into()],
            search: vec!["example.com".into()],
            ..Dns::default()
        };
        let out = d.result_dns(true, base.clone());
        assert_eq!(out.nameservers, vec!["127.0.0.11"]);
        assert_eq!(out.search, base.search);
        let off = EmbeddedDns::from_conf(&json!({"embeddedDns": false, "internal": true})).unwrap();
        assert!(!off.enabled && off.internal);
        assert_eq!(off.result_dns(true, base.clone()), base);
        assert_eq!(
            EmbeddedDns::from_conf(&json!({"embeddedDns": "no"}))
                .unwrap_err()
                .code(),
            7
        );
    }
}
