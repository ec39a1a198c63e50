//! The order of an ADD's link steps and of their undos, proved on a recording fake of `LinkOps` (no root, no
//! kernel): what fails undoes exactly what came before it, in reverse. The real kernel runs the same steps in
//! the integration tests (`integration/bridge.rs`, `bad_input.rs`).

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;

use ipnetwork::IpNetwork;
use serde_json::json;

use super::*;
use crate::cni::config::NetConf;
use crate::cni::env::Env;
use crate::cni::result::IpConfig;
use crate::link::{IpFamily, LinkError, RouteInfo, VethSpec};

type Log = Rc<RefCell<Vec<String>>>;

/// One namespace's links as the fake keeps them; every call is logged as "op argument", and the call named
/// `fail_at` fails as the kernel would.
struct FakeLinks {
    who: &'static str,
    log: Log,
    links: RefCell<Vec<LinkInfo>>,
    fail_at: &'static str,
}

impl FakeLinks {
    fn new(who: &'static str, log: &Log, links: Vec<LinkInfo>, fail_at: &'static str) -> FakeLinks {
        FakeLinks {
            who,
            log: log.clone(),
            links: RefCell::new(links),
            fail_at,
        }
    }

    fn call(&self, op: &'static str, object: impl ToString) -> Result<(), LinkError> {
        let object = object.to_string();
        self.log
            .borrow_mut()
            .push(format!("{}: {op} {object}", self.who));
        if op == self.fail_at {
            return Err(LinkError::Netlink {
                op,
                object,
                source: io::Error::other("injected failure"),
            });
        }
        Ok(())
    }

    fn add_link(&self, name: &str, master: Option<u32>) -> LinkInfo {
        let mut links = self.links.borrow_mut();
        let link = link(name, 10 + links.len() as u32, master);
        links.push(link.clone());
        link
    }
}

fn link(name: &str, index: u32, master: Option<u32>) -> LinkInfo {
    LinkInfo {
        index,
        name: name.to_string(),
        mac: Some(MacAddr::from_name(name)),
        mtu: 1500,
        up: false,
        master,
        kind: None,
        group: 0,
    }
}

impl LinkOps for FakeLinks {
    fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>, LinkError> {
        self.call("link_by_name", name)?;
        Ok(self.links.borrow().iter().find(|l| l.name == name).cloned())
    }
    fn links(&self) -> Result<Vec<LinkInfo>, LinkError> {
        self.call("links", "")?;
        Ok(self.links.borrow().clone())
    }
    fn delete_link_by_name(&self, name: &str) -> Result<bool, LinkError> {
        self.call("delete", name)?;
        let mut links = self.links.borrow_mut();
        let before = links.len();
        links.retain(|l| l.name != name);
        Ok(links.len() != before)
    }
    fn set_up(&self, index: u32) -> Result<(), LinkError> {
        self.call("set_up", index)
    }
    fn set_up_by_name(&self, name: &str) -> Result<(), LinkError> {
        self.call("set_up", name)
    }
    fn ensure_bridge_noting_creation(
        &self,
        name: &str,
        _mtu: Option<u32>,
        _mac: MacAddr,
    ) -> Result<(LinkInfo, bool), LinkError> {
        self.call("ensure_bridge", name)?;
        let existing = self.links.borrow().iter().find(|l| l.name == name).cloned();
        Ok(match existing {
            Some(bridge) => (bridge, false),
            None => (self.add_link(name, None), true),
        })
    }
    fn set_promisc(&self, index: u32, _on: bool) -> Result<(), LinkError> {
        self.call("set_promisc", index)
    }
    fn set_hairpin(&self, index: u32, _on: bool) -> Result<(), LinkError> {
        self.call("set_hairpin", index)
    }
    fn set_isolated(&self, index: u32, _on: bool) -> Result<(), LinkError> {
        self.call("set_isolated", index)
    }
    fn add_veth_down(&self, spec: &VethSpec<'_>) -> Result<(), LinkError> {
        self.call("add_veth", spec.host_name)?;
        self.add_link(spec.host_name, spec.host_master);
        Ok(())
    }
    fn skip_ipv6_link_local(&self, index: u32) -> Result<(), LinkError> {
        self.call("skip_ipv6_link_local", index)
    }
    fn add_address(&self, _index: u32, address: IpNetwork, _nodad: bool) -> Result<(), LinkError> {
        self.call("add_address", address)
    }
    fn try_add_address(
        &self,
        _index: u32,
        address: IpNetwork,
        _nodad: bool,
    ) -> Result<bool, LinkError> {
        self.call("add_address", address).map(|()| true)
    }
    fn addresses(&self, index: u32) -> Result<Vec<IpNetwork>, LinkError> {
        self.call("addresses", index).map(|()| Vec::new())
    }
    fn del_address(&self, _index: u32, address: IpNetwork) -> Result<bool, LinkError> {
        self.call("del_address", address).map(|()| true)
    }
    fn add_route(
        &self,
        dst: IpNetwork,
        _gw: Option<IpAddr>,
        _oif: Option<u32>,
        _mtu: Option<u32>,
    ) -> Result<(), LinkError> {
        self.call("add_route", dst)
    }
    fn routes(&self, _family: IpFamily) -> Result<Vec<RouteInfo>, LinkError> {
        self.call("routes", "").map(|()| Vec::new())
    }
    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), LinkError> {
        self.call("sysctl", format!("{key}={value}"))
    }
}

const HOST_IF: &str = "tv-fake";

fn call() -> Call {
    let conf = json!({"cniVersion": "1.1.0", "name": "net1", "type": "tether-bridge",
                      "bridge": "tb-fake", "isDefaultGateway": true,
                      "ipam": {"type": "tether-ipam", "subnet": "10.88.0.0/16"}});
    let vars = |name: &str| {
        let value = match name {
            "CNI_COMMAND" => "ADD",
            "CNI_CONTAINERID" => "c1",
            "CNI_NETNS" => "/proc/self/ns/net",
            "CNI_IFNAME" => "eth0",
            _ => return None,
        };
        Some(value.to_string())
    };
    let conf = NetConf::parse(conf.to_string().as_bytes()).expect("valid config");
    Call::new(Env::from_vars(vars).expect("valid env"), conf, Vec::new()).expect("typed call")
}

fn leased() -> CniResult {
    CniResult {
        ips: vec![IpConfig {
            address: "10.88.0.2/16".parse().unwrap(),
            gateway: Some("10.88.0.1".parse().unwrap()),
            interface: None,
        }],
        ..CniResult::default()
    }
}

/// Runs the link steps with the host failing at `host_fails` or the container at `inner_fails`, after a
/// lease whose undo is logged too; returns the log from the failure on (the undos) and the error.
fn run(
    host_links: Vec<LinkInfo>,
    host_fails: &'static str,
    inner_fails: &'static str,
) -> (Vec<String>, Error) {
    let log: Log = Rc::default();
    let host = FakeLinks::new("host", &log, host_links, host_fails);
    let inner = FakeLinks::new("container", &log, vec![link("eth0", 2, None)], inner_fails);
    let (call, ns) = (
        call(),
        NetNs::open("/proc/self/ns/net").expect("own namespace"),
    );
    let cfg = BridgeConfig::from_json(&call.conf.raw).expect("valid bridge config");
    let leased = leased();
    let error = {
        let mut rollback = Rollback::new();
        let lease_log = log.clone();
        rollback.push("ipam lease", move || {
            lease_log.borrow_mut().push("ipam: release lease".into());
            Ok(())
        });
        connect(
            (&host, &inner),
            &call,
            &cfg,
            (&ns, HOST_IF),
            &leased,
            &mut rollback,
        )
        .err()
        .expect("the injected failure fails the ADD")
    };
    let log = log.borrow().clone();
    let failed = log
        .iter()
        .position(|l| {
            l.starts_with(&format!("host: {host_fails} "))
                || l.starts_with(&format!("container: {inner_fails} "))
        })
        .expect("the failing call was made");
    let undos = log[failed + 1..]
        .iter()
        .filter(|l| l.contains(": delete ") || l.contains(": release "))
        .cloned()
        .collect();
    (undos, error)
}

#[test]
fn a_failure_at_the_route_undoes_veth_bridge_and_lease_in_reverse() {
    let (undos, error) = run(Vec::new(), "none", "add_route");
    assert_eq!(
        undos,
        vec![
            format!("host: delete {HOST_IF}"),
            "host: delete tb-fake".to_string(),
            "ipam: release lease".to_string()
        ]
    );
    assert!(error.to_string().contains("injected failure"), "{error}");
}

#[test]
fn a_failure_at_the_veth_undoes_the_bridge_and_the_lease_only() {
    let (undos, _) = run(Vec::new(), "add_veth", "none");
    assert_eq!(undos, vec!["host: delete tb-fake", "ipam: release lease"]);
}

#[test]
fn a_bridge_the_add_only_joined_stays_when_a_later_step_fails() {
    let (undos, _) = run(vec![link("tb-fake", 7, None)], "none", "add_address");
    assert_eq!(
        undos,
        vec![
            format!("host: delete {HOST_IF}"),
            "ipam: release lease".to_string()
        ]
    );
}
