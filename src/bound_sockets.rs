//! Which local addresses the sockets of a network namespace hold, as the kernel lists them in
//! `/proc/thread-self/net/{udp,tcp,udp6,tcp6}`: the calling *thread's* namespace, so a thread that entered
//! a container's namespace (`NetNs::run`) reads the container's sockets.

use std::io;
use std::net::SocketAddrV4;

/// TCP_LISTEN in the `st` column.
const TCP_LISTEN: &str = "0A";

/// Whether a socket of the calling thread's namespace is bound to exactly `addr`: a UDP socket in any
/// state, a listening TCP socket, on IPv4 or as an IPv4-mapped IPv6 address. Wildcard binds
/// (0.0.0.0, ::) do not count.
pub fn held_exactly(addr: SocketAddrV4) -> io::Result<bool> {
    let v4 = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    let mapped = addr.ip().to_ipv6_mapped().octets();
    let v6 = format!(
        "{}:{:04X}",
        mapped
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect::<String>(),
        addr.port()
    );
    for (file, local, listening_only) in [
        ("udp", &v4, false),
        ("tcp", &v4, true),
        ("udp6", &v6, false),
        ("tcp6", &v6, true),
    ] {
        let text = match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            Ok(text) => text,
            // No IPv6 in this kernel: no udp6/tcp6 tables.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file.ends_with('6') => continue,
            Err(e) => return Err(e),
        };
        if table_holds(&text, local, listening_only) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One table's text: a header line, then `sl local_address rem_address st ...` per socket.
fn table_holds(text: &str, local: &str, listening_only: bool) -> bool {
    text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(l), Some(_), Some(st)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        l == local && (!listening_only || st == TCP_LISTEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as the kernel prints it, one socket per (local address, state).
    fn table(sockets: &[(&str, &str)]) -> String {
        let mut text = String::from("  sl  local_address rem_address   st tx_queue rx_queue ...\n");
        for (i, (local, st)) in sockets.iter().enumerate() {
            text.push_str(&format!(
                "  {i}: {local} 00000000:0000 {st} 00000000:00000000 00:00000000 00000000 0 0 1\n"
            ));
        }
        text
    }

    fn resolver() -> String {
        format!("{:08X}:0035", u32::from_ne_bytes([127, 0, 0, 11]))
    }

    #[test]
    fn an_exact_bind_is_found_and_a_wildcard_one_is_not() {
        let exact = resolver();
        assert!(table_holds(
            &table(&[("00000000:0035", "07"), (&exact, "07")]),
            &exact,
            false
        ));
        assert!(!table_holds(
            &table(&[("00000000:0035", "07")]),
            &exact,
            false
        ));
    }

    #[test]
    fn a_tcp_socket_counts_only_while_listening() {
        let exact = resolver();
        assert!(!table_holds(&table(&[(&exact, "01")]), &exact, true));
        assert!(table_holds(&table(&[(&exact, "0A")]), &exact, true));
    }
}
