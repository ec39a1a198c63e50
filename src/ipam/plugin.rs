//! `tether-ipam` as a CNI plugin, and the same operations in-process for drivers that delegate IPAM.

use std::net::IpAddr;

use serde_json::Value;

use crate::cni::config::Attachment;
use crate::cni::plugin::{Call, Plugin};
use crate::cni::result::{CniResult, IpConfig, Route};

use super::allocator::{allocate, check, free_counts, release};
use super::config::IpamConfig;
use super::error::IpamError;
use super::gc::gc;
use super::requested;
use super::resolv_conf::read_resolv_conf;
use super::store::Store;
use crate::paths::ipam_dir;

/// The plugin; stateless, everything lives in the store directory.
#[derive(Debug, Default, Clone, Copy)]
pub struct TetherIpam;

/// The `ipam` section of the call, parsed (once per call: the plugin's `config`, or a driver's IPAM backend).
pub fn ipam_config(call: &Call) -> Result<IpamConfig, IpamError> {
    let ipam = call.conf.ipam.as_ref().ok_or_else(|| IpamError::Config {
        msg: format!("network \"{}\" has no \"ipam\" section", call.conf.name),
        details: "add \"ipam\": {\"type\": \"tether-ipam\", \"subnet\": ...}".into(),
    })?;
    IpamConfig::parse(ipam, &ipam_dir())
}

/// Static requests from `runtimeConfig.ips`, `CNI_ARGS` `IP=a,b` and `args.cni.ips`, in that order.
fn requested_ips(call: &Call) -> Result<Vec<IpAddr>, IpamError> {
    let mut requests: Vec<(&str, &str)> = Vec::new();
    if let Some(ips) = call.env.arg("IP") {
        requests.extend(
            ips.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|ip| (ip, "CNI_ARGS IP")),
        );
    }
    let args_ips = call.conf.raw.pointer("/args/cni/ips");
    match args_ips {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for ip in list {
                let text = ip.as_str().ok_or_else(|| IpamError::Config {
                    msg: format!("args.cni.ips entry {ip} must be a string like \"10.1.2.3\""),
                    details: String::new(),
                })?;
                requests.push((text, "args.cni.ips"));
            }
        }
        Some(other) => {
            return Err(IpamError::Config {
                msg: format!("args.cni.ips must be a list of addresses, got {other}"),
                details: String::new(),
            })
        }
    }
    requested::parse_all(&call.conf.runtime_config.ips, requests)
}

/// ADD without exec: allocate and build the IPAM result (no interfaces, per the spec for IPAM plugins).
pub fn add_in_process(call: &Call, conf: &IpamConfig) -> Result<CniResult, IpamError> {
    let requested = requested_ips(call)?;
    // Read before allocating, so a missing file fails the ADD with nothing to undo.
    let dns = match &conf.resolv_conf {
        Some(path) => read_resolv_conf(path)?,
        None => Default::default(),
    };
    let store = Store::open(&conf.data_dir, &call.conf.name)?;
    let allocations = allocate(conf, &store, call.container_id(), call.ifname(), &requested)?;
    Ok(CniResult {
        interfaces: Vec::new(),
        ips: allocations
            .into_iter()
            .map(|a| IpConfig {
                address: a.address,
                gateway: a.gateway,
                interface: None,
            })
            .collect(),
        routes: conf
            .routes
            .iter()
            .map(|r| Route::new(r.dst, r.gw))
            .collect(),
        dns,
    })
}

/// DEL without exec: free what the attachment holds; nothing held is success.
pub fn del_in_process(call: &Call, conf: &IpamConfig) -> Result<(), IpamError> {
    if let Some(store) = Store::existing(&conf.data_dir, &call.conf.name)? {
        release(&store, call.container_id(), call.ifname())?;
    }
    Ok(())
}

/// CHECK without exec: the attachment holds addresses, and every address of `prevResult` inside our
/// ranges is among them.
pub fn check_in_process(call: &Call, conf: &IpamConfig) -> Result<(), IpamError> {
    let not_held = || IpamError::NotAllocated {
        container_id: call.container_id().to_string(),
        ifname: call.ifname().to_string(),
    };
    let store = Store::existing(&conf.data_dir, &call.conf.name)?.ok_or_else(not_held)?;
    let held = check(conf, &store, call.container_id(), call.ifname())?;
    if let Some(prev) = call.prev_result()? {
        for ip in prev.ips.iter().map(|c| c.address.ip()) {
            if conf.set_index_of(ip).is_some() && !held.contains(&ip) {
                return Err(IpamError::Config {
                    msg: format!(
                        "prevResult lists {ip} but container {} interface {} does not hold it in network \"{}\"",
                        call.container_id(),
                        call.ifname(),
                        call.conf.name
                    ),
                    details: "delete and re-add the container to repair its addresses".into(),
                });
            }
        }
    }
    Ok(())
}

impl Plugin for TetherIpam {
    type Error = IpamError;
    type Config = IpamConfig;

    fn config(&self, call: &Call) -> Result<IpamConfig, IpamError> {
        ipam_config(call)
    }

    fn add(&self, call: &Call, conf: &IpamConfig) -> Result<CniResult, IpamError> {
        add_in_process(call, conf)
    }

    fn del(&self, call: &Call, conf: &IpamConfig) -> Result<(), IpamError> {
        del_in_process(call, conf)
    }

    fn check(&self, call: &Call, conf: &IpamConfig) -> Result<(), IpamError> {
        check_in_process(call, conf)
    }

    fn gc(&self, call: &Call, conf: &IpamConfig, valid: &[Attachment]) -> Result<(), IpamError> {
        let Some(store) = Store::existing(&conf.data_dir, &call.conf.name)? else {
            return Ok(());
        };
        let valid: Vec<(String, String)> = valid
            .iter()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let freed = gc(&store, &valid)?;
        tracing::debug!(network = %call.conf.name, freed, "GC done");
        Ok(())
    }

    fn status(&self, call: &Call, conf: &IpamConfig) -> Result<(), IpamError> {
        let Some(store) = Store::existing(&conf.data_dir, &call.conf.name)? else {
            return Ok(());
        };
        let free = free_counts(conf, &store)?;
        if let Some(set) = free.iter().position(|&n| n == 0) {
            return Err(IpamError::NoFreeAddress {
                network: call.conf.name.clone(),
                range: conf.range_sets[set].to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::plugin::dispatch;
    use crate::test_dir::TestDir;
    use serde_json::json;
    use std::collections::HashMap;

    struct Runtime {
        dir: TestDir,
    }

    impl Runtime {
        fn new(tag: &str) -> Self {
            Runtime {
                dir: TestDir::new(tag),
            }
        }

        fn conf(&self, version: &str, ipam: Value, extra: Value) -> Value {
            let mut ipam = ipam;
            ipam["type"] = json!("tether-ipam");
            ipam["dataDir"] = json!(self.dir.to_str().unwrap());
            let mut conf =
                json!({"cniVersion": version, "name": "net1", "type": "tether-ipam", "ipam": ipam});
            if let (Some(conf), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
                conf.extend(extra.clone());
            }
            conf
        }

        fn run(&self, command: &str, container: &str, args: &str, conf: &Value) -> (Value, u8) {
            let vars: HashMap<&str, String> = [
                ("CNI_COMMAND", command.to_string()),
                ("CNI_CONTAINERID", container.to_string()),
                ("CNI_NETNS", format!("/run/netns/{container}")),
                ("CNI_IFNAME", "eth0".to_string()),
                ("CNI_PATH", "/opt/cni/bin".to_string()),
                ("CNI_ARGS", args.to_string()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
            let (out, code) = dispatch(
                &TetherIpam,
                |k| vars.get(k).cloned(),
                conf.to_string().as_bytes(),
            );
            let out = if out.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&out).unwrap()
            };
            (out, code)
        }
    }

    #[test]
    fn add_returns_ips_and_routes_without_interfaces() {
        let rt = Runtime::new("plugin-add");
        let conf = rt.conf(
            "1.0.0",
            json!({"ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd88::/64"}]],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd88::1"}]}),
            json!({}),
        );
        let (out, code) = rt.run("ADD", "c1", "", &conf);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out,
            json!({"cniVersion": "1.0.0",
                   "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1"},
                           {"address": "fd88::2/64", "gateway": "fd88::1"}],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd88::1"}],
                   "dns": {}})
        );
        assert_eq!(rt.run("CHECK", "c1", "", &conf).1, 0);
        assert_eq!(rt.run("DEL", "c1", "", &conf), (Value::Null, 0));
        assert_eq!(rt.run("DEL", "c1", "", &conf), (Value::Null, 0));
        let (out, code) = rt.run("CHECK", "c1", "", &conf);
        assert_eq!((code, out["code"].clone()), (1, json!(3)), "{out}");
    }

    #[test]
    fn static_addresses_come_from_runtime_config_cni_args_and_args() {
        let rt = Runtime::new("plugin-static");
        let ipam = json!({"ranges": [[{"subnet": "10.88.0.0/16"}], [{"subnet": "fd88::/64"}]]});
        let conf = rt.conf(
            "1.1.0",
            ipam.clone(),
            json!({"runtimeConfig": {"ips": ["10.88.5.5/16"]}}),
        );
        let (out, _) = rt.run("ADD", "a", "IgnoreUnknown=1;IP=fd88::77", &conf);
        assert_eq!(out["ips"][0]["address"], "10.88.5.5/16", "{out}");
        assert_eq!(out["ips"][1]["address"], "fd88::77/64");

        let conf = rt.conf(
            "1.1.0",
            ipam.clone(),
            json!({"args": {"cni": {"ips": ["10.88.9.9"]}}}),
        );
        let (out, _) = rt.run("ADD", "b", "", &conf);
        assert_eq!(out["ips"][0]["address"], "10.88.9.9/16", "{out}");

        let (out, code) = rt.run("ADD", "c", "IP=10.88.5.5", &conf);
        assert_eq!((code, out["code"].clone()), (1, json!(7)));
        assert!(out["msg"].as_str().unwrap().contains("10.88.5.5"), "{out}");

        let conf = rt.conf("1.1.0", ipam, json!({}));
        let (out, _) = rt.run("ADD", "d", "IP=192.168.0.9", &conf);
        assert_eq!(out["code"], 7);
        assert!(
            out["msg"]
                .as_str()
                .unwrap()
                .contains("outside every configured range"),
            "{out}"
        );
    }

    #[test]
    fn gc_keeps_valid_attachments_and_status_reports_exhaustion() {
        let rt = Runtime::new("plugin-gc");
        let ipam = json!({"subnet": "10.88.0.0/30"});
        let conf = rt.conf("1.1.0", ipam, json!({}));
        assert_eq!(rt.run("STATUS", "", "", &conf), (Value::Null, 0));
        assert_eq!(rt.run("ADD", "a", "", &conf).1, 0);
        let (out, code) = rt.run("STATUS", "", "", &conf);
        assert_eq!((code, out["code"].clone()), (1, json!(50)), "{out}");
        assert!(
            out["msg"].as_str().unwrap().contains("10.88.0.0/30"),
            "{out}"
        );
        let (out, _) = rt.run("ADD", "b", "", &conf);
        assert_eq!(out["code"], 7);
        assert!(
            out["msg"].as_str().unwrap().contains("no free address"),
            "{out}"
        );

        let mut gc_conf = conf.clone();
        gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        assert_eq!(rt.run("GC", "", "", &gc_conf), (Value::Null, 0));
        assert_eq!(rt.run("CHECK", "a", "", &conf).1, 0);
        gc_conf["cni.dev/valid-attachments"] = json!([]);
        assert_eq!(rt.run("GC", "", "", &gc_conf), (Value::Null, 0));
        assert_eq!(rt.run("STATUS", "", "", &conf), (Value::Null, 0));
    }

    #[test]
    fn config_errors_are_code_7_and_io_errors_code_5() {
        let rt = Runtime::new("plugin-errors");
        let conf = rt.conf("1.0.0", json!({"subnet": "10.88.0.0/32"}), json!({}));
        let (out, _) = rt.run("ADD", "a", "", &conf);
        assert_eq!(out["code"], 7);
        assert!(
            out["msg"].as_str().unwrap().contains("no usable addresses"),
            "{out}"
        );

        let conf = json!({"cniVersion": "1.0.0", "name": "net1", "type": "tether-ipam"});
        let (out, _) = rt.run("ADD", "a", "", &conf);
        assert_eq!(out["code"], 7);

        let conf = rt.conf(
            "1.0.0",
            json!({"subnet": "10.88.0.0/24", "resolvConf": "/nonexistent/resolv.conf"}),
            json!({}),
        );
        let (out, _) = rt.run("ADD", "a", "", &conf);
        assert_eq!(out["code"], 5, "{out}");
        assert!(
            out["msg"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/resolv.conf"),
            "{out}"
        );
        assert!(!out["details"].as_str().unwrap().is_empty(), "{out}");
    }

    #[test]
    fn check_refuses_a_prev_result_address_not_held() {
        let rt = Runtime::new("plugin-check");
        let conf = rt.conf("1.0.0", json!({"subnet": "10.88.0.0/24"}), json!({}));
        rt.run("ADD", "a", "", &conf);
        let mut check_conf = conf.clone();
        check_conf["prevResult"] =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.9/24"}]});
        let (out, code) = rt.run("CHECK", "a", "", &check_conf);
        assert_eq!(code, 1);
        assert!(out["msg"].as_str().unwrap().contains("10.88.0.9"), "{out}");
        check_conf["prevResult"] =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/24"}]});
        assert_eq!(rt.run("CHECK", "a", "", &check_conf).1, 0);
    }
}
