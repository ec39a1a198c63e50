//! The `tether` command line as a person or script runs it on the test's "host": inside its namespace
//! (nsenter), with the test's config, state, run and cache dirs and the built plugins on CNI_PATH.

use super::binaries;
use super::host::HostNs;
use super::netns::NetNs;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct TetherCli<'h> {
    host: &'h HostNs,
    /// Set after the dirs, so a test can add to or override them (a resolv.conf, a tetherd config).
    extra_env: Vec<(String, OsString)>,
}

impl<'h> TetherCli<'h> {
    pub fn new(host: &'h HostNs) -> TetherCli<'h> {
        TetherCli {
            host,
            extra_env: Vec::new(),
        }
    }

    /// A CLI whose tetherd forwards nowhere (it answers the test's own names only) and reads
    /// `daemon_config` (tetherd.json) from the host's dir.
    pub fn without_upstreams(host: &'h HostNs, daemon_config: &str) -> TetherCli<'h> {
        let resolv_conf = host.dir().join("resolv.conf");
        std::fs::write(&resolv_conf, "# no servers\n").unwrap();
        let daemon_conf = host.dir().join("tetherd.json");
        std::fs::write(&daemon_conf, daemon_config).unwrap();
        TetherCli::new(host)
            .with_env("TETHER_RESOLV_CONF", resolv_conf)
            .with_env("TETHER_DAEMON_CONFIG", daemon_conf)
    }

    pub fn with_env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.extra_env.push((key.to_owned(), value.into()));
        self
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.host.dir().join("conf")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.host.dir().join("cache")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.path_str()))
            .arg("--")
            .arg(binaries::tether())
            .args(args)
            .env("TETHER_CONF_DIR", self.conf_dir())
            .env("TETHER_STATE_DIR", self.host.state_dir())
            .env("TETHER_RUN_DIR", self.host.run_dir())
            .env("TETHER_CNI_CACHE_DIR", self.cache_dir())
            .env("CNI_PATH", binaries::cni_path())
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("spawning nsenter tether")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tether {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tether network create --subnet SUBNET NAME`.
    pub fn create_network(&self, name: &str, subnet: &str) {
        self.ok(&["network", "create", "--subnet", subnet, name]);
    }

    /// `tether attach --json --network NETWORK --netns PATH EXTRA... LABEL`: the attachment it prints.
    pub fn attach_json(&self, network: &str, c: &NetNs, extra: &[&str]) -> serde_json::Value {
        let path = c.path_str();
        let mut args = vec!["attach", "--json", "--network", network, "--netns", &path];
        args.extend_from_slice(extra);
        args.push(&c.label);
        let text = self.ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("attach: {e}: {text}"))
    }
}
