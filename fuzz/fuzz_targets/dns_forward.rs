//! A forwarded query answered by an upstream whose reply is the fuzz input: the forwarder's matching, the
//! resolver's ID rewrite, the cache insert and the UDP truncation, over real sockets on loopback. The
//! upstream runs in a network namespace of the target's own (made once; needs root, as CI runs it), where
//! it can hold 127.0.0.1:53 without touching the machine's resolvers.
#![no_main]

use std::net::UdpSocket;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tether::dns::forwarder::Forwarder;
use tether::dns::quota::Quota;
use tether::dns::resolver::{Resolver, Transport};
use tether::dns::upstreams::Upstreams;
use tether::dns::wire;

/// What the upstream answers next (the current input); it copies the query's ID in and sets QR, so each
/// reply is matched rather than waited out.
static NEXT_REPLY: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

fn start_upstream() -> Arc<Mutex<Vec<u8>>> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("dns_forward needs root: it makes a network namespace for its upstream");
    // `lo` starts down in a new namespace.
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(up.success(), "ip link set lo up failed");
    let socket = UdpSocket::bind("127.0.0.1:53").expect("bind the fuzzed upstream");
    let reply = Arc::new(Mutex::new(Vec::new()));
    let shared = reply.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let mut out = shared.lock().unwrap().clone();
            if out.len() < wire::HEADER_LEN {
                out.resize(wire::HEADER_LEN, 0);
            }
            if n >= 2 {
                out[..2].copy_from_slice(&buf[..2]);
            }
            out[2] |= 0x80;
            let _ = socket.send_to(&out, peer);
        }
    });
    reply
}

thread_local! {
    // One runtime and one LocalSet for the whole run: the forwarder's reply readers are tasks spawned on
    // the LocalSet by the first query to each upstream, and die with it. Leaked: dropping a runtime in a
    // thread-local destructor at exit panics.
    static RIG: &'static (tokio::runtime::Runtime, tokio::task::LocalSet, Rc<Resolver>) = Box::leak(Box::new({
        let dir = std::env::temp_dir().join(format!("tether-fuzz-forward-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("resolv.conf");
        std::fs::write(&conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let forwarder = runtime.block_on(async {
            Forwarder::new(Upstreams::new(conf), Duration::from_millis(200))
        });
        (runtime, tokio::task::LocalSet::new(), Rc::new(Resolver::new(forwarder, 64, 10)))
    }));
}

fuzz_target!(|data: &[u8]| {
    let reply = NEXT_REPLY.get_or_init(start_upstream);
    *reply.lock().unwrap() = data.to_vec();
    // A fixed query: the fuzzing is in the reply.
    let query =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x07example\x00\x00\x01\x00\x01";
    let q = wire::parse_query(query).expect("the fixed query parses");
    RIG.with(|&(ref runtime, ref local, ref resolver)| {
        let quota = Quota::new(8);
        let out = local.block_on(
            runtime,
            resolver.forward(query, q.clone(), Transport::Udp, &quota, "net1"),
        );
        assert_eq!(
            wire::id(&out),
            Some(0x1234),
            "the client's ID on every reply"
        );
        assert!(
            out.len() <= q.udp_limit(),
            "a UDP reply within the client's limit"
        );
    });
});
