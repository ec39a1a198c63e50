//! Real etcd (Debian's etcd-server 3.4) for the cluster-store tests: members run in a namespace the test
//! made (the overlay fabric), on addresses of that namespace, with data under its scratch directory;
//! SIGKILLed on drop. A member can be killed and started again on its data (an outage), and the cluster
//! can be asked things with `etcdctl`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::HostNs;

/// The binary, or a failing test that says how to get it (never a skip).
fn etcd_binary() -> &'static str {
    assert!(
        std::path::Path::new("/usr/bin/etcd").exists(),
        "etcd is not installed: apt-get install etcd-server etcd-client (scripts/test does)"
    );
    "/usr/bin/etcd"
}

struct Member {
    name: String,
    addr: String,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Certificates for an etcd that serves TLS and wants client certificates: a CA, the members' certificate
/// (for every member address) and one client certificate, all made with openssl for the test.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl EtcdTls {
    pub fn make(dir: &std::path::Path, addrs: &[&str]) -> EtcdTls {
        std::fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tether-test-ca",
        ]);
        openssl(dir, &ca);
        let sans: Vec<String> = addrs.iter().map(|a| format!("IP:{a}")).collect();
        for (name, ext) in [
            (
                "server",
                format!(
                    "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                    sans.join(",")
                ),
            ),
            ("client", "extendedKeyUsage=clientAuth\n".to_string()),
        ] {
            let ext_file = dir.join(format!("{name}.ext"));
            std::fs::write(&ext_file, ext).unwrap();
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=tether-test"]);
            openssl(dir, &req);
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    ext_file.to_str().unwrap(),
                ],
            );
        }
        EtcdTls {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// One or more etcd members in `ns`.
pub struct Etcd {
    /// `--net=` path of the namespace the members run in.
    ns: String,
    members: Vec<Member>,
    initial_cluster: String,
    pub tls: Option<EtcdTls>,
}

impl Etcd {
    /// Starts one member per address (each must be an address of `ns`) and waits until the cluster is
    /// healthy.
    pub fn start(ns: &HostNs, addrs: &[&str]) -> Etcd {
        Etcd::start_with(ns, addrs, None)
    }

    /// With `tls`, the members serve https and require a client certificate signed by its CA.
    pub fn start_with(ns: &HostNs, addrs: &[&str], tls: Option<EtcdTls>) -> Etcd {
        let members: Vec<Member> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| Member {
                name: format!("e{i}"),
                addr: addr.to_string(),
                data: ns.dir().join(format!("etcd-e{i}")),
                log: ns.dir().join(format!("etcd-e{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            ns: ns.path_str(),
            members,
            initial_cluster,
            tls,
        };
        for i in 0..etcd.members.len() {
            etcd.start_member(i);
        }
        etcd.wait_healthy();
        etcd
    }

    /// The client URLs, as `overlay.store.etcd.endpoints` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{}:2379", self.scheme(), m.addr))
            .collect()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The endpoints of running members and the TLS flags, for etcdctl.
    fn ctl_args(&self) -> Vec<String> {
        let endpoints: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}://{}:2379", self.scheme(), m.addr))
            .collect();
        let mut args = vec![format!("--endpoints={}", endpoints.join(","))];
        if let Some(t) = &self.tls {
            args.push(format!("--cacert={}", t.ca.display()));
            args.push(format!("--cert={}", t.client_cert.display()));
            args.push(format!("--key={}", t.client_key.display()));
        }
        args
    }

    pub fn start_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let client = format!(
            "{}://{}:2379",
            if self.tls.is_some() { "https" } else { "http" },
            m.addr
        );
        let peer = format!("http://{}:2380", m.addr);
        let tls_args: Vec<String> = match &self.tls {
            Some(t) => vec![
                format!("--cert-file={}", t.server_cert.display()),
                format!("--key-file={}", t.server_key.display()),
                format!("--trusted-ca-file={}", t.ca.display()),
                "--client-cert-auth".to_string(),
            ],
            None => Vec::new(),
        };
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns))
            .arg("--")
            .arg(etcd_binary())
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-token",
                "tether-test",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// The process id of the first running member (nsenter execs etcd, so it is etcd's), for benches
    /// that read its CPU time.
    pub fn pid(&self) -> u32 {
        self.members
            .iter()
            .find_map(|m| m.child.as_ref().map(Child::id))
            .expect("a member runs")
    }

    /// SIGKILL one member (its data stays for a restart).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcdctl ARGS` against the members still running; panics with its output on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns))
            .args(["--", "etcdctl", "--dial-timeout=2s", "--command-timeout=5s"])
            .args(self.ctl_args())
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "--write-out=json", "/"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }

    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("nsenter")
                .arg(format!("--net={}", self.ns))
                .args(["--", "etcdctl", "--dial-timeout=1s", "--command-timeout=2s"])
                .args(self.ctl_args())
                .args(["put", "/health-probe", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| std::fs::read_to_string(&m.log).unwrap_or_default())
                    .collect();
                panic!("etcd did not become healthy:\n{}", logs.join("\n----\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
        for m in &self.members {
            let _ = std::fs::remove_dir_all(&m.data);
        }
    }
}
