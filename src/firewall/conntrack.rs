//! Conntrack entries of service flows, over ctnetlink (no `conntrack` tool): when a backend leaves a
//! service, the UDP entries that DNAT a client's VIP flow to it are deleted, so the client's next datagram
//! (same source port) is a new flow and gets a backend that is still there. TCP entries are left alone:
//! established connections drain on their own.

use std::io;
use std::net::IpAddr;

use super::netlink::reader::attribute;
use super::netlink::socket::NfSocket;
use super::netlink::uapi::*;
use super::netlink::writer::MessageWriter;
use super::FirewallError;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

const fn ct_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

fn addr_attrs(ip: &IpAddr) -> (u16, u16, Vec<u8>) {
    match ip {
        IpAddr::V4(a) => (CTA_IP_V4_SRC, CTA_IP_V4_DST, a.octets().to_vec()),
        IpAddr::V6(a) => (CTA_IP_V6_SRC, CTA_IP_V6_DST, a.octets().to_vec()),
    }
}

/// What one conntrack entry says about itself, from the attributes of a dump reply.
fn tuple_field(entry: &[u8], tuple: u16, nest: u16, field: u16) -> Option<&[u8]> {
    let t = attribute(entry, tuple)?;
    attribute(attribute(t, nest)?, field)
}

/// Deletes, in the calling thread's namespace, the UDP entries whose original destination is one of
/// `vips` and whose replies come from `backend`. Returns how many went.
pub fn forget_udp_flows(vips: &[IpAddr], backend: IpAddr) -> Result<usize, FirewallError> {
    let (_, dst_attr, _) = addr_attrs(&backend);
    let vip_bytes: Vec<Vec<u8>> = vips
        .iter()
        .filter(|v| v.is_ipv4() == backend.is_ipv4())
        .map(|v| addr_attrs(v).2)
        .collect();
    forget_udp_flows_where(backend, |entry| {
        tuple_field(entry, CTA_TUPLE_ORIG, CTA_TUPLE_IP, dst_attr)
            .is_some_and(|d| vip_bytes.iter().any(|v| v.as_slice() == d))
    })
}

/// Deletes, in the calling thread's namespace, the UDP entries whose original destination port is
/// `port` (any address: a published port of the routing mesh) and whose replies come from `backend`.
pub fn forget_udp_flows_to_port(port: u16, backend: IpAddr) -> Result<usize, FirewallError> {
    let port = port.to_be_bytes();
    forget_udp_flows_where(backend, |entry| {
        tuple_field(entry, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT) == Some(&port[..])
    })
}

fn forget_udp_flows_where(
    backend: IpAddr,
    original_matches: impl Fn(&[u8]) -> bool,
) -> Result<usize, FirewallError> {
    let io_err = |source| FirewallError::ServiceTable {
        op: "deleting conntrack entries",
        source,
    };
    let family = if backend.is_ipv4() { AF_INET } else { AF_INET6 };
    let (src_attr, _, backend_bytes) = addr_attrs(&backend);
    let socket = NfSocket::open().map_err(|source| FirewallError::SocketOpen { source })?;
    let seq = socket.reserve_seqs(1);
    let mut w = MessageWriter::new();
    w.begin_message(
        ct_type(IPCTNL_MSG_CT_GET),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family,
        0,
    );
    w.end_message();
    let entries = match socket.dump(&w.into_bytes(), seq).map_err(io_err)? {
        Ok(entries) => entries,
        Err(code) => return Err(io_err(io::Error::from_raw_os_error(code))),
    };
    let mut origins: Vec<Vec<u8>> = Vec::new();
    for payload in &entries {
        let Some(entry) = payload.get(NFGENMSG_LEN..) else {
            continue;
        };
        let udp = tuple_field(entry, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_NUM)
            == Some(&[IPPROTO_UDP][..]);
        let to_vip = original_matches(entry);
        let from_backend = tuple_field(entry, CTA_TUPLE_REPLY, CTA_TUPLE_IP, src_attr)
            == Some(backend_bytes.as_slice());
        if udp && to_vip && from_backend {
            if let Some(orig) = attribute(entry, CTA_TUPLE_ORIG) {
                origins.push(orig.to_vec());
            }
        }
    }
    let mut deleted = 0;
    for orig in origins {
        let seq = socket.reserve_seqs(1);
        let mut w = MessageWriter::new();
        w.begin_message(
            ct_type(IPCTNL_MSG_CT_DELETE),
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            0,
        );
        // The original tuple as the kernel gave it names the entry.
        w.put_bytes(CTA_TUPLE_ORIG | NLA_F_NESTED, &orig);
        w.end_message();
        match socket.request(&w.into_bytes(), seq).map_err(io_err)? {
            Ok(_) => deleted += 1,
            Err(libc::ENOENT) => {} // gone meanwhile
            Err(code) => return Err(io_err(io::Error::from_raw_os_error(code))),
        }
    }
    socket.close_in_background();
    Ok(deleted)
}
