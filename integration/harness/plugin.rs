//! One plugin invocation as a container runtime makes it: CNI_* env, the conf on stdin, run inside
//! the host namespace, stdout parsed as JSON.

use super::binaries;
use super::host::HostNs;
use super::netns::NetNs;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// A plugin that has not answered in this long is hung; the test fails instead of waiting forever.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PluginCall<'h> {
    host: &'h HostNs,
    binary: PathBuf,
    command: Option<String>,
    container_id: Option<String>,
    netns: Option<String>,
    ifname: Option<String>,
    args: Option<String>,
    stdin: Vec<u8>,
    /// Command-line arguments: none for a CNI plugin; netavark takes its command and namespace there.
    argv: Vec<String>,
    /// Overrides applied last: Some(v) sets, None removes (bad-input cases).
    env_overrides: Vec<(String, Option<String>)>,
}

#[derive(Debug)]
pub struct PluginOutput {
    pub status: ExitStatus,
    pub stdout: String,
    /// stdout parsed as JSON; Null when stdout was empty or not JSON.
    pub stdout_json: Value,
    pub stderr: String,
    /// Wall time from spawn to exit: the plugin's own process start and work, as a runtime pays it.
    pub elapsed: Duration,
}

impl<'h> PluginCall<'h> {
    pub(super) fn new(host: &'h HostNs, binary: PathBuf) -> Self {
        PluginCall {
            host,
            binary,
            command: None,
            container_id: None,
            netns: None,
            ifname: Some("eth0".to_owned()),
            args: None,
            stdin: Vec::new(),
            argv: Vec::new(),
            env_overrides: Vec::new(),
        }
    }

    pub fn cmd(mut self, command: &str) -> Self {
        self.command = Some(command.to_owned());
        self
    }

    /// Sets CNI_CONTAINERID to the container's label and CNI_NETNS to its path.
    pub fn container(mut self, c: &NetNs) -> Self {
        self.container_id = Some(c.label.clone());
        self.netns = Some(c.path_str());
        self
    }

    pub fn container_id(mut self, id: &str) -> Self {
        self.container_id = Some(id.to_owned());
        self
    }

    pub fn ifname(mut self, ifname: &str) -> Self {
        self.ifname = Some(ifname.to_owned());
        self
    }

    pub fn args(mut self, args: &str) -> Self {
        self.args = Some(args.to_owned());
        self
    }

    pub fn conf(mut self, conf: &Value) -> Self {
        self.stdin = serde_json::to_vec(conf).expect("a Value always serializes");
        self
    }

    /// Raw stdin, for malformed-input cases.
    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = bytes.to_vec();
        self
    }

    pub fn argv(mut self, args: &[&str]) -> Self {
        self.argv = args.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn env(mut self, key: &str, value: Option<&str>) -> Self {
        self.env_overrides
            .push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    /// ADD of container `c` with `conf`; panics unless it answered a result, and returns it.
    pub fn add(self, c: &NetNs, conf: &Value) -> Value {
        self.cmd("ADD")
            .container(c)
            .conf(conf)
            .run()
            .result()
            .clone()
    }

    /// DEL of container `c` with `conf`; panics unless it succeeded.
    pub fn del(self, c: &NetNs, conf: &Value) {
        self.cmd("DEL").container(c).conf(conf).run().assert_ok();
    }

    /// CHECK of container `c` against `prev` (set as `prevResult` of `conf`); the caller judges the output.
    pub fn check(self, c: &NetNs, conf: &Value, prev: &Value) -> PluginOutput {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.clone();
        self.cmd("CHECK").container(c).conf(&conf).run()
    }

    /// The environment the plugin will see, in the order it is applied.
    fn environment(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, Option<String>)> = vec![
            ("PATH".into(), Some("/usr/sbin:/usr/bin:/sbin:/bin".into())),
            ("CNI_COMMAND".into(), self.command.clone()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), self.netns.clone()),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_ARGS".into(), self.args.clone()),
            ("CNI_PATH".into(), Some(binaries::cni_path())),
            (
                "TETHER_STATE_DIR".into(),
                Some(self.host.state_dir().display().to_string()),
            ),
            (
                "TETHER_RUN_DIR".into(),
                Some(self.host.run_dir().display().to_string()),
            ),
        ];
        // Passed through so a failing test can be rerun with plugin logs.
        for var in ["TETHER_LOG", "TETHER_LOG_FILE"] {
            if let Ok(value) = std::env::var(var) {
                env.push((var.into(), Some(value)));
            }
        }
        for (k, v) in &self.env_overrides {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        env.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }

    pub fn run(self) -> PluginOutput {
        let host_ns = std::fs::File::open(self.host.ns.path())
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.host.ns.path_str()));
        let mut command = Command::new(&self.binary);
        command
            .args(&self.argv)
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let binary = self.binary.clone();
        let input = self.stdin;
        let pid = Arc::new(AtomicU32::new(0));
        let (tx, rx) = mpsc::channel();
        // The plugin is spawned by a thread of its own that joined the host namespace first: a child
        // inherits its spawning thread's namespace, so no nsenter process and no pre_exec setns are needed.
        // Without pre_exec std spawns with vfork semantics (posix_spawn), as Go's os/exec does for libcni
        // and the runtimes; a fork copies the whole test process's page tables, a cost no runtime pays.
        // setns changes only the calling thread, and this thread ends with the call.
        let spawned_pid = pid.clone();
        std::thread::spawn(move || {
            let ran = (|| -> std::io::Result<(std::process::Output, Duration)> {
                nix::sched::setns(&host_ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let started = Instant::now();
                let mut child = command.spawn()?;
                spawned_pid.store(child.id(), Ordering::SeqCst);
                let mut stdin = child.stdin.take().expect("stdin is piped");
                // A plugin may exit before reading stdin (bad env): a broken pipe here is not our failure.
                let _ = stdin.write_all(&input);
                drop(stdin);
                let out = child.wait_with_output()?;
                Ok((out, started.elapsed()))
            })();
            let _ = tx.send(ran);
        });
        let (out, elapsed) = match rx.recv_timeout(PLUGIN_TIMEOUT) {
            Ok(ran) => ran.unwrap_or_else(|e| panic!("running {}: {e}", binary.display())),
            Err(_) => {
                // 0 until spawned; kill(0) would signal this whole process group.
                let spawned = pid.load(Ordering::SeqCst);
                if spawned != 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(spawned as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                panic!(
                    "{} {:?} did not answer within {PLUGIN_TIMEOUT:?}",
                    binary.display(),
                    self.command
                );
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        PluginOutput {
            status: out.status,
            stdout_json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }
}

impl PluginOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The result JSON; panics with everything the plugin said unless it exited 0 with JSON
    /// (or with nothing, which DEL and CHECK may do).
    pub fn assert_ok(&self) -> &Value {
        assert!(
            self.status.success(),
            "plugin failed ({}): stdout: {} stderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.trim().is_empty() || !self.stdout_json.is_null(),
            "plugin succeeded but stdout is not JSON: {}",
            self.stdout
        );
        &self.stdout_json
    }

    /// The result of an ADD, VERSION or GC-less call: panics unless the plugin exited 0 and printed a
    /// JSON object with a cniVersion.
    pub fn result(&self) -> &Value {
        let v = self.assert_ok();
        assert!(
            v["cniVersion"].is_string(),
            "plugin succeeded without a result object: stdout: {:?} stderr: {}",
            self.stdout,
            self.stderr
        );
        v
    }

    /// The CNI error code, when the plugin failed with a well-formed error.
    pub fn error_code(&self) -> Option<u64> {
        if self.status.success() {
            return None;
        }
        self.stdout_json["code"].as_u64()
    }

    /// Asserts a failure with a well-formed CNI error of `code` (spec: cniVersion, code, msg).
    pub fn expect_error(&self, code: u64) -> &Value {
        assert!(
            !self.status.success(),
            "expected CNI error {code}, plugin succeeded: {}",
            self.stdout
        );
        let e = &self.stdout_json;
        assert!(
            e["cniVersion"].is_string() && e["msg"].is_string(),
            "error is not a CNI error object: stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        assert_eq!(
            e["code"].as_u64(),
            Some(code),
            "wrong CNI error code: {}",
            self.stdout
        );
        e
    }
}
