//! What this kernel can do for tether, found by trying: links are made in a scratch network namespace
//! that only a short-lived thread of ours is in (it vanishes with the thread), nftables tables and an
//! IPsec state in one that only a short-lived `unshare --net` child is in. Nothing of the namespace doctor
//! runs in is touched.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::link::{LinkError, MacAddr, MacvlanMode, MacvlanSpec, Netlink, VxlanSpec};
use crate::netns::NetNs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Feature {
    Bridge,
    Veth,
    Macvlan,
    Vxlan,
    Vlan8021q,
    NftIp,
    NftIp6,
    NftInet,
    NftNat,
    NftBridge,
    NftNetdev,
    Esp,
}

impl Feature {
    pub fn describe(self) -> &'static str {
        match self {
            Feature::Bridge => "Linux bridge (module bridge)",
            Feature::Veth => "veth pairs (module veth)",
            Feature::Macvlan => "macvlan (module macvlan)",
            Feature::Vxlan => "VXLAN (module vxlan)",
            Feature::Vlan8021q => crate::link::VLAN_FEATURE,
            Feature::NftIp => "nf_tables family ip",
            Feature::NftIp6 => "nf_tables family ip6",
            Feature::NftInet => "nf_tables family inet with ct and fib (nft_ct, nft_fib_inet)",
            Feature::NftNat => "nf_tables NAT and masquerade (nft_nat, nft_masq)",
            Feature::NftBridge => "nf_tables family bridge (nf_tables_bridge)",
            Feature::NftNetdev => "nf_tables family netdev",
            Feature::Esp => "IPsec ESP with AES-GCM (esp4, xfrm_user, gcm)",
        }
    }

    /// The kernel module to load (or the kernel config to build) when the feature is missing.
    pub fn module(self) -> &'static str {
        match self {
            Feature::Bridge => "bridge",
            Feature::Veth => "veth",
            Feature::Macvlan => "macvlan",
            Feature::Vxlan => "vxlan",
            Feature::Vlan8021q => "8021q",
            Feature::NftIp | Feature::NftIp6 | Feature::NftNetdev => "nf_tables",
            Feature::NftInet => "nf_tables nft_ct nft_fib_inet",
            Feature::NftNat => "nft_nat nft_masq",
            Feature::NftBridge => "nf_tables_bridge",
            Feature::Esp => "esp4 esp6 xfrm_user",
        }
    }
}

/// The answer for one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum Probe {
    Present,
    /// The kernel refused it as unknown.
    Missing(String),
    /// The try itself failed for another reason (no `nft`, no `unshare`, ...).
    Untested(String),
}

/// Tries every feature.
pub fn probe_all() -> Vec<(Feature, Probe)> {
    let mut out = link_probes();
    out.extend(nft_probes());
    out.push((Feature::Esp, esp_probe()));
    out
}

fn link_probes() -> Vec<(Feature, Probe)> {
    let kinds = [
        Feature::Veth,
        Feature::Bridge,
        Feature::Macvlan,
        Feature::Vxlan,
        Feature::Vlan8021q,
    ];
    let joined = std::thread::spawn(move || -> Result<Vec<(Feature, Probe)>, String> {
        // This thread alone enters the new namespace; it is freed when the thread ends.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot make a scratch network namespace: {e}"))?;
        let nl = Netlink::new().map_err(|e| e.to_string())?;
        let here = NetNs::current().map_err(|e| e.to_string())?;
        Ok(try_links(&nl, &here))
    })
    .join();
    match joined {
        Ok(Ok(found)) => found,
        Ok(Err(why)) => kinds
            .iter()
            .map(|&f| (f, Probe::Untested(why.clone())))
            .collect(),
        Err(_) => kinds
            .iter()
            .map(|&f| (f, Probe::Untested("the probe thread panicked".into())))
            .collect(),
    }
}

fn verdict(result: Result<(), LinkError>) -> Probe {
    match result {
        Ok(()) => Probe::Present,
        Err(e) => refusal(&e),
    }
}

/// The kernel's "Unknown device type" (EOPNOTSUPP) means the module is missing; anything else is no answer.
fn refusal(e: &LinkError) -> Probe {
    if matches!(e, LinkError::KernelFeatureMissing { .. }) || e.errno() == Some(libc::EOPNOTSUPP) {
        Probe::Missing(e.to_string())
    } else {
        Probe::Untested(e.to_string())
    }
}

fn try_links(nl: &Netlink, here: &NetNs) -> Vec<(Feature, Probe)> {
    let veth = nl
        .create_veth("tdoc0", "tdoc1", here, None, None)
        .map(|link| link.index);
    let veth_probe = match &veth {
        Ok(_) => Probe::Present,
        Err(e) => refusal(e),
    };
    let bridge = verdict(
        nl.ensure_bridge("tdocbr", None, MacAddr::new([0x02, 0, 0, 0, 0, 1]))
            .map(drop),
    );
    let Ok(parent) = veth else {
        let why = "no veth to hang it on".to_string();
        return vec![
            (Feature::Veth, veth_probe),
            (Feature::Bridge, bridge),
            (Feature::Macvlan, Probe::Untested(why.clone())),
            (Feature::Vxlan, Probe::Untested(why.clone())),
            (Feature::Vlan8021q, Probe::Untested(why)),
        ];
    };
    let macvlan = verdict(nl.add_macvlan(&MacvlanSpec {
        name: "tdocmv",
        parent_index: parent,
        mode: MacvlanMode::Bridge,
        netns: None,
        mtu: None,
        mac: None,
        source_macs: &[],
    }));
    let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let vxlan = nl
        .add_address(
            parent,
            ipnetwork::IpNetwork::new(local, 24).expect("valid prefix"),
            false,
        )
        .and_then(|()| {
            nl.ensure_vxlan(&VxlanSpec {
                name: "tdocvx".into(),
                vni: 42,
                local,
                underlay: parent,
                port: crate::link::VXLAN_PORT,
                mtu: None,
                master: None,
            })
        })
        .map(drop);
    let vlan = verdict(nl.add_vlan("tdocvl", parent, 10).map(drop));
    vec![
        (Feature::Veth, veth_probe),
        (Feature::Bridge, bridge),
        (Feature::Macvlan, macvlan),
        (Feature::Vxlan, verdict(vxlan)),
        (Feature::Vlan8021q, vlan),
    ]
}

/// Runs `program args` in a network namespace of its own, `input` on stdin; Err(why) when it failed.
fn in_scratch_namespace(program: &str, args: &[&str], input: &str) -> Result<(), String> {
    let mut child = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn nft_probes() -> Vec<(Feature, Probe)> {
    let scripts: [(Feature, &str); 6] = [
        (Feature::NftIp, "add table ip tdoc\n"),
        (Feature::NftIp6, "add table ip6 tdoc\n"),
        (
            Feature::NftInet,
            "add table inet tdoc\n\
             add chain inet tdoc f { type filter hook forward priority 0; }\n\
             add rule inet tdoc f ct state established,related accept\n\
             add rule inet tdoc f fib daddr type local accept\n",
        ),
        (
            Feature::NftNat,
            "add table inet tdoc\n\
             add chain inet tdoc n { type nat hook postrouting priority 100; }\n\
             add rule inet tdoc n masquerade\n",
        ),
        (
            Feature::NftBridge,
            "add table bridge tdoc\n\
             add chain bridge tdoc p { type filter hook prerouting priority 0; }\n",
        ),
        (Feature::NftNetdev, "add table netdev tdoc\n"),
    ];
    let have_nft = crate::paths::on_path("nft").is_some();
    scripts
        .iter()
        .map(|&(feature, script)| {
            if !have_nft {
                return (feature, Probe::Untested("nft is not installed".into()));
            }
            let probe = match in_scratch_namespace("nft", &["-f", "-"], script) {
                Ok(()) => Probe::Present,
                Err(why) if why.contains("cannot run unshare") => Probe::Untested(why),
                Err(why) => Probe::Missing(why),
            };
            (feature, probe)
        })
        .collect()
}

fn esp_probe() -> Probe {
    if crate::paths::on_path("ip").is_none() {
        return Probe::Untested("ip (iproute2) is not installed".into());
    }
    let key = format!("0x{}", "11".repeat(20));
    let args = [
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "spi",
        "0x1000",
        "mode",
        "transport",
        "aead",
        "rfc4106(gcm(aes))",
        &key,
        "128",
    ];
    match in_scratch_namespace("ip", &args, "") {
        Ok(()) => Probe::Present,
        Err(why) if why.contains("cannot run unshare") => Probe::Untested(why),
        Err(why) => Probe::Missing(why),
    }
}
