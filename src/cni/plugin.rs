//! The plugin side of the protocol: read CNI_* and stdin, dispatch to a
//! [`Plugin`], print the result or the error (spec section 2).

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::mac::MacAddr;

use super::config::{Attachment, NetConf};
use super::env::{Command, Env};
use super::error::{CniError, ErrorCode};
use super::logging;
use super::result::CniResult;
use super::runtime_config::parse_mac;
use super::version::{self, Version, CURRENT_VERSION, SUPPORTED_VERSIONS};

/// One invocation: the validated environment, the parsed configuration and
/// the stdin bytes as received (delegated IPAM plugins get the same bytes).
#[derive(Debug, Clone)]
pub struct Call {
    pub env: Env,
    pub conf: NetConf,
    pub stdin: Vec<u8>,
    /// ADD only: the MAC the runtime asked for, the `mac` capability else `CNI_ARGS MAC=` (as the
    /// reference plugins read it).
    pub mac: Option<MacAddr>,
}

impl Call {
    /// Types what `Env` leaves as text: the MAC in CNI_ARGS, read for ADD only, since every plugin of a
    /// chain gets the same free-form CNI_ARGS and a DEL after a refused ADD must still succeed.
    pub fn new(env: Env, conf: NetConf, stdin: Vec<u8>) -> Result<Call, CniError> {
        let mac = match (env.command, conf.runtime_config.mac) {
            (Command::Add, Some(mac)) => Some(mac),
            (Command::Add, None) => env
                .arg("MAC")
                .map(|text| parse_mac(text, "CNI_ARGS MAC"))
                .transpose()?,
            _ => None,
        };
        Ok(Call {
            env,
            conf,
            stdin,
            mac,
        })
    }

    /// The `prevResult` of a chain, read whatever its version.
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        self.conf
            .prev_result
            .as_ref()
            .map(CniResult::from_json)
            .transpose()
    }

    /// CNI_CONTAINERID; present for ADD, CHECK and DEL (checked by `Env`).
    pub fn container_id(&self) -> &str {
        self.env.container_id.as_deref().unwrap_or_default()
    }

    /// CNI_IFNAME; present for ADD, CHECK and DEL (checked by `Env`).
    pub fn ifname(&self) -> &str {
        self.env.ifname.as_deref().unwrap_or_default()
    }
}

/// What a plugin does. The dispatcher has already validated the environment
/// and the configuration, checked that the configuration's cniVersion allows
/// the command, and parsed the plugin's own configuration once (`config`),
/// before any command runs: a bad field is refused before any kernel work.
pub trait Plugin {
    /// The plugin's own error; it becomes the CNI error object in one place (`From`).
    type Error: Into<CniError>;
    /// The plugin's typed configuration, made from the call once.
    type Config;
    fn config(&self, call: &Call) -> Result<Self::Config, Self::Error>;
    fn add(&self, call: &Call, cfg: &Self::Config) -> Result<CniResult, Self::Error>;
    /// Must succeed when the things to remove are already gone.
    fn del(&self, call: &Call, cfg: &Self::Config) -> Result<(), Self::Error>;
    fn check(&self, call: &Call, cfg: &Self::Config) -> Result<(), Self::Error>;
    /// Release whatever belongs to an attachment not in `valid`. The default
    /// suits plugins that keep no state.
    fn gc(
        &self,
        _call: &Call,
        _cfg: &Self::Config,
        _valid: &[Attachment],
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Ready for ADDs? Codes 50/51 say why not. The default is "ready".
    fn status(&self, _call: &Call, _cfg: &Self::Config) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs one plugin invocation over explicit inputs: returns what to print on
/// stdout and the exit code. Pure apart from what the plugin itself does.
pub fn dispatch<P: Plugin>(
    plugin: &P,
    vars: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> (String, u8) {
    let env = match Env::from_vars(vars) {
        Ok(env) => env,
        Err(err) => return failure(&err, version_for_errors(stdin)),
    };
    if env.command == Command::Version {
        // Spec: VERSION's stdin holds at most {"cniVersion": ...}; it
        // does not change the answer.
        return (version::version_info_json().to_string(), 0);
    }
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err(err) => return failure(&err, version_for_errors(stdin)),
    };
    let span = tracing::debug_span!(
        "cni",
        command = %env.command,
        network = %conf.name,
        container = env.container_id.as_deref().unwrap_or(""),
        ifname = env.ifname.as_deref().unwrap_or(""),
    );
    let _entered = span.enter();
    // Marks the process start in a trace, so a call's steps can be timed from it.
    tracing::trace!("configuration parsed");
    let reply_version = conf.cni_version.clone();
    let call = match Call::new(env, conf, stdin.to_vec()) {
        Ok(call) => call,
        Err(err) => return failure(&err, &reply_version),
    };
    match run_command(plugin, &call) {
        Ok(stdout) => {
            tracing::debug!("succeeded");
            (stdout, 0)
        }
        Err(err) => {
            tracing::debug!(code = err.code, error = %err, "failed");
            failure(&err, &reply_version)
        }
    }
}

fn run_command<P: Plugin>(plugin: &P, call: &Call) -> Result<String, CniError> {
    let command = call.env.command;
    let version = Version::parse(&call.conf.cni_version)?;
    let allowed = match command {
        Command::Check => version.supports_check(),
        Command::Gc | Command::Status => version.supports_gc_status(),
        _ => true,
    };
    if !allowed {
        let needs = if command == Command::Check {
            "0.4.0"
        } else {
            "1.1.0"
        };
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!(
                "cniVersion {} does not allow {command}",
                call.conf.cni_version
            ),
        )
        .with_details(format!("{command} needs cniVersion {needs} or newer")));
    }
    if command == Command::Version {
        return Ok(version::version_info_json().to_string());
    }
    // Without the list every attachment would look stale; refuse rather than release everything.
    let valid = match command {
        Command::Gc => Some(call.conf.gc_attachments.as_deref().ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "GC of network \"{}\" without \"cni.dev/valid-attachments\"",
                    call.conf.name
                ),
            )
            .with_details(
                "the runtime must list the attachments still in use (an empty list releases all)",
            )
        })?),
        _ => None,
    };
    let cfg = plugin.config(call).map_err(Into::into)?;
    let done = match command {
        Command::Add => {
            let result = plugin.add(call, &cfg).map_err(Into::into)?;
            return Ok(result.to_json(&call.conf.cni_version)?.to_string());
        }
        Command::Del => plugin.del(call, &cfg),
        Command::Check => plugin.check(call, &cfg),
        Command::Status => plugin.status(call, &cfg),
        Command::Gc => plugin.gc(call, &cfg, valid.unwrap_or_default()),
        Command::Version => Ok(()),
    };
    done.map_err(Into::into).map(|()| String::new())
}

fn failure(err: &CniError, cni_version: &str) -> (String, u8) {
    (err.to_json(cni_version).to_string(), 1)
}

/// Errors are answered in the configuration's version when stdin names a
/// supported one, else in the newest.
fn version_for_errors(stdin: &[u8]) -> &'static str {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|value| {
            let asked = value.get("cniVersion")?.as_str()?.to_string();
            SUPPORTED_VERSIONS.iter().copied().find(|v| *v == asked)
        })
        .unwrap_or(CURRENT_VERSION)
}

/// The text printed when a person runs a plugin without CNI_COMMAND.
pub fn about_text(about: &str) -> String {
    format!(
        "{about}\nCNI protocol versions supported: {}",
        SUPPORTED_VERSIONS.join(", ")
    )
}

/// The `main` of every tether plugin binary.
pub fn run<P: Plugin>(plugin: &P, about: &str) -> ExitCode {
    crate::link::serve_reaper_helper();
    logging::init_from_env();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        eprintln!("{}", about_text(about));
        return ExitCode::from(1);
    }
    let mut stdin = Vec::new();
    // VERSION may come with no stdin at all (or a terminal); don't wait on it.
    if command != "VERSION" {
        if let Err(err) = std::io::stdin().read_to_end(&mut stdin) {
            let err = CniError::new(
                ErrorCode::Io,
                format!("cannot read the network configuration from stdin: {err}"),
            );
            return emit(&failure(&err, CURRENT_VERSION));
        }
    }
    emit(&dispatch(plugin, |name| std::env::var(name).ok(), &stdin))
}

fn emit((stdout, code): &(String, u8)) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // If stdout is gone the runtime is gone too; nothing left to tell.
    let _ = out.write_all(stdout.as_bytes()).and_then(|()| out.flush());
    ExitCode::from(*code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    use serde_json::json;

    use crate::cni::result::{Interface, IpConfig};

    /// Records what it was asked and answers with a fixed result or error.
    #[derive(Default)]
    struct FakePlugin {
        seen: RefCell<Vec<String>>,
        fail_with: Option<CniError>,
    }

    impl FakePlugin {
        fn note(&self, what: String) -> Result<(), CniError> {
            self.seen.borrow_mut().push(what);
            match &self.fail_with {
                Some(err) => Err(err.clone()),
                None => Ok(()),
            }
        }
    }

    impl Plugin for FakePlugin {
        type Error = CniError;
        type Config = ();
        fn config(&self, call: &Call) -> Result<(), CniError> {
            match call.conf.raw.get("refuse") {
                Some(why) => Err(CniError::new(ErrorCode::InvalidConfig, why.to_string())),
                None => Ok(()),
            }
        }
        fn add(&self, call: &Call, _: &()) -> Result<CniResult, CniError> {
            self.note(format!("add {} {}", call.container_id(), call.ifname()))?;
            Ok(CniResult {
                interfaces: vec![Interface {
                    name: call.ifname().to_string(),
                    sandbox: call.env.netns.as_ref().map(|p| p.display().to_string()),
                    ..Interface::default()
                }],
                ips: vec![IpConfig {
                    address: "10.88.0.2/16".parse().unwrap(),
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    interface: Some(0),
                }],
                ..CniResult::default()
            })
        }
        fn del(&self, call: &Call, _: &()) -> Result<(), CniError> {
            self.note(format!(
                "del {} netns={:?}",
                call.container_id(),
                call.env.netns
            ))
        }
        fn check(&self, call: &Call, _: &()) -> Result<(), CniError> {
            let prev = call.prev_result()?.map(|r| r.ips.len()).unwrap_or(0);
            self.note(format!("check prev_ips={prev}"))
        }
        fn gc(&self, _call: &Call, _: &(), valid: &[Attachment]) -> Result<(), CniError> {
            let names: Vec<String> = valid
                .iter()
                .map(|a| format!("{}/{}", a.container_id, a.ifname))
                .collect();
            self.note(format!("gc {}", names.join(",")))
        }
        fn status(&self, _call: &Call, _: &()) -> Result<(), CniError> {
            self.note("status".into())
        }
    }

    fn vars(command: &str) -> HashMap<String, String> {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn conf(version: &str) -> Vec<u8> {
        json!({"cniVersion": version, "name": "net1", "type": "fake"})
            .to_string()
            .into_bytes()
    }

    fn call(plugin: &FakePlugin, vars: &HashMap<String, String>, stdin: &[u8]) -> (Value, u8) {
        let (stdout, code) = dispatch(plugin, |k| vars.get(k).cloned(), stdin);
        let value = if stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap()
        };
        (value, code)
    }

    #[test]
    fn add_prints_result_in_the_config_version() {
        let plugin = FakePlugin::default();
        let (out, code) = call(&plugin, &vars("ADD"), &conf("0.4.0"));
        assert_eq!(code, 0);
        assert_eq!(
            out,
            json!({"cniVersion": "0.4.0",
                   "interfaces": [{"name": "eth0", "sandbox": "/run/netns/c1"}],
                   "ips": [{"version": "4", "interface": 0, "address": "10.88.0.2/16", "gateway": "10.88.0.1"}],
                   "dns": {}})
        );
        assert_eq!(*plugin.seen.borrow(), vec!["add c1 eth0".to_string()]);

        let (out, _) = call(&plugin, &vars("ADD"), &conf("0.2.0"));
        assert_eq!(
            out,
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.88.0.2/16", "gateway": "10.88.0.1"}, "dns": {}})
        );
    }

    #[test]
    fn a_config_the_plugin_refuses_stops_every_command_before_it_runs() {
        let plugin = FakePlugin::default();
        let stdin = json!({"cniVersion": "1.1.0", "name": "net1", "type": "fake", "refuse": "bad field",
                           "cni.dev/valid-attachments": []});
        for command in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
            let (out, code) = call(&plugin, &vars(command), stdin.to_string().as_bytes());
            assert_eq!((code, &out["code"]), (1, &json!(7)), "{command}: {out}");
        }
        assert!(plugin.seen.borrow().is_empty());
    }

    #[test]
    fn the_requested_mac_is_typed_at_the_edge_and_read_for_add_only() {
        let plugin = FakePlugin::default();
        let mut env = vars("ADD");
        env.insert(
            "CNI_ARGS".into(),
            "IgnoreUnknown=1;MAC=02:42:ac:11:00:zz".into(),
        );
        let (out, code) = call(&plugin, &env, &conf("1.0.0"));
        assert_eq!((code, &out["code"]), (1, &json!(7)), "{out}");
        assert!(
            out["msg"].as_str().unwrap().contains("CNI_ARGS MAC"),
            "{out}"
        );
        env.insert("CNI_COMMAND".into(), "DEL".into());
        assert_eq!(call(&plugin, &env, &conf("1.0.0")).1, 0);

        let stdin = json!({"cniVersion": "1.0.0", "name": "net1", "type": "fake",
                           "runtimeConfig": {"mac": "02:42:AC:11:00:0F"}});
        let env = vars("ADD");
        let conf = NetConf::parse(stdin.to_string().as_bytes()).unwrap();
        let env = Env::from_vars(|k| env.get(k).cloned()).unwrap();
        let typed = Call::new(env, conf, Vec::new()).unwrap();
        assert_eq!(
            typed.mac.map(|m| m.to_string()).as_deref(),
            Some("02:42:ac:11:00:0f")
        );
    }

    #[test]
    fn del_without_netns_succeeds_silently() {
        let plugin = FakePlugin::default();
        let mut env = vars("DEL");
        env.remove("CNI_NETNS");
        let (out, code) = call(&plugin, &env, &conf("1.0.0"));
        assert_eq!((out, code), (Value::Null, 0));
        assert_eq!(*plugin.seen.borrow(), vec!["del c1 netns=None".to_string()]);
    }

    #[test]
    fn check_reads_prev_result_and_needs_0_4_0() {
        let plugin = FakePlugin::default();
        let stdin = json!({"cniVersion": "1.0.0", "name": "net1", "type": "fake",
                           "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/16"}]}});
        let (out, code) = call(&plugin, &vars("CHECK"), stdin.to_string().as_bytes());
        assert_eq!((out, code), (Value::Null, 0));
        assert_eq!(*plugin.seen.borrow(), vec!["check prev_ips=1".to_string()]);

        let (out, code) = call(&plugin, &vars("CHECK"), &conf("0.3.1"));
        assert_eq!(code, 1);
        assert_eq!(out["code"], 1);
        assert_eq!(out["cniVersion"], "0.3.1");
        assert!(out["msg"]
            .as_str()
            .unwrap()
            .contains("does not allow CHECK"));
        assert_eq!(plugin.seen.borrow().len(), 1, "plugin must not run");
    }

    #[test]
    fn gc_and_status_need_1_1_0() {
        for command in ["GC", "STATUS"] {
            let plugin = FakePlugin::default();
            let env: HashMap<String, String> =
                [("CNI_COMMAND".to_string(), command.to_string())].into();
            let (out, code) = call(&plugin, &env, &conf("1.0.0"));
            assert_eq!(code, 1, "{command}");
            assert_eq!(out["code"], 1);
            assert!(plugin.seen.borrow().is_empty());
        }
    }

    #[test]
    fn gc_passes_valid_attachments() {
        let plugin = FakePlugin::default();
        let env: HashMap<String, String> = [("CNI_COMMAND".to_string(), "GC".to_string())].into();
        let stdin = json!({"cniVersion": "1.1.0", "name": "net1", "type": "fake",
                           "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]});
        let (out, code) = call(&plugin, &env, stdin.to_string().as_bytes());
        assert_eq!((out, code), (Value::Null, 0));
        assert_eq!(*plugin.seen.borrow(), vec!["gc c1/eth0".to_string()]);
    }

    #[test]
    fn gc_without_attachment_list_is_refused() {
        let plugin = FakePlugin::default();
        let env: HashMap<String, String> = [("CNI_COMMAND".to_string(), "GC".to_string())].into();
        let (out, code) = call(&plugin, &env, &conf("1.1.0"));
        assert_eq!(code, 1);
        assert_eq!(out["code"], 7);
        assert!(plugin.seen.borrow().is_empty());
    }

    #[test]
    fn status_reports_plugin_errors() {
        let plugin = FakePlugin {
            fail_with: Some(CniError::new(
                ErrorCode::PluginNotAvailable,
                "tetherd is not running",
            )),
            ..FakePlugin::default()
        };
        let env: HashMap<String, String> =
            [("CNI_COMMAND".to_string(), "STATUS".to_string())].into();
        let (out, code) = call(&plugin, &env, &conf("1.1.0"));
        assert_eq!(code, 1);
        assert_eq!(
            out,
            json!({"cniVersion": "1.1.0", "code": 50, "msg": "tetherd is not running"})
        );
    }

    #[test]
    fn version_ignores_stdin() {
        let plugin = FakePlugin::default();
        let env: HashMap<String, String> =
            [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
        for stdin in [&b""[..], br#"{"cniVersion": "0.4.0"}"#, b"garbage"] {
            let (out, code) = call(&plugin, &env, stdin);
            assert_eq!(code, 0);
            assert_eq!(out, version::version_info_json());
        }
    }

    #[test]
    fn missing_env_is_code_4() {
        let plugin = FakePlugin::default();
        let mut env = vars("ADD");
        env.remove("CNI_IFNAME");
        let (out, code) = call(&plugin, &env, &conf("0.3.1"));
        assert_eq!(code, 1);
        assert_eq!(out["code"], 4);
        assert_eq!(
            out["cniVersion"], "0.3.1",
            "answered in the config's version"
        );
        assert!(out["msg"].as_str().unwrap().contains("CNI_IFNAME"));

        let (out, _) = call(&plugin, &HashMap::new(), b"");
        assert_eq!(out["code"], 4);
        assert_eq!(out["cniVersion"], "1.1.0");
    }

    #[test]
    fn bad_stdin_is_decode_or_config_error() {
        let plugin = FakePlugin::default();
        let (out, code) = call(&plugin, &vars("ADD"), b"{");
        assert_eq!((out["code"].clone(), code), (json!(6), 1));
        let (out, _) = call(
            &plugin,
            &vars("ADD"),
            br#"{"cniVersion": "1.0.0", "type": "fake"}"#,
        );
        assert_eq!(out["code"], 7);
        let (out, _) = call(&plugin, &vars("ADD"), &conf("0.9.0"));
        assert_eq!(out["code"], 1);
        assert!(plugin.seen.borrow().is_empty());
    }

    #[test]
    fn plugin_error_is_printed_in_config_version() {
        let plugin = FakePlugin {
            fail_with: Some(
                CniError::new(ErrorCode::TryLater, "address store busy").with_details("retry"),
            ),
            ..FakePlugin::default()
        };
        let (out, code) = call(&plugin, &vars("ADD"), &conf("1.0.0"));
        assert_eq!(code, 1);
        assert_eq!(
            out,
            json!({"cniVersion": "1.0.0", "code": 11, "msg": "address store busy", "details": "retry"})
        );
    }

    #[test]
    fn about_names_versions() {
        let text = about_text("tether-bridge 0.1.0");
        assert!(text.starts_with("tether-bridge 0.1.0\n"));
        assert!(text.contains("0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    }
}
