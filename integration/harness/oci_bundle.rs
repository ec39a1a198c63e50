//! An OCI bundle (runtime-spec `bundle.md`): a busybox rootfs and a config.json made here, with the
//! test's `tether hook` installed as createRuntime and poststop hooks. The spec asks for a new network
//! namespace without a path, so the runtime makes an empty one and the hook networks it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::busybox_rootfs;

pub struct OciBundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl OciBundle {
    /// A bundle in `dir` running `args`; its `/www/index.html` holds `page`.
    pub fn new(dir: &Path, hostname: &str, page: &str, args: &[&str]) -> OciBundle {
        busybox_rootfs::make(&dir.join("rootfs"), page);
        // CAP_NET_RAW for busybox ping; the rest is what `runc spec` grants.
        let caps = json!([
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW"
        ]);
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": hostname,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                    {"type": "mount"}
                ],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
            },
            "annotations": {}
        });
        OciBundle {
            dir: dir.to_path_buf(),
            config,
        }
    }

    /// Installs `tether hook <args>` as the createRuntime and poststop hook with exactly `env` (runc
    /// and crun give a hook only its own env, not the runtime's).
    pub fn tether_hook(&mut self, tether: &Path, args: &[&str], env: &[String]) -> &mut Self {
        let mut argv = vec!["tether".to_string(), "hook".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let hook = json!({"path": tether, "args": argv, "env": env});
        self.config["hooks"] = json!({"createRuntime": [hook.clone()], "poststop": [hook]});
        self
    }

    pub fn annotation(&mut self, key: &str, value: &str) -> &mut Self {
        self.config["annotations"][key] = json!(value);
        self
    }

    /// Drops the `network` namespace: the container shares the runtime's.
    pub fn share_host_network(&mut self) -> &mut Self {
        let namespaces = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "network");
        self
    }

    pub fn write(&self) -> &Self {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        std::fs::write(self.dir.join("config.json"), text).expect("writing config.json");
        self
    }

    pub fn rootfs_file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join("rootfs").join(path)).ok()
    }
}
