//! A test host set up for `tether hook`: the host namespace, tether's config and libcni cache dirs,
//! a bridge network `front` on 10.77.0.0/24, the environment a hook gets, and the "nothing left"
//! checks after containers are gone.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use super::oci_bundle::OciBundle;
use super::oci_runtime::{OciRuntime, RuntimeKind};
use super::{binaries, nft, store, HostNs};

pub const SUBNET: &str = "10.77.0.0/24";

/// A test's host plus the directories a hook must be pointed at.
pub struct HookHost {
    pub host: HostNs,
    pub conf_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl HookHost {
    pub fn new(label: &str) -> HookHost {
        let host = HostNs::new(label);
        let conf_dir = host.dir().join("conf");
        let cache_dir = host.dir().join("cache");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::create_dir_all(&cache_dir).unwrap();
        let setup = HookHost {
            host,
            conf_dir,
            cache_dir,
        };
        setup.write_network("front", "tt0", SUBNET);
        // tetherd, which the bridge plugin starts for the network's DNS, forwards to this empty resolver
        // list (never the machine's) and exits soon after its last container.
        std::fs::write(setup.resolv_conf(), "").unwrap();
        std::fs::write(setup.daemon_conf(), r#"{"idleGraceMs": 500}"#).unwrap();
        setup
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.host.dir().join("resolv.conf")
    }

    pub fn daemon_conf(&self) -> PathBuf {
        self.host.dir().join("tetherd.json")
    }

    /// The pid of the tetherd serving this host, if one runs.
    pub fn tetherd_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.host.run_dir().join("tetherd.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        // Not our child (tetherd double-forks): a zombie entry would be its parent's to reap.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (!stat.contains(") Z ")).then_some(pid)
    }

    /// A bridge network as `tether network create` writes it: tether-bridge + tether-ipam + tether-portmap.
    pub fn write_network(&self, name: &str, bridge: &str, subnet: &str) {
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [
                {
                    "type": "tether-bridge",
                    "bridge": bridge,
                    "capabilities": {"ips": true, "mac": true, "aliases": true},
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "tether-ipam",
                        "ranges": [[{"subnet": subnet}]],
                        "dataDir": self.host.data_dir_str(),
                    }
                },
                {"type": "tether-portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        });
        let path = self.conf_dir.join(format!("{name}.conflist"));
        std::fs::write(path, serde_json::to_string_pretty(&conflist).unwrap()).unwrap();
    }

    /// The hook's whole environment: runc and crun pass it nothing else (no PATH either).
    pub fn hook_env(&self) -> Vec<String> {
        vec![
            format!("TETHER_STATE_DIR={}", self.host.state_dir().display()),
            format!("TETHER_RUN_DIR={}", self.host.run_dir().display()),
            format!("TETHER_CONF_DIR={}", self.conf_dir.display()),
            format!("TETHER_CNI_CACHE_DIR={}", self.cache_dir.display()),
            format!("CNI_PATH={}", binaries::cni_path()),
            format!("TETHER_RESOLV_CONF={}", self.resolv_conf().display()),
            format!("TETHER_DAEMON_CONFIG={}", self.daemon_conf().display()),
        ]
    }

    /// `tether ARGS` in the host namespace with the hook's environment; expects success, returns stdout.
    pub fn tether_ok(&self, args: &[&str]) -> String {
        let env = self
            .hook_env()
            .into_iter()
            .filter_map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect::<Vec<_>>();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.host.ns.path_str()))
            .arg("--")
            .arg(binaries::tether())
            .args(args)
            .envs(env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tether {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tether service create` on network `front`, port 80, HTTP health checked every 200 ms; waits (up
    /// to 20 s) until `backends` backends are healthy and returns the IPv4 VIP.
    pub fn create_http_service(&self, name: &str, backends: usize) -> String {
        let args = [
            "service",
            "create",
            "--json",
            "--network",
            "front",
            "--port",
            "80",
            "--health",
            "http:/",
            "--health-interval",
            "200",
            "--health-rise",
            "1",
            name,
        ];
        let spec: serde_json::Value = serde_json::from_str(&self.tether_ok(&args)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&self.tether_ok(&["service", "inspect", name])).unwrap();
            let healthy = v[0]["backends"]
                .as_array()
                .map(|b| b.iter().filter(|b| b["health"] == "healthy").count())
                .unwrap_or(0);
            if healthy == backends {
                return spec["vips"][0].as_str().unwrap().to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "backends never healthy: {v:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn bundle(&self, id: &str, page: &str, args: &[&str], hook_args: &[&str]) -> OciBundle {
        let mut bundle = OciBundle::new(&self.host.dir().join(id), id, page, args);
        bundle.tether_hook(&binaries::tether(), hook_args, &self.hook_env());
        // runc's default cgroup is /<id>: make it unique to this test run.
        bundle.config["linux"]["cgroupsPath"] = json!(format!("/{}-{id}", self.host.ns.name));
        bundle
    }

    pub fn runtime(&self, kind: RuntimeKind) -> OciRuntime {
        OciRuntime::new(kind, &self.host.ns, &self.host.dir().join(kind.binary()))
    }

    pub fn cached_results(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.cache_dir.join("results")) else {
            return vec![];
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    pub fn host_veths(&self) -> Vec<String> {
        self.host
            .ns
            .link_names()
            .into_iter()
            .filter(|n| n.starts_with("tv"))
            .collect()
    }

    /// Nothing of any container is left: no host veth, no lease, no cached result, and none of
    /// `addresses` in an nftables set or map.
    pub fn assert_nothing_left(&self, addresses: &[String]) {
        assert_eq!(self.host_veths(), Vec::<String>::new(), "host veths left");
        assert_eq!(
            store::all_leases(&self.host.data_dir()),
            Vec::<String>::new(),
            "leases left"
        );
        assert_eq!(
            self.cached_results(),
            Vec::<String>::new(),
            "cached results left"
        );
        for address in addresses {
            assert!(
                !nft::has_element(&self.host.ns, address),
                "{address} still in an nftables set: {:?}",
                nft::set_elements(&self.host.ns)
            );
        }
    }

    /// `tether hook ARGS` with the test's environment and `state` on stdin, inside the host namespace.
    pub fn run_hook(&self, args: &[&str], state: &str) -> std::process::Output {
        use std::io::Write;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host.ns.path_str()))
            .arg("--")
            .arg(binaries::tether())
            .arg("hook")
            .args(args)
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for pair in self.hook_env() {
            let (k, v) = pair.split_once('=').unwrap();
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(state.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// busybox wget from a namespace, a few tries (a fresh port may need a moment for ARP).
pub fn fetch_from(netns: &str, url: &str) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..3 {
        let out = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["timeout", "5", "busybox", "wget", "-q", "-O", "-", url])
            .output()
            .unwrap();
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    Err(last)
}
