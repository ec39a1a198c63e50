//! Everything the CLI prints on stdout: aligned tables for people, JSON for scripts. The only place
//! in the library that prints.

use serde::Serialize;

use crate::endpoint::{Attachment, PublishedPort};
use crate::network::NetworkInfo;
use crate::troubleshoot::inspect::Verdict;
use crate::troubleshoot::trace::StepVerdict;
use crate::troubleshoot::{DoctorReport, Finding, InspectReport, TraceReport};

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

pub fn json<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn port(p: &PublishedPort) -> String {
    let host = match p.host_ip {
        Some(ip) if ip.is_ipv6() => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    format!("{host}{}->{}/{}", p.host_port, p.container_port, p.protocol)
}

pub fn networks(list: &[NetworkInfo], as_json: bool, quiet: bool) {
    if as_json {
        return json(&list);
    }
    if quiet {
        for net in list {
            println!("{}", net.name);
        }
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.driver.clone(),
                join(&n.subnets),
                n.bridge.clone().unwrap_or_else(|| "-".into()),
                n.containers.len().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["NAME", "DRIVER", "SUBNETS", "BRIDGE", "CONTAINERS"],
            &rows
        )
    );
}

pub fn services(list: &[crate::state::service::ServiceSpec], as_json: bool, quiet: bool) {
    if as_json {
        return json(&list);
    }
    if quiet {
        for s in list {
            println!("{}", s.name);
        }
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.network.clone(),
                serde_json::to_value(s.mode)
                    .ok()
                    .and_then(|m| m.as_str().map(String::from))
                    .unwrap_or_default(),
                if s.vips.is_empty() {
                    "-".into()
                } else {
                    join(&s.vips)
                },
                if s.ports.is_empty() {
                    "-".into()
                } else {
                    join(&s.ports)
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["NAME", "NETWORK", "MODE", "VIPS", "PORTS"], &rows)
    );
}

pub fn network_created(net: &NetworkInfo, as_json: bool) {
    if as_json {
        return json(net);
    }
    println!(
        "network {} created: driver {}, subnets {}, gateways {}{}",
        net.name,
        net.driver,
        join(&net.subnets),
        join(&net.gateways),
        net.bridge
            .as_ref()
            .map(|b| format!(", bridge {b}"))
            .unwrap_or_default()
    );
}

pub fn attachments(list: &[Attachment], as_json: bool) {
    if as_json {
        return json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.container_id.clone(),
                a.name.clone().unwrap_or_else(|| "-".into()),
                a.network.clone(),
                a.ifname.clone(),
                join(&a.ips),
                if a.ports.is_empty() {
                    "-".to_string()
                } else {
                    a.ports.iter().map(port).collect::<Vec<_>>().join(",")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "CONTAINER",
                "NAME",
                "NETWORK",
                "IFNAME",
                "ADDRESSES",
                "PORTS"
            ],
            &rows
        )
    );
}

pub fn attached(a: &Attachment, as_json: bool) {
    if as_json {
        return json(a);
    }
    attachments(std::slice::from_ref(a), false);
}

/// One finding per line, problems and warnings with what to do under them.
pub fn findings(list: &[Finding]) {
    for f in list {
        println!("{:<7}  {:<9}  {}", f.severity.label(), f.check, f.what);
        if let Some(fix) = &f.fix {
            println!("{:<7}  {:<9}  -> {fix}", "", "");
        }
    }
}

pub fn doctor(report: &DoctorReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    findings(&report.findings);
    println!(
        "{}: {} problem(s), {} warning(s)",
        if report.healthy {
            "healthy"
        } else {
            "NOT healthy"
        },
        report.problems,
        report.warnings
    );
}

pub fn inspection(report: &InspectReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    for a in &report.attachments {
        println!(
            "container {}{} on network {} ({}), driver {}: {} difference(s)",
            a.container_id,
            a.name
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            a.network,
            a.ifname,
            a.driver,
            a.differences
        );
        let rows: Vec<Vec<String>> = a
            .comparisons
            .iter()
            .map(|c| {
                let state = match c.verdict {
                    Verdict::Same => "ok",
                    Verdict::Differs => "DIFFERS",
                    Verdict::Info => "",
                };
                vec![
                    state.into(),
                    c.what.clone(),
                    c.tether.clone(),
                    c.kernel.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["", "WHAT", "TETHER MADE", "KERNEL HAS"], &rows)
        );
        println!();
    }
}

pub fn trace(report: &TraceReport, as_json: bool) {
    if as_json {
        return json(report);
    }
    println!("{} -> {}", report.source, report.destination);
    for s in &report.steps {
        let verdict = match s.verdict {
            StepVerdict::Pass => "pass",
            StepVerdict::Drop => "DROP",
            StepVerdict::Warn => "warn",
        };
        println!("{verdict:<5} {}: {}", s.step, s.detail);
        println!("{:<5}   kernel: {}", "", s.kernel);
    }
    match (&report.cause, &report.fix) {
        (Some(cause), Some(fix)) => println!(
            "verdict: dropped ({})\nfix: {fix}",
            serde_json::to_value(cause)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        _ => println!("verdict: delivered"),
    }
}

pub fn line(text: &str) {
    println!("{text}");
}

/// `tether cluster status` for people: the store, the members, blocks per host, records per network.
pub fn cluster_status(s: &serde_json::Value) {
    let sync = &s["sync"];
    println!(
        "store: {}  (reachable: {}, last sync: {} ms since epoch{})",
        s["store"].as_str().unwrap_or("?"),
        sync["reachable"],
        sync["lastSyncMs"],
        sync["revision"]
            .as_i64()
            .map(|r| format!(", revision {r}"))
            .unwrap_or_default()
    );
    println!("this host: {}", s["host"].as_str().unwrap_or("?"));
    println!("members:");
    for m in s["members"].as_array().into_iter().flatten() {
        let state = if m["up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        };
        println!("  {:<40} {state}", m["host"].as_str().unwrap_or("?"));
    }
    println!("blocks:");
    for (host, blocks) in s["blocks"].as_object().into_iter().flatten() {
        for b in blocks.as_array().into_iter().flatten() {
            println!("  {host:<40} {}", b.as_str().unwrap_or("?"));
        }
    }
    println!("records:");
    for (network, n) in s["records"].as_object().into_iter().flatten() {
        println!("  {network:<40} {n}");
    }
    let rotation = &s["rotation"];
    if !rotation.is_null() {
        println!(
            "key rotation: every {} s, epoch {} (the cluster's schedule: every {} ms from epoch {})",
            rotation["intervalS"],
            rotation["epoch"],
            rotation["schedule"]["current"]["intervalMs"],
            rotation["schedule"]["current"]["anchorEpoch"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["NAME", "DRIVER"],
            &[
                vec!["web".into(), "bridge".into()],
                vec!["backend".into(), "macvlan".into()],
            ],
        );
        assert_eq!(out, "NAME     DRIVER\nweb      bridge\nbackend  macvlan\n");
    }

    #[test]
    fn ports_read_like_docker() {
        let p = PublishedPort {
            host_ip: Some("::1".parse().unwrap()),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        };
        assert_eq!(port(&p), "[::1]:8080->80/tcp");
    }
}
