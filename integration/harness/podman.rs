//! podman 4 with its CNI backend, hermetic: its storage, run and temp dirs, containers.conf, hooks.d
//! and CNI config dir live in the test's scratch directory; it runs inside the test's host namespace,
//! in a mount namespace of its own where the test's cache dir is bind-mounted over /var/lib/cni
//! (libcni's result cache, which podman 4.3 offers no setting for); its cgroups go under a parent
//! named for the test and are removed on drop, with every container it made.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::binaries;
use super::netns::NetNs;

/// libcni's compiled-in cache directory.
const LIBCNI_CACHE: &str = "/var/lib/cni";

pub struct Podman {
    host: NetNs,
    dir: PathBuf,
    /// Environment for podman and, through it, for the CNI plugins and hooks it runs.
    env: Vec<(String, String)>,
    cni_cache: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    /// `dir` holds everything podman writes; `conf_dir` is its CNI network config dir; `hooks_dir` its
    /// hooks.d; `env` goes to podman (the CNI plugins inherit it).
    pub fn new(
        host: &NetNs,
        dir: &Path,
        conf_dir: &Path,
        hooks_dir: &Path,
        cni_cache: &Path,
        env: Vec<(String, String)>,
    ) -> Podman {
        let version = Command::new("podman").arg("--version").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "podman not found; install Debian's `podman` package (.ci/run does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let plugin_dir = binaries::tether_bridge().parent().unwrap().to_path_buf();
        let conf_path = dir.join("containers.conf");
        let mut env = env;
        env.push(("CONTAINERS_CONF".into(), conf_path.display().to_string()));
        // conmon gets only conmon_env_vars, and hands them to the `podman container cleanup` it runs when the
        // container exits. That cleanup races `podman rm` to tear the network down; without this config and
        // the plugins' TETHER_* dirs it ran DEL against the machine's default dirs, leaving the test's
        // attachment record (and tetherd's names) behind whenever it won.
        let conmon_env: Vec<String> = std::iter::once(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        ))
        .chain(env.iter().map(|(k, v)| format!("{k}={v}")))
        .map(|pair| format!("{pair:?}"))
        .collect();
        // default_ulimits: podman's default nofile limit needs CAP_SYS_RESOURCE, which we lack.
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}", "{reference}"]
network_config_dir = "{conf}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
hooks_dir = ["{hooks}"]
conmon_env_vars = [{conmon_env}]
"#,
            plugins = plugin_dir.display(),
            reference = binaries::REFERENCE_PLUGIN_DIR,
            conf = conf_dir.display(),
            hooks = hooks_dir.display(),
            conmon_env = conmon_env.join(", "),
        );
        std::fs::write(&conf_path, conf).unwrap();
        std::fs::create_dir_all(cni_cache).unwrap();
        // The bind target must exist; on a machine with containernetworking-plugins it does.
        std::fs::create_dir_all(LIBCNI_CACHE).unwrap();
        let cgroup_parent = format!("/{}-podman", host.name);
        Podman {
            host: host.clone(),
            dir: dir.to_path_buf(),
            env,
            cni_cache: cni_cache.to_path_buf(),
            cgroup_parent,
        }
    }

    /// `podman <global flags> <args>` in the host namespace, in its own mount namespace where the
    /// test's cache dir hides /var/lib/cni. Propagation stays as it is (`--propagation unchanged`), so
    /// the namespace files podman mounts under the shared /run/netns outlive this command, as podman
    /// needs; the mount holding /var/lib/cni is made private first, so the cache bind stays here.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.path_str()))
            .args([
                "--",
                "unshare",
                "-m",
                "--propagation",
                "unchanged",
                "sh",
                "-ec",
            ])
            .arg(format!(
                "mount --make-private \"$(findmnt -n -o TARGET -T {LIBCNI_CACHE})\"; \
                 mount --bind {cache} {LIBCNI_CACHE}; exec podman \"$@\"",
                cache = self.cni_cache.display()
            ))
            .arg("podman")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"])
            .args(args);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawning podman {args:?}: {e}"))
    }

    /// Runs `args`, panicking with podman's stderr when it fails; returns stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d --cgroup-parent P <flags> --rootfs <rootfs> <command>`; returns the container id.
    /// `--rootfs` takes the rootfs as the image argument, so every flag must come before it.
    pub fn run(&self, flags: &[&str], rootfs: &Path, command: &[&str]) -> String {
        let rootfs = rootfs.display().to_string();
        let mut args = vec!["run", "-d", "--cgroup-parent", &self.cgroup_parent];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--rootfs", &rootfs]);
        args.extend_from_slice(command);
        self.ok(&args)
    }

    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
    }

    /// The container's network namespace, for `nsenter`.
    pub fn netns_path(&self, name: &str) -> String {
        format!("/proc/{}/ns/net", self.inspect(name, "{{.State.Pid}}"))
    }

    /// `rm -f -t 0`: no 10 s wait for a PID 1 that ignores SIGTERM (busybox httpd, sleep).
    pub fn remove(&self, name: &str) {
        self.ok(&["rm", "-f", "-t", "0", name]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.output(&["rm", "-af", "-t", "0"]);
        // conmon leaves its cgroup a moment after the container is gone.
        for _ in 0..50 {
            if remove_cgroup_tree(&self.cgroup_parent) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// rmdir of the parent and everything below it in every v1 hierarchy and the unified one, deepest
/// first (cgroup directories go with rmdir only, when empty).
/// True when no hierarchy holds the parent any more.
fn remove_cgroup_tree(parent: &str) -> bool {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return true;
    };
    let mut gone = true;
    for hierarchy in hierarchies.filter_map(Result::ok) {
        let root = hierarchy.path().join(parent.trim_start_matches('/'));
        remove_dirs_below(&root);
        gone &= !root.exists();
    }
    gone
}

fn remove_dirs_below(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs_below(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
