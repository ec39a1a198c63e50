//! Services, measured in-process in harness namespaces: (1) what one backend change costs in a client's
//! table `inet tether_svc` (the element changes `BalanceTable` works out, sent as one netlink transaction
//! as tetherd sends them) with 10, 100 and 1000 services of 10 backends each; (2) connection rate and
//! latency through a VIP against the same connections straight to the backend, over one veth pair.
//! Prints medians and p90; asserts nothing. `cargo bench --bench services`.
//!
//! Docker's model (IPVS in a load-balancer namespace) cannot be built here: this kernel has no IPVS.

#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "latency_stats.rs"]
mod latency_stats;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::replica::in_netns;
use harness::HostNs;
use latency_stats::{ms, stats};
use tether::firewall::netlink::ruleset::Change;
use tether::firewall::service_balance::{apply, BalanceTable, ServiceKey};
use tether::firewall::Protocol;

fn main() {
    backend_change_cost();
    vip_against_direct();
}

fn key(i: u32) -> ServiceKey {
    ServiceKey {
        vip: IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i,
        )),
        protocol: Protocol::Tcp,
        port: 80,
    }
}

fn backends(i: u32) -> Vec<IpAddr> {
    (0..10)
        .map(|b| {
            IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i * 10 + b + 2,
            ))
        })
        .collect()
}

fn backend_change_cost() {
    println!("one backend removed or added (element changes + one netlink transaction), 10 backends each");
    println!(
        "{:>9} {:>12} {:>12} {:>10}",
        "services", "median", "p90", "elements"
    );
    for services in [10u32, 100, 1000] {
        let host = HostNs::new("bsvc");
        let client = host.container("c");
        let (samples, elements) = client.run_inside(|| {
            let mut table = BalanceTable::default();
            let install = table.install();
            apply(&install, "install").unwrap();
            let mut batch: Vec<Change> = Vec::new();
            for i in 0..services {
                batch.extend(table.set_backends(key(i), false, &backends(i)).0);
                if batch.len() > 2000 {
                    apply(&batch, "load").unwrap();
                    batch.clear();
                }
            }
            apply(&batch, "load").unwrap();
            let mut samples = Vec::new();
            let mut elements = 0;
            for round in 0..200u32 {
                let i = round * 7919 % services;
                let mut fewer = backends(i);
                let gone = fewer.remove((round % 10) as usize);
                let started = Instant::now();
                let (changes, _) = table.set_backends(key(i), false, &fewer);
                apply(&changes, "remove").unwrap();
                samples.push(started.elapsed());
                elements = elements.max(changes.len());
                fewer.push(gone);
                let started = Instant::now();
                let (changes, _) = table.set_backends(key(i), false, &fewer);
                apply(&changes, "add").unwrap();
                samples.push(started.elapsed());
            }
            (samples, elements)
        });
        // The maps hold what the changes said: every service's ten backends.
        let listed = client.nft_ok(&["list", "map", "inet", "tether_svc", "be4"]);
        let held = listed.matches(" : ").count();
        let s = stats(samples);
        println!(
            "{services:>9} {:>12} {:>12} {:>10}   (be4 holds {held} backends)",
            ms(s.median),
            ms(s.p90),
            elements
        );
    }
}

/// A server in `server` on `addr` that accepts, writes one byte and closes, until `stop`.
fn serve(
    server: &harness::NetNs,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_netns(server, move || {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut c, _)) => {
                    use std::io::Write;
                    let _ = c.write_all(b"x");
                    let _ = c.shutdown(Shutdown::Both);
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    });
    rx.recv().unwrap();
    h
}

fn vip_against_direct() {
    let host = HostNs::new("bsvcc");
    let client = host.container("c");
    let server = host.container("s");
    host.ip(&[
        "link",
        "add",
        "bsv0",
        "netns",
        &client.name,
        "type",
        "veth",
        "peer",
        "name",
        "bsv1",
        "netns",
        &server.name,
    ]);
    client.ip(&["addr", "add", "10.201.0.1/24", "dev", "bsv0"]);
    client.ip(&["link", "set", "bsv0", "up"]);
    client.ip(&["route", "add", "10.96.0.0/16", "dev", "bsv0"]);
    server.ip(&["addr", "add", "10.201.0.2/24", "dev", "bsv1"]);
    server.ip(&["link", "set", "bsv1", "up"]);
    let backend: IpAddr = "10.201.0.2".parse().unwrap();
    let vip = key(0);
    client.run_inside(|| {
        let mut table = BalanceTable::default();
        let mut changes = table.install();
        changes.extend(table.set_backends(vip, false, &[backend]).0);
        apply(&changes, "install").unwrap();
    });
    let stop = Arc::new(AtomicBool::new(false));
    let server_thread = serve(&server, SocketAddr::new(backend, 80), stop.clone());
    println!();
    println!(
        "connect + 1 byte + close from a client namespace, 3 x 2000 connections each, alternating"
    );
    let mut all: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut rates = [Vec::new(), Vec::new()];
    for _round in 0..3 {
        for (which, target) in [(0, backend), (1, vip.vip)].into_iter() {
            let to = SocketAddr::new(target, 80);
            let (samples, elapsed) = in_netns(&client, move || {
                let mut samples = Vec::with_capacity(2000);
                let started = Instant::now();
                for _ in 0..2000 {
                    let t = Instant::now();
                    let mut s = TcpStream::connect(to).unwrap();
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b);
                    drop(s);
                    samples.push(t.elapsed());
                }
                (samples, started.elapsed())
            })
            .join()
            .unwrap();
            rates[which].push(2000.0 / elapsed.as_secs_f64());
            all[which].extend(samples);
        }
    }
    for (which, name) in [(0, "direct to the backend"), (1, "through the VIP")] {
        let s = stats(std::mem::take(&mut all[which]));
        let r = &rates[which];
        println!(
            "{name:>22}: median {} p90 {}  rate {:.0}-{:.0} connections/s",
            ms(s.median),
            ms(s.p90),
            r.iter().cloned().fold(f64::MAX, f64::min),
            r.iter().cloned().fold(0.0, f64::max)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server_thread.join();
}
