//! The IPAM store on disk (`<dataDir>/<network>/`): lease files named by IP, `attachments/`.

use std::net::IpAddr;
use std::path::Path;

/// Lease files of a network: (IP, file content). host-local uses the same layout.
pub fn leases(data_dir: &Path, network: &str) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return vec![];
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.parse::<IpAddr>().ok()?;
            let content = std::fs::read_to_string(e.path()).unwrap_or_default();
            Some((name, content))
        })
        .collect();
    out.sort();
    out
}

/// Attachment records of a network: file names `<container_id>.<ifname>`.
pub fn attachments(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network).join("attachments")) else {
        return vec![];
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// "Empty store": no lease files and no attachment records.
pub fn is_empty(data_dir: &Path, network: &str) -> bool {
    leases(data_dir, network).is_empty() && attachments(data_dir, network).is_empty()
}

/// Every lease file anywhere under `data_dir` (for "left nothing behind" checks).
pub fn all_leases(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .flat_map(|e| {
            let net = e.file_name().to_string_lossy().into_owned();
            leases(data_dir, &net)
                .into_iter()
                .map(move |(ip, _)| format!("{net}/{ip}"))
        })
        .collect()
}
