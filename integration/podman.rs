//! podman 4 with its CNI backend over tether's plugins and conflists: two `--rootfs` containers on a
//! tether network reach each other, `-p` publishes to an outside namespace, `podman rm` frees their
//! addresses and firewall elements; and podman's hooks.d runs `tether hook` for a container that
//! carries a `tether.network` annotation. Everything podman writes stays in the test's scratch dir.

#[path = "harness/mod.rs"]
mod harness;

use std::process::Command;

use harness::busybox_rootfs;
use harness::hook_host::{fetch_from, HookHost};
use harness::nft;
use harness::podman::Podman;
use serde_json::json;

/// podman for `host`, with a hooks.d holding tether's hook (matching `tether.network` annotations).
fn podman(host: &HookHost) -> Podman {
    let hooks_dir = host.host.dir().join("hooks.d");
    std::fs::create_dir_all(&hooks_dir).unwrap();
    let hook = json!({
        "version": "1.0.0",
        "hook": {
            "path": harness::binaries::tether(),
            "args": ["tether", "hook"],
            "env": host.hook_env(),
        },
        "when": {"annotations": {"^tether\\.network$": ".+"}},
        "stages": ["createRuntime", "poststop"]
    });
    std::fs::write(hooks_dir.join("tether.json"), hook.to_string()).unwrap();
    // The plugins podman runs inherit its environment: point their state at the test's dirs.
    let env = host
        .hook_env()
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Podman::new(
        &host.host.ns,
        &host.host.dir().join("podman"),
        &host.conf_dir,
        &hooks_dir,
        &host.cache_dir,
        env,
    )
}

fn rootfs(host: &HookHost, name: &str, page: &str) -> std::path::PathBuf {
    busybox_rootfs::make(&host.host.dir().join(format!("rootfs-{name}")), page)
}

fn container_fetch(podman: &Podman, name: &str, url: &str) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..3 {
        // `timeout`, not wget's own -T: busybox 1.35's `wget -T` dies of SIGSEGV.
        let out = podman.output(&["exec", name, "timeout", "5", "wget", "-q", "-O", "-", url]);
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    Err(last)
}

fn ipv4_in(netns: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "-j", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    links[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or_else(|| panic!("no IPv4 address on eth0 in {netns}: {links}"))
        .to_string()
}

#[test]
fn podman_containers_on_a_tether_network_talk_publish_and_free_their_addresses() {
    let host = HookHost::new("pm");
    let outside = host.host.outside();
    let podman = podman(&host);

    let web_root = rootfs(&host, "web", "hello from podman web\n");
    let client_root = rootfs(&host, "client", "");
    podman.run(
        &["--name", "web", "--network", "front", "-p", "8080:80"],
        &web_root,
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    podman.run(
        &["--name", "client", "--network", "front"],
        &client_root,
        &["sleep", "600"],
    );

    let web_ip = podman.inspect("web", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let client_ip = podman.inspect("client", "{{.NetworkSettings.Networks.front.IPAddress}}");
    assert!(web_ip.starts_with("10.77.0."), "web got {web_ip:?}");
    assert!(
        client_ip.starts_with("10.77.0.") && client_ip != web_ip,
        "client got {client_ip:?}"
    );
    assert_eq!(ipv4_in(&podman.netns_path("web")), web_ip);

    let page = container_fetch(&podman, "client", &format!("http://{web_ip}/"))
        .unwrap_or_else(|e| panic!("client cannot fetch web: {e}"));
    assert_eq!(page, "hello from podman web\n");
    let page = fetch_from(
        &outside.ns.path_str(),
        &format!("http://{}:8080/", outside.host_addr),
    )
    .unwrap_or_else(|e| panic!("outside cannot reach web through 8080: {e}"));
    assert_eq!(page, "hello from podman web\n");

    podman.remove("web");
    podman.remove("client");
    host.assert_nothing_left(&[web_ip, client_ip]);
}

#[test]
fn podman_hooks_d_runs_tether_hook_for_an_annotated_container() {
    let host = HookHost::new("ph");
    let outside = host.host.outside();
    let podman = podman(&host);

    let web_root = rootfs(&host, "hooked", "hello from the hook\n");
    // podman itself gives it only loopback; the hook attaches it and publishes 8081.
    podman.run(
        &[
            "--name",
            "hooked",
            "--network",
            "none",
            "--annotation",
            "tether.network=front",
            "--annotation",
            "tether.ports=8081:80",
            "--annotation",
            "tether.name=hooked",
        ],
        &web_root,
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let ip = ipv4_in(&podman.netns_path("hooked"));
    assert!(ip.starts_with("10.77.0."), "hooked got {ip}");
    assert_eq!(
        host.cached_results().len(),
        1,
        "{:?}",
        host.cached_results()
    );
    let page = fetch_from(
        &outside.ns.path_str(),
        &format!("http://{}:8081/", outside.host_addr),
    )
    .unwrap_or_else(|e| panic!("outside cannot reach the hooked container through 8081: {e}"));
    assert_eq!(page, "hello from the hook\n");
    assert!(nft::has_element(&host.host.ns, &ip));
    // podman mounts its own /etc/hosts over the rootfs, so the hook leaves that file alone; with
    // `--network none` podman mounts no resolv.conf, so the hook writes the container's.
    let hosts = std::fs::read_to_string(web_root.join("etc/hosts")).unwrap_or_default();
    assert!(
        !hosts.contains("tether hook"),
        "the hook wrote /etc/hosts under podman's mount"
    );
    let resolv = std::fs::read_to_string(web_root.join("etc/resolv.conf")).unwrap_or_default();
    assert!(
        resolv.contains("tether hook"),
        "no resolv.conf from the hook: {resolv:?}"
    );

    podman.remove("hooked");
    host.assert_nothing_left(&[ip]);
}

/// podman 4.3's CNI backend sends the container's `--name` as K8S_POD_NAME in CNI_ARGS and its
/// `--network-alias`es as the `aliases` capability: tether-bridge records both and tetherd answers them.
#[test]
fn podman_containers_resolve_each_other_by_name_and_network_alias() {
    let host = HookHost::new("pd");
    let podman = podman(&host);
    let web_root = rootfs(&host, "web", "");
    let client_root = rootfs(&host, "client", "");
    podman.run(
        &[
            "--name",
            "web",
            "--network",
            "front",
            "--network-alias",
            "www",
        ],
        &web_root,
        &["sleep", "600"],
    );
    podman.run(
        &["--name", "client", "--network", "front"],
        &client_root,
        &["sleep", "600"],
    );
    let web_ip = podman.inspect("web", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let client_ip = podman.inspect("client", "{{.NetworkSettings.Networks.front.IPAddress}}");

    let resolv = podman.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    // podman puts the network's resolver first and appends the machine's own after it.
    assert_eq!(
        nameservers.first(),
        Some(&"127.0.0.11"),
        "podman's resolv.conf: {resolv}"
    );
    for (from, name, ip) in [
        ("client", "web", &web_ip),
        ("client", "www", &web_ip),
        ("client", "web.front", &web_ip),
        ("web", "client", &client_ip),
    ] {
        let out = podman.output(&["exec", from, "nslookup", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(ip.as_str()),
            "{from}: nslookup {name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    podman.remove("web");
    let out = podman.output(&["exec", "client", "nslookup", "web.front"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("NXDOMAIN"),
        "web.front after podman rm web: {text}"
    );
    podman.remove("client");
    host.assert_nothing_left(&[web_ip, client_ip]);
}

/// `tether` on the hook host's namespace and dirs; expects success and returns stdout.
fn tether_ok(host: &HookHost, args: &[&str]) -> String {
    let env = host
        .hook_env()
        .into_iter()
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect::<Vec<_>>();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", host.host.ns.path_str()))
        .arg("--")
        .arg(harness::binaries::tether())
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

/// podman containers with `--network-alias api` are the backends of service `api`: they join once their
/// HTTP health check passes, and a client container's requests to the VIP reach both.
#[test]
fn podman_containers_with_a_network_alias_become_service_backends() {
    let host = HookHost::new("psv");
    let podman = podman(&host);
    for name in ["api1", "api2"] {
        let root = rootfs(&host, name, &format!("{name}\n"));
        podman.run(
            &[
                "--name",
                name,
                "--network",
                "front",
                "--network-alias",
                "api",
            ],
            &root,
            &["httpd", "-f", "-p", "80", "-h", "/www"],
        );
    }
    let client_root = rootfs(&host, "client", "");
    podman.run(
        &["--name", "client", "--network", "front"],
        &client_root,
        &["sleep", "600"],
    );
    let spec: serde_json::Value = serde_json::from_str(&tether_ok(
        &host,
        &[
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
            "api",
        ],
    ))
    .unwrap();
    let vip = spec["vips"][0].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&tether_ok(&host, &["service", "inspect", "api"])).unwrap();
        let healthy: Vec<&str> = v[0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["health"] == "healthy")
            .filter_map(|b| b["name"].as_str())
            .collect();
        if healthy.len() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backends never healthy: {v:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut pages = std::collections::HashSet::new();
    for _ in 0..30 {
        let page = container_fetch(&podman, "client", &format!("http://{vip}/"))
            .unwrap_or_else(|e| panic!("client cannot fetch the VIP {vip}: {e}"));
        pages.insert(page);
    }
    assert_eq!(pages.len(), 2, "30 requests to the VIP reached {pages:?}");
    let out = podman.output(&["exec", "client", "nslookup", "api"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&vip),
        "nslookup api: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    tether_ok(&host, &["service", "rm", "api"]);
    for name in ["api1", "api2", "client"] {
        podman.remove(name);
    }
}
