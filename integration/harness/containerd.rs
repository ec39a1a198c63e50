//! containerd 1.6 (Debian) and `ctr run --cni`, hermetic: containerd runs in the test's host namespace
//! with its root, state, socket and config in the test's scratch dir, under a containerd namespace named
//! for the test (so runc's root and the cgroups are the test's own). `ctr` runs the CNI chain itself, from
//! the dirs compiled into it: each `ctr` runs in a private mount namespace where the test's conf, plugin
//! and cache dirs are bind-mounted over /etc/cni/net.d, /opt/cni/bin and /var/lib/cni. Drop kills every
//! task and stops containerd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::netns::NetNs;

pub struct Containerd {
    host: NetNs,
    dir: PathBuf,
    conf_dir: PathBuf,
    plugin_dir: PathBuf,
    cache_dir: PathBuf,
    /// For ctr, and through it for the CNI plugins.
    env: Vec<(String, String)>,
    daemon: Child,
}

impl Containerd {
    /// `conf_dir` and `cache_dir` stand in for /etc/cni/net.d and /var/lib/cni; `plugins` are the binaries
    /// ctr finds in /opt/cni/bin.
    pub fn start(
        host: &NetNs,
        dir: &Path,
        conf_dir: &Path,
        cache_dir: &Path,
        plugins: &[PathBuf],
        env: Vec<(String, String)>,
    ) -> Containerd {
        let version = Command::new("containerd").arg("--version").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "containerd not found; install Debian's `containerd` package (.ci/run does)"
        );
        let plugin_dir = dir.join("cni-bin");
        for d in [dir, conf_dir, cache_dir, &plugin_dir, &dir.join("fifo")] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The bind targets must exist; on a machine with containerd's CNI use they do.
        for d in ["/etc/cni/net.d", "/var/lib/cni"] {
            std::fs::create_dir_all(d).unwrap();
        }
        for p in plugins {
            let _ = std::os::unix::fs::symlink(p, plugin_dir.join(p.file_name().unwrap()));
        }
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
"#,
                dir = dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("nsenter")
            .arg(format!("--net={}", host.path_str()))
            .args(["--", "containerd", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning containerd");
        let c = Containerd {
            host: host.clone(),
            dir: dir.to_path_buf(),
            conf_dir: conf_dir.to_path_buf(),
            plugin_dir,
            cache_dir: cache_dir.to_path_buf(),
            env,
            daemon,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 20 s; its log:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// `ctr run --cni --detach` of `command` in `rootfs`: IO to /dev/null, fifos and runc's root in the
    /// test's dir.
    pub fn run_cni(&self, id: &str, rootfs: &Path, command: &[&str]) {
        let fifo = self.dir.join("fifo").display().to_string();
        let runc_root = self.dir.join("runc").display().to_string();
        let rootfs = rootfs.display().to_string();
        let mut args = vec![
            "run",
            "--cni",
            "--detach",
            "--null-io",
            "--fifo-dir",
            &fifo,
            "--runc-root",
            &runc_root,
            "--rootfs",
            &rootfs,
            id,
        ];
        args.extend_from_slice(command);
        self.ctr_ok(&args);
    }

    /// The containerd namespace this test's containers live in (ctr's CNI container id is `NS-ID`).
    pub fn namespace(&self) -> &str {
        &self.host.name
    }

    /// `ctr <args>` against this containerd, in the host namespace, with the test's CNI dirs mounted
    /// where ctr looks for them.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.host.path_str()))
            .args(["--", "unshare", "-m", "sh", "-ec"])
            .arg(format!(
                "mount --bind {conf} /etc/cni/net.d; mount -t tmpfs tether-test /opt; \
                 mkdir -p /opt/cni/bin; mount --bind {plugins} /opt/cni/bin; \
                 mount --bind {cache} /var/lib/cni; exec ctr \"$@\"",
                conf = self.conf_dir.display(),
                plugins = self.plugin_dir.display(),
                cache = self.cache_dir.display(),
            ))
            .arg("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["--namespace", &self.host.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("spawning ctr")
    }

    /// Runs and expects success; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the task and deletes it, as a crashed runtime or `ctr task rm -f` would: no CNI DEL.
    pub fn kill_task(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.ctr(&["task", "delete", id]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ctr task delete {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let ids = |what: &str| -> Vec<String> {
            String::from_utf8_lossy(&self.ctr(&[what, "ls", "-q"]).stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        };
        for id in ids("task") {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", &id]);
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.ctr(&["task", "delete", "--force", &id]);
        }
        for id in ids("container") {
            let _ = self.ctr(&["container", "delete", &id]);
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
