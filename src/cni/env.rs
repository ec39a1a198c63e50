//! The CNI_* environment a runtime hands a plugin (spec section 2,
//! "Parameters"), parsed and validated once.

use crate::container_id::ContainerId;
use crate::ifname::IfName;
use std::fmt;
use std::path::PathBuf;

use super::error::{CniError, ErrorCode};

/// The operation asked for in CNI_COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, CniError> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnv,
                    format!("unknown CNI_COMMAND \"{other}\""),
                )
                .with_details("expected ADD, DEL, CHECK, GC, STATUS or VERSION"))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated environment of one plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<ContainerId>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<IfName>,
    /// CNI_ARGS split into pairs, in the order given.
    pub args: Vec<(String, String)>,
    /// CNI_PATH split on ':'.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the CNI_* variables through `var` (so tests need no process
    /// environment). An empty variable counts as unset, as in libcni.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |name: &str| var(name).filter(|value| !value.is_empty());
        let command_text = get("CNI_COMMAND").ok_or_else(|| {
            CniError::new(ErrorCode::InvalidEnv, "CNI_COMMAND is not set").with_details(
                "a CNI runtime must set CNI_COMMAND to ADD, DEL, CHECK, GC, STATUS or VERSION",
            )
        })?;
        let command = Command::parse(&command_text)?;

        // Which variables each command needs (spec section 2, "Parameters";
        // DEL must work when the namespace is already gone).
        let (need_id, need_netns, need_ifname) = match command {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Gc | Command::Status | Command::Version => (false, false, false),
        };
        let missing: Vec<&str> = [
            ("CNI_CONTAINERID", need_id),
            ("CNI_NETNS", need_netns),
            ("CNI_IFNAME", need_ifname),
        ]
        .into_iter()
        .filter(|(name, needed)| *needed && get(name).is_none())
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                ErrorCode::InvalidEnv,
                format!(
                    "required environment variables [{}] missing for {command}",
                    missing.join(", ")
                ),
            )
            .with_details("the CNI runtime must set them; see the CNI spec, section 2"));
        }

        let container_id = get("CNI_CONTAINERID")
            .map(validate_container_id)
            .transpose()?;
        let ifname = get("CNI_IFNAME").map(validate_ifname).transpose()?;
        let args = match get("CNI_ARGS") {
            Some(raw) => parse_args(&raw)?,
            None => Vec::new(),
        };
        let path = get("CNI_PATH")
            .map(|raw| {
                raw.split(':')
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();

        Ok(Env {
            command,
            container_id,
            netns: get("CNI_NETNS").map(PathBuf::from),
            ifname,
            args,
            path,
        })
    }

    /// The environment of this process.
    pub fn from_process() -> Result<Env, CniError> {
        Env::from_vars(|name| std::env::var(name).ok())
    }

    /// The value of `key` in CNI_ARGS (the last one wins when repeated).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// CNI_ARGS as the runtime spelled it, for handing on to a delegate.
    pub fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

pub(crate) use crate::container_id::is_valid_identifier;

fn validate_container_id(id: String) -> Result<ContainerId, CniError> {
    ContainerId::new(id).map_err(|e| {
        CniError::new(
            ErrorCode::InvalidEnv,
            format!("invalid characters in CNI_CONTAINERID {:?}", e.text),
        )
        .with_details("a container ID starts with a letter or digit and holds only letters, digits, '_', '.' and '-'")
    })
}

/// Linux interface names, checked by the kernel's rule (see `crate::ifname`).
fn validate_ifname(name: String) -> Result<IfName, CniError> {
    IfName::new(name).map_err(|e| {
        CniError::new(
            ErrorCode::InvalidEnv,
            format!("invalid CNI_IFNAME {:?}: {}", e.text, e.why),
        )
        .with_details("Linux interface names are 1 to 15 bytes without '/', ':' or whitespace")
    })
}

/// CNI_ARGS is `K=V;K2=V2` (spec section 2). An empty segment (a trailing
/// ';') is tolerated; a segment without '=' is not.
fn parse_args(raw: &str) -> Result<Vec<(String, String)>, CniError> {
    raw.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CniError::new(
                ErrorCode::InvalidEnv,
                format!("invalid CNI_ARGS pair \"{pair}\""),
            )
            .with_details("CNI_ARGS must look like KEY=VALUE;KEY2=VALUE2")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_vars(|name| map.get(name).cloned())
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web;"),
    ];

    fn with(command: &str, base: &[(&str, &str)], drop: &[&str]) -> Result<Env, CniError> {
        let mut pairs: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| !drop.contains(k))
            .collect();
        pairs.push(("CNI_COMMAND", command));
        env_of(&pairs)
    }

    #[test]
    fn full_add_environment_parses() {
        let env = with("ADD", FULL, &[]).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id.as_deref(), Some("abc123"));
        assert_eq!(env.netns, Some(PathBuf::from("/run/netns/x")));
        assert_eq!(env.ifname.as_deref(), Some("eth0"));
        assert_eq!(
            env.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(env.arg("K8S_POD_NAME"), Some("web"));
        assert_eq!(env.arg("IgnoreUnknown"), Some("1"));
        assert_eq!(env.arg("nope"), None);
        assert_eq!(env.args_string(), "IgnoreUnknown=1;K8S_POD_NAME=web");
    }

    #[test]
    fn required_variables_per_command() {
        // (command, variable removed, accepted?)
        let table = [
            ("ADD", "CNI_CONTAINERID", false),
            ("ADD", "CNI_NETNS", false),
            ("ADD", "CNI_IFNAME", false),
            ("ADD", "CNI_PATH", true),
            ("ADD", "CNI_ARGS", true),
            ("CHECK", "CNI_CONTAINERID", false),
            ("CHECK", "CNI_NETNS", false),
            ("CHECK", "CNI_IFNAME", false),
            ("DEL", "CNI_CONTAINERID", false),
            ("DEL", "CNI_NETNS", true),
            ("DEL", "CNI_IFNAME", false),
            ("GC", "CNI_CONTAINERID", true),
            ("STATUS", "CNI_NETNS", true),
            ("VERSION", "CNI_IFNAME", true),
        ];
        for (command, dropped, ok) in table {
            let result = with(command, FULL, &[dropped]);
            assert_eq!(
                result.is_ok(),
                ok,
                "{command} without {dropped}: {result:?}"
            );
            if let Err(err) = result {
                assert_eq!(err.code, 4);
                assert!(err.msg.contains(dropped), "{}", err.msg);
            }
        }
        let bare = env_of(&[("CNI_COMMAND", "GC")]).unwrap();
        assert_eq!(bare.command, Command::Gc);
        assert!(bare.path.is_empty() && bare.container_id.is_none());
    }

    #[test]
    fn empty_netns_on_del_is_none() {
        let mut pairs = FULL.to_vec();
        pairs.retain(|(k, _)| *k != "CNI_NETNS");
        pairs.push(("CNI_NETNS", ""));
        pairs.push(("CNI_COMMAND", "DEL"));
        assert_eq!(env_of(&pairs).unwrap().netns, None);
    }

    #[test]
    fn missing_and_unknown_command() {
        assert_eq!(env_of(&[]).unwrap_err().code, 4);
        let err = with("ATTACH", FULL, &[]).unwrap_err();
        assert_eq!(err.code, 4);
        assert!(err.msg.contains("ATTACH"));
    }

    #[test]
    fn container_id_charset() {
        for (id, ok) in [
            ("abc", true),
            ("a_b.c-d", true),
            ("0dead", true),
            ("_abc", false),
            ("-abc", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
        ] {
            let mut pairs = FULL.to_vec();
            pairs.retain(|(k, _)| *k != "CNI_CONTAINERID");
            pairs.push(("CNI_CONTAINERID", id));
            pairs.push(("CNI_COMMAND", "ADD"));
            let result = env_of(&pairs);
            assert_eq!(result.is_ok(), ok, "{id}: {result:?}");
            if let Err(err) = result {
                assert_eq!(err.code, 4);
            }
        }
    }

    #[test]
    fn ifname_rules() {
        for (name, ok) in [
            ("eth0", true),
            ("a23456789012345", true),
            ("a234567890123456", false),
            (".", false),
            ("..", false),
            ("...", true),
            ("a/b", false),
            ("a:b", false),
            ("a b", false),
            ("a\tb", false),
        ] {
            let mut pairs = FULL.to_vec();
            pairs.retain(|(k, _)| *k != "CNI_IFNAME");
            pairs.push(("CNI_IFNAME", name));
            pairs.push(("CNI_COMMAND", "ADD"));
            let result = env_of(&pairs);
            assert_eq!(result.is_ok(), ok, "{name:?}: {result:?}");
            if let Err(err) = result {
                assert_eq!(err.code, 4);
                assert!(err.msg.contains("CNI_IFNAME"));
            }
        }
    }

    #[test]
    fn malformed_args_are_refused() {
        let mut pairs = FULL.to_vec();
        pairs.retain(|(k, _)| *k != "CNI_ARGS");
        pairs.push(("CNI_ARGS", "A=1;broken"));
        pairs.push(("CNI_COMMAND", "ADD"));
        let err = env_of(&pairs).unwrap_err();
        assert_eq!(err.code, 4);
        assert!(err.msg.contains("broken"));
    }

    #[test]
    fn command_names_round_trip() {
        for command in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Gc,
            Command::Status,
            Command::Version,
        ] {
            assert_eq!(Command::parse(command.as_str()).unwrap(), command);
        }
    }
}
