//! Debian's dockerd (docker.io 20.10) in the test's own host namespace and a private mount namespace with its
//! own /run (a tmpfs), data root, exec root and pidfile, and `tetherd --docker-plugin` serving it. dockerd
//! finds plugins only at `/run/docker/plugins/NAME.sock`: that directory is a bind mount of the test's
//! scratch directory inside dockerd's mount namespace only, so the machine's /run/docker is never touched.
//! Its iptables rules live in the test's namespace. Everything is stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::busybox_rootfs;
use super::HostNs;

pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// The client of the same package (a newer client on PATH may speak an API this daemon lacks).
pub const DOCKER: &str = "/usr/bin/docker";
/// The image every container runs: busybox-static, made with `docker import`.
pub const IMAGE: &str = "tether-busybox:test";

pub struct Dockerd {
    ns_path: String,
    dir: PathBuf,
    socket: PathBuf,
    state_dir: PathBuf,
    run_dir: PathBuf,
    daemon: Option<Child>,
    tetherd: Option<Child>,
}

fn stop(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Dockerd {
    /// Starts dockerd and tetherd in `host`, and imports the busybox image. Panics, saying why, when
    /// dockerd cannot run here: this test never passes without having run.
    pub fn start(host: &HostNs) -> Dockerd {
        assert!(
            Path::new(DOCKERD).exists() && Path::new(DOCKER).exists(),
            "{DOCKERD} or {DOCKER} is missing: install Debian's docker.io"
        );
        let dir = host.dir().join("docker");
        for sub in ["data", "exec", "plugins"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating dockerd's directories");
        }
        let mut d = Dockerd {
            ns_path: host.path_str(),
            socket: dir.join("docker.sock"),
            state_dir: host.state_dir(),
            run_dir: host.run_dir(),
            dir,
            daemon: None,
            tetherd: None,
        };
        d.start_tetherd();
        d.start_daemon();
        d.import_image();
        d
    }

    fn start_daemon(&mut self) {
        let dir = self.dir.display().to_string();
        // exec all the way down: the child's pid is dockerd's, so stopping it stops dockerd.
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/docker/plugins; \
             mount --bind {dir}/plugins /run/docker/plugins; \
             exec {DOCKERD} -H unix://{dir}/docker.sock --data-root {dir}/data --exec-root {dir}/exec \
             --pidfile {dir}/docker.pid --bridge=none --iptables=true --ip-masq=false \
             --exec-opt native.cgroupdriver=cgroupfs --storage-driver=vfs --shutdown-timeout=1"
        );
        let log = std::fs::File::create(self.dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .args([
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning dockerd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.docker(&["version"]).status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                panic!(
                    "dockerd exited ({status}) instead of starting in the test's namespaces; its log:\n{}",
                    log_tail(&self.dir.join("dockerd.log"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s; its log:\n{}",
                log_tail(&self.dir.join("dockerd.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops dockerd (its containers die with it: no live-restore) and starts it again.
    pub fn restart_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            stop(&mut child, Duration::from_secs(30));
        }
        self.start_daemon();
    }

    /// Both down, then tetherd first and dockerd after it.
    pub fn restart_daemon_with_tetherd_first(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            stop(&mut child, Duration::from_secs(30));
        }
        self.start_tetherd();
        self.start_daemon();
    }

    fn plugin_socket(&self) -> PathBuf {
        self.dir.join("plugins/tether.sock")
    }

    /// `tetherd --docker-plugin` in the host namespace, on the socket dockerd sees as
    /// /run/docker/plugins/tether.sock.
    pub fn start_tetherd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tetherd.log"))
            .expect("tetherd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path))
            .arg(env!("CARGO_BIN_EXE_tetherd"))
            .arg("--docker-plugin")
            .arg("--docker-socket")
            .arg(self.plugin_socket())
            .env("TETHER_STATE_DIR", &self.state_dir)
            .env("TETHER_RUN_DIR", &self.run_dir)
            .env("TETHER_CONF_DIR", self.dir.join("cni"))
            .env("TETHER_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning tetherd --docker-plugin");
        self.tetherd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(self.plugin_socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "tetherd --docker-plugin did not listen within 10 s; its log:\n{}",
                self.tetherd_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills tetherd (SIGKILL: no chance to tidy up), as a crash would.
    pub fn kill_tetherd(&mut self) {
        if let Some(mut child) = self.tetherd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn tetherd_log(&self) -> String {
        log_tail(&self.dir.join("tetherd.log"))
    }

    fn import_image(&self) {
        let rootfs = busybox_rootfs::make(&self.dir.join("rootfs"), "hello from tether\n");
        let tarball = self.dir.join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .output()
            .expect("spawning tar");
        assert!(tar.status.success(), "tar of the busybox rootfs failed");
        self.docker_ok(&["import", &tarball.display().to_string(), IMAGE]);
    }

    /// `/usr/bin/docker -H unix://<this dockerd> args`.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .expect("spawning the docker client")
    }

    /// Like `docker`, panicking with stderr (and tetherd's log) on failure; returns stdout trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\ntetherd's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.tetherd_log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker run -d --name NAME --network NETWORK FLAGS... IMAGE COMMAND...`.
    pub fn run_on(&self, (name, network): (&str, &str), flags: &[&str], command: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.docker_ok(&args);
    }

    /// A container of the image on `network`, sleeping.
    pub fn run_sleeper(&self, name: &str, network: &str) {
        self.run_on((name, network), &[], &["sleep", "600"]);
    }

    /// The address `container` has on `network`.
    pub fn address_of(&self, container: &str, network: &str) -> String {
        self.docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ])
    }

    /// Runs `sh -c script` in a running container; whether it succeeded.
    pub fn exec_in(&self, container: &str, script: &str) -> Output {
        self.docker(&["exec", container, "sh", "-c", script])
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first, so dockerd's shutdown does not wait for them; then the daemon, then the plugin
        // (dockerd's last calls go to it).
        let ids = self.docker(&["ps", "-aq"]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.docker(&args);
        }
        if let Some(mut child) = self.daemon.take() {
            stop(&mut child, Duration::from_secs(30));
        }
        self.kill_tetherd();
    }
}
