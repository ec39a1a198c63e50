//! What the kernel (or anything on the other end of the netlink socket) sends back: messages, errors,
//! attributes, and the chain, set element and generation replies tether reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::firewall::netlink::{reader, replies};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = reader::messages(data) {
        for m in messages {
            let _ = reader::error_code(m.payload);
            let _ = replies::chain(m.payload);
            let _ = replies::element_entries(m.payload);
            let _ = replies::element_addresses(m.payload);
            let _ = replies::generation(m.payload);
        }
    }
    let _ = reader::error_code(data);
    for (_, value) in reader::attributes(data) {
        let _ = reader::attributes(value);
    }
    let _ = replies::chain(data);
    let _ = replies::element_entries(data);
});
