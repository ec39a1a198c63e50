//! The names of services (docs/services.md): per network, `NAME` and `NAME.NETWORK` answer the VIP (mode
//! vip) or the healthy backends (mode dnsrr), `tasks.NAME` and `tasks.NAME.NETWORK` always the healthy
//! backends. Written by the balancer in tetherd (it knows health), read by the resolver on every query;
//! both run on tetherd's one thread, so a shared cell is enough.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;

use super::index::{network_key, Addresses};

/// Backend answers change as backends come and go: clients must not keep them long.
pub const BACKEND_TTL: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAnswer {
    pub addrs: Addresses,
    /// Backends (not a VIP): answered with at most [`BACKEND_TTL`].
    pub backends: bool,
}

/// One service as the resolver needs it.
#[derive(Debug, Clone)]
pub struct ServiceEntry {
    pub network: String,
    pub name: String,
    /// Empty in dnsrr mode: NAME then answers the backends.
    pub vips: Vec<IpAddr>,
    pub backends: Vec<IpAddr>,
}

fn addresses(ips: &[IpAddr]) -> Addresses {
    let mut a = Addresses::default();
    for ip in ips {
        match ip {
            IpAddr::V4(v4) if !a.v4.contains(v4) => a.v4.push(*v4),
            IpAddr::V6(v6) if !a.v6.contains(v6) => a.v6.push(*v6),
            _ => {}
        }
    }
    a
}

#[derive(Debug, Default)]
pub struct ServiceNames {
    networks: HashMap<String, HashMap<String, ServiceAnswer>>,
}

/// The handle the balancer and the resolver share.
pub type SharedServiceNames = Rc<RefCell<ServiceNames>>;

impl ServiceNames {
    /// Replaces every service name with these.
    pub fn set(&mut self, entries: &[ServiceEntry]) {
        self.networks.clear();
        for e in entries {
            let Some(net) = network_key(&e.network) else {
                continue;
            };
            let name = e.name.to_ascii_lowercase();
            let backends = ServiceAnswer {
                addrs: addresses(&e.backends),
                backends: true,
            };
            let front = if e.vips.is_empty() {
                backends.clone()
            } else {
                ServiceAnswer {
                    addrs: addresses(&e.vips),
                    backends: false,
                }
            };
            let names = self.networks.entry(net.clone()).or_default();
            names.insert(format!("{name}.{net}"), front.clone());
            names.insert(name.clone(), front);
            names.insert(format!("tasks.{name}.{net}"), backends.clone());
            names.insert(format!("tasks.{name}"), backends);
        }
    }

    /// `name` (normalized) among the services of `networks`; answers of several networks are merged.
    pub fn lookup(&self, name: &str, networks: &[String]) -> Option<ServiceAnswer> {
        let mut found: Option<ServiceAnswer> = None;
        for answer in networks
            .iter()
            .filter_map(|n| self.networks.get(n))
            .filter_map(|names| names.get(name))
        {
            match &mut found {
                None => found = Some(answer.clone()),
                Some(all) => {
                    for a in &answer.addrs.v4 {
                        if !all.addrs.v4.contains(a) {
                            all.addrs.v4.push(*a);
                        }
                    }
                    for a in &answer.addrs.v6 {
                        if !all.addrs.v6.contains(a) {
                            all.addrs.v6.push(*a);
                        }
                    }
                    all.backends |= answer.backends;
                }
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_mode_answers_the_vip_and_tasks_the_backends() {
        let mut names = ServiceNames::default();
        names.set(&[
            ServiceEntry {
                network: "N1".into(),
                name: "web".into(),
                vips: vec!["10.96.0.1".parse().unwrap()],
                backends: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
            },
            ServiceEntry {
                network: "n1".into(),
                name: "db".into(),
                vips: vec![],
                backends: vec!["10.0.0.4".parse().unwrap()],
            },
        ]);
        let scope = vec!["n1".to_string()];
        let web = names.lookup("web", &scope).unwrap();
        assert_eq!(
            web.addrs.v4,
            vec!["10.96.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert!(!web.backends);
        assert_eq!(names.lookup("web.n1", &scope), Some(web));
        let tasks = names.lookup("tasks.web", &scope).unwrap();
        assert_eq!(tasks.addrs.v4.len(), 2);
        assert!(tasks.backends);
        assert!(names.lookup("db", &scope).unwrap().backends);
        assert_eq!(names.lookup("web", &["n2".to_string()]), None);
    }
}
