//! The overlay's cluster store as `doctor` reports it, from tetherd's `cluster status` answer (what
//! `tether cluster status` shows): which store, whether it takes writes, the members and their liveness.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::finding::Finding;
use crate::client::protocol::Request;

/// Findings for a tetherd that runs an overlay control plane.
pub fn findings(run_dir: &Path, timeout: Duration) -> Vec<Finding> {
    let request = Request::Service {
        service: "overlay".into(),
        command: json!({"cluster": "status"}),
    };
    let status = match crate::client::notify::request(run_dir, &request, timeout) {
        Ok(reply) if reply.ok => reply.status.unwrap_or(Value::Null),
        Ok(reply) => {
            return vec![Finding::problem(
                "cluster store",
                format!(
                    "tetherd's overlay control plane gave no cluster status: {}",
                    reply.error.unwrap_or_default()
                ),
                "look in tetherd.log for why",
            )]
        }
        Err(e) => {
            return vec![Finding::problem(
                "cluster store",
                format!("tetherd did not answer `cluster status`: {e}"),
                "look in tetherd.log for why",
            )]
        }
    };
    of_status(&status)
}

fn of_status(status: &Value) -> Vec<Finding> {
    let store = status["store"].as_str().unwrap_or("unknown");
    let members = status["members"].as_array().cloned().unwrap_or_default();
    let up = members.iter().filter(|m| m["up"] == true).count();
    let mut out = Vec::new();
    if status["sync"]["reachable"] == true {
        out.push(Finding::ok(
            "cluster store",
            format!(
                "{store} store reachable from host {}; {up} of {} other member(s) up",
                status["host"].as_str().unwrap_or("?"),
                members.len()
            ),
        ));
    } else {
        out.push(Finding::problem(
            "cluster store",
            format!(
                "the {store} store is unreachable from host {} (last complete view at {} ms since the epoch): \
                 records of containers added or removed since do not reach other hosts, and new overlay blocks \
                 cannot be agreed on",
                status["host"].as_str().unwrap_or("?"),
                status["sync"]["lastSyncMs"]
            ),
            match store {
                "etcd" => "check that the etcd endpoints in tetherd's config answer (`etcdctl endpoint health`); \
                           `tether cluster status` shows when the store is back",
                _ => "check that UDP between the hosts' bind addresses passes; `tether cluster status` shows the members",
            },
        ));
    }
    for m in members.iter().filter(|m| m["up"] != true) {
        let host = m["host"].as_str().unwrap_or("?");
        out.push(Finding::warning(
            "cluster store",
            format!("member {host} is down: its containers are left out of this host's FDB and neighbour tables"),
            format!("if it is gone for good, `tether cluster forget {host}`"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::troubleshoot::Severity;

    #[test]
    fn an_unreachable_store_is_a_problem_and_a_down_member_a_warning() {
        let status = json!({
            "store": "etcd", "host": "192.0.2.1",
            "members": [{"host": "192.0.2.2", "up": true}, {"host": "192.0.2.3", "up": false}],
            "sync": {"reachable": false, "lastSyncMs": 5},
        });
        let found = of_status(&status);
        assert_eq!(found[0].severity, Severity::Problem);
        assert!(found[0].what.contains("etcd store is unreachable"));
        assert_eq!(found[1].severity, Severity::Warning);
        assert!(found[1].what.contains("192.0.2.3"));
        let mut healthy = status.clone();
        healthy["sync"]["reachable"] = json!(true);
        healthy["members"][1]["up"] = json!(true);
        let found = of_status(&healthy);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Ok);
        assert!(found[0].what.contains("2 of 2 other member(s) up"));
    }
}
