//! The hook's decisions against a fake endpoint layer: what is attached with what, the rollback when a
//! network fails, and detach trying every network.

use std::cell::RefCell;
use std::path::Path;

use serde_json::Value;

use crate::endpoint::{AttachRequest, Attachment, EndpointError};

use super::attach::attach_networks;
use super::*;

#[derive(Default)]
struct FakeEndpoints {
    /// Networks whose attach fails.
    failing: Vec<String>,
    calls: RefCell<Vec<String>>,
    requests: RefCell<Vec<AttachRequest>>,
    /// The result cache: (network, container id, namespace path) per attachment.
    cache: Vec<(String, String, Option<String>)>,
}

impl EndpointOps for FakeEndpoints {
    fn attach(&self, request: &AttachRequest) -> Result<Attachment, EndpointError> {
        self.calls
            .borrow_mut()
            .push(format!("attach {}", request.network));
        self.requests.borrow_mut().push(request.clone());
        if self.failing.contains(&request.network) {
            return Err(EndpointError::BadContainerId {
                id: format!("fake failure on {}", request.network),
            });
        }
        let ifname = format!("eth{}", self.requests.borrow().len() - 1);
        Ok(Attachment {
            network: request.network.clone(),
            container_id: request.container_id.clone(),
            ifname,
            name: request.name.clone(),
            netns: None,
            ips: vec![],
            mac: None,
            ports: vec![],
            aliases: request.aliases.clone(),
            result: Value::Null,
        })
    }

    fn detach(
        &self,
        network: &str,
        _container_id: &str,
        ifname: Option<&str>,
    ) -> Result<(), EndpointError> {
        self.calls
            .borrow_mut()
            .push(format!("detach {network} {}", ifname.unwrap_or("*")));
        Ok(())
    }

    fn cached_netns(
        &self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Option<String>>, EndpointError> {
        Ok(self
            .cache
            .iter()
            .filter(|(n, id, _)| n == network && id == container_id)
            .map(|(_, _, path)| path.clone())
            .collect())
    }

    fn forget_process_netns(
        &self,
        network: &str,
        _container_id: &str,
    ) -> Result<(), EndpointError> {
        self.calls.borrow_mut().push(format!("forget {network}"));
        Ok(())
    }
}

fn networks(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn settings(list: &[&str]) -> HookSettings {
    HookSettings {
        networks: Some(NetworkMode::Networks(networks(list))),
        ports: Some(vec!["8080:80".parse().unwrap()]),
        ips: Some(vec!["10.88.0.7".parse().unwrap()]),
        aliases: Some(vec!["web".into()]),
        name: Some("c1".into()),
        ..HookSettings::default()
    }
}

#[test]
fn ports_address_and_mac_go_to_the_first_network_name_and_aliases_to_all() {
    let fake = FakeEndpoints::default();
    let made = attach_networks(
        &fake,
        "c1",
        Path::new("/proc/1/ns/net"),
        &networks(&["front", "back"]),
        &settings(&["front", "back"]),
    )
    .unwrap();
    assert_eq!(made.len(), 2);
    let requests = fake.requests.borrow();
    assert_eq!(requests[0].ports.len(), 1);
    assert_eq!(requests[0].ips.len(), 1);
    assert!(requests[1].ports.is_empty() && requests[1].ips.is_empty());
    assert!(requests
        .iter()
        .all(|r| r.aliases == ["web"] && r.name.as_deref() == Some("c1")));
    assert!(requests.iter().all(|r| r.ifname.is_none()));
}

#[test]
fn a_failing_network_detaches_it_and_every_earlier_one_in_reverse() {
    let fake = FakeEndpoints {
        failing: vec!["third".into()],
        ..FakeEndpoints::default()
    };
    let list = networks(&["first", "second", "third", "fourth"]);
    let err = attach_networks(
        &fake,
        "c1",
        Path::new("/proc/1/ns/net"),
        &list,
        &settings(&[]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HookError::Attach { network, .. } if network == "third"),
        "{err}"
    );
    assert_eq!(
        *fake.calls.borrow(),
        [
            "attach first",
            "attach second",
            "attach third",
            "detach third *",
            "detach second eth1",
            "detach first eth0",
        ]
    );
}

fn state(status: &str) -> OciState {
    OciState::parse(&format!(r#"{{"id":"c1","status":"{status}"}}"#)).unwrap()
}

fn args(words: &[&str]) -> HookArgs {
    HookArgs::parse(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn poststop_detaches_every_network_of_the_arguments() {
    let fake = FakeEndpoints::default();
    run_with(&fake, args(&["--network", "front,back"]), &state("stopped")).unwrap();
    assert_eq!(
        *fake.calls.borrow(),
        [
            "forget back",
            "detach back *",
            "forget front",
            "detach front *"
        ]
    );
}

#[test]
fn host_and_none_attach_nothing_and_detach_nothing() {
    let fake = FakeEndpoints::default();
    run_with(&fake, args(&["--network", "host"]), &state("creating")).unwrap();
    run_with(&fake, args(&["--network", "none"]), &state("stopped")).unwrap();
    run_with(&fake, args(&[]), &state("stopped")).unwrap();
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn attach_without_a_pid_is_refused_with_a_reason() {
    let fake = FakeEndpoints::default();
    let err = run_with(&fake, args(&["--network", "front"]), &state("creating")).unwrap_err();
    assert!(matches!(err, HookError::NoPid { .. }), "{err}");
    assert!(fake.calls.borrow().is_empty());
}

#[test]
fn annotations_in_the_bundle_config_are_used_when_the_state_has_none() {
    let bundle = std::env::temp_dir().join(format!("tether-hook-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        r#"{"annotations":{"tether.network":"from-config"}}"#,
    )
    .unwrap();
    let state = OciState::parse(&format!(
        r#"{{"id":"c1","status":"stopped","bundle":"{}"}}"#,
        bundle.display()
    ))
    .unwrap();
    let fake = FakeEndpoints::default();
    run_with(&fake, args(&[]), &state).unwrap();
    std::fs::remove_dir_all(&bundle).unwrap();
    assert_eq!(
        *fake.calls.borrow(),
        ["forget from-config", "detach from-config *"]
    );
}

/// A cache entry of this container id left by an earlier life, in a namespace of a process that is gone.
fn stale_entry(network: &str, path: &str) -> FakeEndpoints {
    FakeEndpoints {
        cache: vec![(network.into(), "c1".into(), Some(path.into()))],
        ..FakeEndpoints::default()
    }
}

fn request(network: &str, netns: &str) -> AttachRequest {
    AttachRequest {
        network: network.into(),
        container_id: "c1".into(),
        netns: netns.into(),
        ..AttachRequest::default()
    }
}

#[test]
fn a_stale_entry_of_a_dead_process_is_detached_before_the_attach() {
    // pid 4194304 is past the kernel's pid_max: that process cannot exist.
    let fake = stale_entry("front", "/proc/4194304/ns/net");
    endpoint_ops::attach_replacing_stale(&fake, &request("front", "/proc/7/ns/net")).unwrap();
    assert_eq!(
        *fake.calls.borrow(),
        ["forget front", "detach front *", "attach front"]
    );
}

#[test]
fn an_entry_in_our_own_namespace_or_a_named_one_is_not_stale() {
    let ours = "/proc/4194304/ns/net";
    for (cached, netns) in [(ours, ours), ("/run/netns/cni-1", "/proc/7/ns/net")] {
        let fake = stale_entry("front", cached);
        endpoint_ops::attach_replacing_stale(&fake, &request("front", netns)).unwrap();
        assert_eq!(*fake.calls.borrow(), ["attach front"], "{cached}");
    }
    // Another network's entry is not this attach's business.
    let fake = stale_entry("back", "/proc/4194304/ns/net");
    endpoint_ops::attach_replacing_stale(&fake, &request("front", "/proc/7/ns/net")).unwrap();
    assert_eq!(*fake.calls.borrow(), ["attach front"]);
}
