//! /etc/resolv.conf and /etc/hosts in the container's rootfs after an attach, as Docker writes them.
//! Skipped when the rootfs is read-only or missing, and per file when the runtime mounts its own over
//! it (podman does: its copy is what the container sees).

use std::path::Path;

use crate::cni::result::CniResult;
use crate::endpoint::Attachment;

use super::bundle_config::BundleConfig;
use super::hosts_file::HostsFile;
use super::resolv_conf::ResolvConf;
use super::rootfs_file::write_in_rootfs;

/// The host resolv.conf copied when no network names a resolver; `TETHER_RESOLV_CONF` overrides it, as
/// it does for tetherd's forwarder.
fn host_resolv_conf_path() -> std::path::PathBuf {
    match std::env::var_os("TETHER_RESOLV_CONF") {
        Some(path) if !path.is_empty() => path.into(),
        _ => "/etc/resolv.conf".into(),
    }
}

/// Writes both files; a failure is logged and does not fail the hook (the container is networked;
/// a missing resolv.conf is not worth refusing to start it).
pub fn write_container_files(
    bundle: &Path,
    config: &BundleConfig,
    attachments: &[Attachment],
    names: Vec<String>,
) {
    let Some(rootfs) = config.writable_rootfs(bundle) else {
        tracing::debug!("rootfs read-only or absent; not writing /etc/resolv.conf or /etc/hosts");
        return;
    };
    let results: Vec<CniResult> = attachments
        .iter()
        .map(|a| CniResult::from_json(&a.result).unwrap_or_default())
        .collect();
    if !config.mounts_over(Path::new("/etc/resolv.conf")) {
        let host = std::fs::read_to_string(host_resolv_conf_path()).ok();
        let dns: Vec<_> = results.iter().map(|r| &r.dns).collect();
        let text = ResolvConf::for_container(&dns, host.as_deref()).render();
        report(write_in_rootfs(&rootfs, "etc", "resolv.conf", &text));
    }
    if !config.mounts_over(Path::new("/etc/hosts")) {
        let hosts = HostsFile {
            addresses: attachments
                .iter()
                .flat_map(|a| a.ips.iter().map(|ip| ip.ip()))
                .collect(),
            names,
        };
        report(write_in_rootfs(&rootfs, "etc", "hosts", &hosts.render()));
    }
}

fn report(outcome: Result<std::path::PathBuf, super::error::HookError>) {
    match outcome {
        Ok(path) => tracing::debug!(path = %path.display(), "wrote"),
        Err(e) => tracing::warn!("{e}; the container starts without it"),
    }
}
