//! The runtime side: find a plugin executable on CNI_PATH and run it the way
//! a runtime does (CNI_* environment, configuration on stdin, result or
//! error on stdout). Used to delegate to other vendors' IPAM plugins and by
//! the CLI to run whole chains.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use super::env::Command;
use super::error::{CniError, ErrorCode};
use super::plugin::Call;
use super::result::CniResult;

/// What the runtime tells the plugin through CNI_* variables.
#[derive(Debug, Clone, Copy)]
pub struct ExecRequest<'a> {
    pub command: Command,
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    /// Raw CNI_ARGS (`K=V;K2=V2`); empty for none.
    pub args: &'a str,
    pub path: &'a [PathBuf],
}

/// Looks `name` up in the CNI_PATH directories, first match wins.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("invalid plugin type \"{name}\""),
        )
        .with_details("\"type\" names an executable in a CNI_PATH directory, without '/'"));
    }
    if path.is_empty() {
        return Err(CniError::new(
            ErrorCode::InvalidEnv,
            format!("cannot find plugin \"{name}\": CNI_PATH is empty"),
        )
        .with_details(
            "set CNI_PATH to the directories holding CNI plugins, e.g. /opt/cni/bin:/usr/lib/cni",
        ));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|d| d.display().to_string()).collect();
            CniError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "plugin \"{name}\" not found in CNI_PATH [{}]",
                    dirs.join(":")
                ),
            )
            .with_details(
                "install the plugin in one of those directories or fix the \"type\" field",
            )
        })
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `binary` with `stdin` and the request's CNI_* variables (inherited
/// CNI_* variables are removed so nothing of our own call leaks through).
/// Returns the JSON printed on success, `None` when it printed nothing.
pub fn exec_plugin(
    binary: &Path,
    req: &ExecRequest,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let shown = binary.display();
    let mut process = Process::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CNI_") {
            process.env_remove(&key);
        }
    }
    process.env("CNI_COMMAND", req.command.as_str());
    if let Some(id) = req.container_id {
        process.env("CNI_CONTAINERID", id);
    }
    if let Some(netns) = req.netns {
        process.env("CNI_NETNS", netns);
    }
    if let Some(ifname) = req.ifname {
        process.env("CNI_IFNAME", ifname);
    }
    if !req.args.is_empty() {
        process.env("CNI_ARGS", req.args);
    }
    let joined: Vec<String> = req.path.iter().map(|d| d.display().to_string()).collect();
    process.env("CNI_PATH", joined.join(":"));
    process
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    tracing::debug!(plugin = %shown, command = %req.command, "executing plugin");
    let mut child = process.spawn().map_err(|err| {
        CniError::new(ErrorCode::Io, format!("cannot run plugin {shown}: {err}"))
            .with_details("check that the file is an executable for this machine")
    })?;
    // Feed stdin from another thread: a plugin that prints a lot before
    // reading would otherwise deadlock against us.
    let writer = child.stdin.take().map(|mut pipe| {
        let bytes = stdin.to_vec();
        std::thread::spawn(move || {
            // EPIPE just means the plugin did not read its stdin.
            let _ = pipe.write_all(&bytes);
        })
    });
    let output = child.wait_with_output().map_err(|err| {
        CniError::new(
            ErrorCode::Io,
            format!("cannot collect the output of plugin {shown}: {err}"),
        )
    })?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stdout = stdout.trim();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(err) = serde_json::from_str::<Value>(stdout)
            .ok()
            .as_ref()
            .and_then(CniError::from_json)
        {
            tracing::debug!(plugin = %shown, code = err.code, error = %err, "plugin failed");
            return Err(err);
        }
        return Err(CniError::new(
            ErrorCode::Io,
            format!(
                "plugin {shown} failed ({}) without a CNI error",
                output.status
            ),
        )
        .with_details(format!("stderr: {}; stdout: {stdout}", stderr.trim())));
    }
    if stdout.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(stdout).map(Some).map_err(|err| {
        CniError::new(
            ErrorCode::Decode,
            format!("plugin {shown} printed invalid JSON: {err}"),
        )
        .with_details(format!("stdout: {stdout}"))
    })
}

/// Runs the IPAM plugin `ipam_type` for `command` with the caller's own
/// environment and stdin bytes, as the reference plugins do. ADD returns the
/// IPAM result (any version, read into the common model); other commands
/// return `None`.
pub fn delegate_ipam(
    ipam_type: &str,
    call: &Call,
    command: Command,
) -> Result<Option<CniResult>, CniError> {
    let binary = find_plugin(ipam_type, &call.env.path)?;
    let args = call.env.args_string();
    let req = ExecRequest {
        command,
        container_id: call.env.container_id.as_deref(),
        netns: call.env.netns.as_deref(),
        ifname: call.env.ifname.as_deref(),
        args: &args,
        path: &call.env.path,
    };
    let output = exec_plugin(&binary, &req, &call.stdin)?;
    if command != Command::Add {
        return Ok(None);
    }
    let value = output.ok_or_else(|| {
        CniError::new(
            ErrorCode::Io,
            format!("IPAM plugin \"{ipam_type}\" returned no result for ADD"),
        )
        .with_details("an IPAM plugin must print the addresses it allocated")
    })?;
    CniResult::from_json(&value).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config::NetConf;
    use crate::cni::env::Env;
    use std::collections::HashMap;

    /// A scratch directory removed on drop, even when a test fails.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(tag: &str) -> ScratchDir {
            let dir = std::env::temp_dir().join(format!("tt-cni-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            ScratchDir(dir)
        }

        fn script(&self, name: &str, body: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn find_plugin_searches_path_in_order() {
        let scratch = ScratchDir::new("find");
        let first = scratch.0.join("a");
        let second = scratch.0.join("b");
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // Not executable in the first dir: skipped.
        std::fs::write(first.join("ipam"), "x").unwrap();
        std::fs::write(second.join("ipam"), "x").unwrap();
        std::fs::set_permissions(second.join("ipam"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let path = vec![first.clone(), second.clone()];
        assert_eq!(find_plugin("ipam", &path).unwrap(), second.join("ipam"));

        let err = find_plugin("missing", &path).unwrap_err();
        assert_eq!(err.code, 7);
        assert!(
            err.msg.contains("CNI_PATH") && err.msg.contains("missing"),
            "{}",
            err.msg
        );
        assert_eq!(find_plugin("ipam", &[]).unwrap_err().code, 4);
        assert_eq!(find_plugin("../ipam", &path).unwrap_err().code, 7);
    }

    // All spawning happens in this one test: writing an executable while
    // another thread forks can make exec fail with ETXTBSY.
    #[test]
    fn exec_and_delegate() {
        let scratch = ScratchDir::new("exec");
        // Our own call's variables must not reach the child. No other test
        // reads the process environment, so setting one here is safe.
        std::env::set_var("CNI_NETNS_OVERRIDE", "1");
        let dir = scratch.0.display().to_string();
        let echo = scratch.script(
            "echo-ipam",
            &format!(
                "cat > {dir}/stdin\nenv | grep '^CNI_' | sort > {dir}/env\n\
                 printf '%s' '{{\"cniVersion\":\"0.2.0\",\"ip4\":{{\"ip\":\"10.1.0.2/24\",\"gateway\":\"10.1.0.1\"}}}}'"
            ),
        );
        let busy = scratch.script("busy", "cat >/dev/null\nprintf '{\"code\":11,\"msg\":\"store busy\",\"details\":\"later\"}'\nexit 1");
        let crash = scratch.script("crash", "echo 'segfault-ish' >&2\nexit 3");
        let quiet = scratch.script("quiet", "cat >/dev/null");
        let garbage = scratch.script("garbage", "echo '{not json'");

        let path = vec![scratch.0.clone()];
        let req = ExecRequest {
            command: Command::Add,
            container_id: Some("c1"),
            netns: Some(Path::new("/run/netns/c1")),
            ifname: Some("eth0"),
            args: "K8S_POD_NAME=web",
            path: &path,
        };

        let out = exec_plugin(&echo, &req, b"{\"hello\":1}").unwrap().unwrap();
        assert_eq!(out["ip4"]["ip"], "10.1.0.2/24");
        assert_eq!(
            std::fs::read_to_string(scratch.0.join("stdin")).unwrap(),
            "{\"hello\":1}"
        );
        let env = std::fs::read_to_string(scratch.0.join("env")).unwrap();
        assert_eq!(
            env,
            format!(
                "CNI_ARGS=K8S_POD_NAME=web\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\n\
                 CNI_NETNS=/run/netns/c1\nCNI_PATH={dir}\n"
            )
        );

        let err = exec_plugin(&busy, &req, b"{}").unwrap_err();
        assert_eq!(
            err,
            CniError::new(ErrorCode::TryLater, "store busy").with_details("later")
        );

        let err = exec_plugin(&crash, &req, b"{}").unwrap_err();
        assert_eq!(err.code, 5);
        assert!(err.details.contains("segfault-ish"), "{}", err.details);

        assert_eq!(exec_plugin(&quiet, &req, b"{}").unwrap(), None);
        assert_eq!(exec_plugin(&garbage, &req, b"{}").unwrap_err().code, 6);
        assert_eq!(
            exec_plugin(&scratch.0.join("absent"), &req, b"{}")
                .unwrap_err()
                .code,
            5
        );

        // delegate_ipam: the caller's env and stdin go through unchanged and
        // a 0.2.0 answer comes back in the common model.
        let stdin = br#"{"cniVersion":"0.2.0","name":"n","type":"tether-bridge","ipam":{"type":"echo-ipam"}}"#;
        let vars: HashMap<&str, String> = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", "c2".to_string()),
            ("CNI_NETNS", "/run/netns/c2".to_string()),
            ("CNI_IFNAME", "eth1".to_string()),
            ("CNI_PATH", dir.clone()),
        ]
        .into();
        let call = Call::new(
            Env::from_vars(|k| vars.get(k).cloned()).unwrap(),
            NetConf::parse(stdin).unwrap(),
            stdin.to_vec(),
        )
        .unwrap();
        let result = delegate_ipam(call.conf.ipam_type().unwrap(), &call, Command::Add)
            .unwrap()
            .unwrap();
        assert_eq!(result.ips[0].address.to_string(), "10.1.0.2/24");
        assert_eq!(result.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(
            std::fs::read(scratch.0.join("stdin")).unwrap(),
            stdin.to_vec()
        );
        assert!(std::fs::read_to_string(scratch.0.join("env"))
            .unwrap()
            .contains("CNI_CONTAINERID=c2\n"));

        assert_eq!(
            delegate_ipam("echo-ipam", &call, Command::Del).unwrap(),
            None
        );
        let err = delegate_ipam("quiet", &call, Command::Add).unwrap_err();
        assert!(err.msg.contains("no result"), "{}", err.msg);
        assert_eq!(
            delegate_ipam("busy", &call, Command::Add).unwrap_err().code,
            11
        );
    }
}
