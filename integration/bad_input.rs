//! The bad-input table (`testdata/bad/*.json`): each case is answered with its CNI error code and
//! leaves nothing behind: no new link in the host namespace, no lease file, no nftables element.
//!
//! A case file: `{"description", "plugin": "tether-bridge"|"tether-ipam", "code", "env": {VAR: value or
//! null to unset}, "conf": {...} or "stdin": "raw text"}`. The test fills in a valid environment
//! (ADD, a container id, a fresh netns, eth0) and points `ipam.dataDir` into its scratch dir; `env`
//! then overrides it.

#[path = "harness/mod.rs"]
mod harness;

use harness::{nft, store, HostNs};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Clone, Copy, Debug)]
enum Plugin {
    #[serde(rename = "tether-bridge")]
    Bridge,
    #[serde(rename = "tether-ipam")]
    Ipam,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct BadCase {
    description: String,
    plugin: Plugin,
    code: u64,
    #[serde(default)]
    env: BTreeMap<String, Option<String>>,
    #[serde(default)]
    conf: Option<Value>,
    #[serde(default)]
    stdin: Option<String>,
}

fn cases() -> Vec<(PathBuf, BadCase)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let case: BadCase = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not a bad-input case: {e}", p.display()));
            assert!(
                case.conf.is_some() != case.stdin.is_some(),
                "{}: give exactly one of conf and stdin",
                p.display()
            );
            (p, case)
        })
        .collect()
}

/// Runs one case; Err describes every way it went wrong.
fn run_case(case: &BadCase) -> Result<(), String> {
    let host = HostNs::new("bad");
    let c = host.container("c1");
    let links_before = host.link_names();
    let mut call = match case.plugin {
        Plugin::Bridge => host.tether_bridge(),
        Plugin::Ipam => host.tether_ipam(),
    };
    call = call.cmd("ADD").container(&c).ifname("eth0");
    if let Some(conf) = &case.conf {
        let mut conf = conf.clone();
        if conf["ipam"].is_object() {
            conf["ipam"]["dataDir"] = host.data_dir_str().into();
        }
        call = call.conf(&conf);
    } else if let Some(stdin) = &case.stdin {
        call = call.stdin(stdin.as_bytes());
    }
    for (k, v) in &case.env {
        call = call.env(k, v.as_deref());
    }
    let out = call.run();

    let mut problems = Vec::new();
    if out.success() {
        problems.push(format!("succeeded: {}", out.stdout));
    } else if out.error_code() != Some(case.code) {
        problems.push(format!(
            "wanted code {}, got: {} {}",
            case.code, out.stdout, out.stderr
        ));
    } else if !out.stdout_json["msg"].is_string() || !out.stdout_json["cniVersion"].is_string() {
        problems.push(format!("error lacks msg or cniVersion: {}", out.stdout));
    }
    if host.link_names() != links_before {
        problems.push(format!(
            "host links now {:?}, were {links_before:?}",
            host.link_names()
        ));
    }
    if c.link_names() != ["lo"] {
        problems.push(format!("container links left: {:?}", c.link_names()));
    }
    let leases = store::all_leases(&host.data_dir());
    if !leases.is_empty() {
        problems.push(format!("lease files left: {leases:?}"));
    }
    let elements = nft::set_elements(&host);
    if !elements.is_empty() {
        problems.push(format!("nft elements left: {elements:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn every_bad_input_gets_its_error_code_and_leaves_nothing_behind() {
    let cases = cases();
    assert!(!cases.is_empty(), "no cases in testdata/bad");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(path, case)| {
            let name = path.file_name().unwrap().to_string_lossy();
            match std::panic::catch_unwind(|| run_case(case)) {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some(format!("{name} ({}): {why}", case.description)),
                Err(_) => Some(format!("{name} ({}): harness panicked", case.description)),
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
