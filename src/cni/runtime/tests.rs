//! The runtime against fake plugins (shell scripts that log what they were given): chain order,
//! prevResult, capability filtering, the cache, DEL from the cache, CHECK, GC, and undo of a failed
//! ADD. The scripts are written by a child process, so no descriptor of ours open for writing can be
//! inherited by another test's fork and make exec fail with ETXTBSY.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{json, Value};

use super::*;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn install(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    let script = format!("#!/bin/sh\n{body}\n");
    let mut child = Process::new("sh")
        .arg("-c")
        .arg(format!(
            "cat > '{}' && chmod 755 '{}'",
            path.display(),
            path.display()
        ))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// A plugin that logs `COMMAND name container ifname args` and its stdin, and on ADD answers with
/// the prevResult plus one address of its own (`10.0.0.N/24`).
fn logging_plugin(dir: &Path, name: &str, n: u32) {
    let log = dir.join("log");
    install(
        dir,
        name,
        &format!(
            r#"in=$(cat)
echo "$CNI_COMMAND {name} ${{CNI_CONTAINERID:--}} ${{CNI_IFNAME:--}} ${{CNI_ARGS:--}}" >> '{log}'
printf '%s\n' "$in" > '{log}.{name}.'"$CNI_COMMAND"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{{"cniVersion":"1.0.0","ips":[{{"address":"10.0.0.{n}/24"}}]}}'
fi"#,
            log = log.display()
        ),
    );
}

fn setup(tag: &str) -> (Scratch, CniRuntime, NetworkConfigList) {
    let dir = std::env::temp_dir().join(format!("tt-runtime-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    logging_plugin(&dir, "first", 1);
    logging_plugin(&dir, "second", 2);
    install(
        &dir,
        "broken",
        "cat >/dev/null\nprintf '{\"code\":7,\"msg\":\"no\"}'\nexit 1",
    );
    let runtime = CniRuntime::new(vec![dir.clone()], &dir.join("cache"));
    let list = json!({
        "cniVersion": "1.1.0",
        "name": "net1",
        "plugins": [
            {"type": "first", "capabilities": {"ips": true}},
            {"type": "second", "capabilities": {"portMappings": true}}
        ]
    });
    let net = NetworkConfigList::from_bytes(list.to_string().into_bytes(), None).unwrap();
    (Scratch(dir), runtime, net)
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn stdin_of(dir: &Path, plugin: &str, command: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("log.{plugin}.{command}"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rt() -> RuntimeConf {
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80}]),
    );
    caps.insert("ips".into(), json!(["10.0.0.9"]));
    caps.insert("mac".into(), json!("02:00:00:00:00:01"));
    RuntimeConf {
        container_id: "c1".into(),
        netns: Some("/run/netns/c1".into()),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        capability_args: caps,
    }
}

#[test]
fn add_chains_results_filters_capabilities_and_caches() {
    let (scratch, runtime, net) = setup("add");
    let result = runtime.add(&net, &rt()).unwrap();
    assert_eq!(
        result["ips"][0]["address"], "10.0.0.2/24",
        "the last plugin's result"
    );
    assert_eq!(
        log(&scratch.0),
        [
            "ADD first c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web",
            "ADD second c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web"
        ]
    );
    let first = stdin_of(&scratch.0, "first", "ADD");
    assert_eq!(first["name"], "net1");
    assert_eq!(first["cniVersion"], "1.1.0");
    assert!(first.get("prevResult").is_none());
    assert_eq!(first["runtimeConfig"], json!({"ips": ["10.0.0.9"]}));
    let second = stdin_of(&scratch.0, "second", "ADD");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.0.0.1/24");
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    );

    let cached = runtime.cache.read("net1", "c1", "eth0").unwrap().unwrap();
    assert_eq!(cached.kind, "cniCacheV1");
    assert_eq!(cached.config, net.bytes);
    assert_eq!(cached.netns.as_deref(), Some("/run/netns/c1"));
    assert_eq!(
        cached.cni_args[1],
        ["K8S_POD_NAME".to_string(), "web".into()]
    );
    assert_eq!(cached.result, Some(result.clone()));

    runtime.check(&net, &rt()).unwrap();
    assert_eq!(stdin_of(&scratch.0, "first", "CHECK")["prevResult"], result);

    // DEL from the cache: reverse order, the cached result as prevResult, the cached args.
    assert!(runtime.del_cached("net1", "c1", "eth0").unwrap());
    let lines = log(&scratch.0);
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "DEL second c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web",
            "DEL first c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web"
        ]
    );
    assert_eq!(stdin_of(&scratch.0, "first", "DEL")["prevResult"], result);
    assert!(runtime.cache.read("net1", "c1", "eth0").unwrap().is_none());
    assert!(!runtime.del_cached("net1", "c1", "eth0").unwrap());
    assert!(matches!(
        runtime.check(&net, &rt()),
        Err(RuntimeError::NotCached { .. })
    ));
}

#[test]
fn a_failed_add_is_undone_and_caches_nothing() {
    let (scratch, runtime, _) = setup("undo");
    let list = json!({"cniVersion": "1.0.0", "name": "net2",
                      "plugins": [{"type": "first"}, {"type": "broken"}]});
    let net = NetworkConfigList::from_bytes(list.to_string().into_bytes(), None).unwrap();
    let err = runtime.add(&net, &rt()).unwrap_err();
    assert_eq!(err.plugin_error().map(|e| e.code), Some(7), "{err}");
    assert!(
        err.to_string().contains("plugin \"broken\" failed on ADD"),
        "{err}"
    );
    let lines = log(&scratch.0);
    assert_eq!(
        lines[0],
        "ADD first c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web"
    );
    assert_eq!(
        lines.last().unwrap(),
        "DEL first c1 eth0 IgnoreUnknown=1;K8S_POD_NAME=web"
    );
    assert!(runtime.cache.list().unwrap().is_empty());
}

#[test]
fn gc_names_the_valid_attachments_and_prunes_the_cache() {
    let (scratch, runtime, net) = setup("gc");
    let mut second = rt();
    second.container_id = "c2".into();
    runtime.add(&net, &rt()).unwrap();
    runtime.add(&net, &second).unwrap();
    let keep = [crate::cni::config::Attachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    }];
    runtime.gc(&net, &keep).unwrap();
    let gc = stdin_of(&scratch.0, "second", "GC");
    assert_eq!(
        gc["cni.dev/valid-attachments"],
        json!([{"containerID": "c1", "ifname": "eth0"}])
    );
    assert!(log(&scratch.0).contains(&"GC first - - -".to_string()));
    let left: Vec<String> = runtime
        .cache
        .list()
        .unwrap()
        .iter()
        .map(|e| e.container_id.clone())
        .collect();
    assert_eq!(left, ["c1"]);
    runtime.status(&net).unwrap();
    assert!(log(&scratch.0).contains(&"STATUS second - - -".to_string()));
}
