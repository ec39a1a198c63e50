//! The byte layout of NETLINK_XFRM requests (linux/xfrm.h, x86_64 alignment): `xfrm_usersa_info`,
//! `xfrm_usersa_id`, `xfrm_userpolicy_info`, `xfrm_userpolicy_id`, `xfrm_user_tmpl` and the attributes
//! tether sends. Pure: every function returns bytes, the socket sends them.

use std::net::IpAddr;

use super::{EspState, Policy, PolicyAction, PolicyDir, Selector, StateId};

pub const XFRM_MSG_NEWSA: u16 = 0x10;
pub const XFRM_MSG_DELSA: u16 = 0x11;
pub const XFRM_MSG_GETSA: u16 = 0x12;
pub const XFRM_MSG_DELPOLICY: u16 = 0x14;
pub const XFRM_MSG_UPDPOLICY: u16 = 0x19;
pub const XFRM_MSG_EXPIRE: u16 = 0x18;
/// The multicast group of soft and hard expiry reports.
pub const XFRMNLGRP_EXPIRE: u32 = 2;

const XFRMA_TMPL: u16 = 5;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_REPLAY_ESN_VAL: u16 = 23;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;

pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_UDP: u8 = 17;
const XFRM_MODE_TRANSPORT: u8 = 0;
/// `xfrm_usersa_info.flags`: extended (64-bit) sequence numbers.
const XFRM_STATE_ESN: u8 = 128;
/// "No limit" in `xfrm_lifetime_cfg`.
const XFRM_INF: u64 = u64::MAX;

pub const SELECTOR_LEN: usize = 56;
pub const USERSA_INFO_LEN: usize = 224;
const USERSA_ID_LEN: usize = 24;
const USERPOLICY_INFO_LEN: usize = 168;
const USERPOLICY_ID_LEN: usize = 64;
const USER_TMPL_LEN: usize = 64;
const NLMSG_HDRLEN: usize = 16;
/// `xfrm_algo_aead`: a 64-byte name, key length and ICV length in bits, then the key.
const ALGO_NAME_LEN: usize = 64;

/// Offsets inside `xfrm_usersa_info` that the dump reader needs too.
pub const SA_SPI: usize = SELECTOR_LEN + 16;
pub const SA_PROTO: usize = SELECTOR_LEN + 20;
pub const SA_SADDR: usize = SELECTOR_LEN + 24;
/// `lft` (soft bytes, hard bytes, soft packets, ...) and `curlft` (bytes, packets, ...).
pub const SA_LFT: usize = 96;
pub const SA_CURLFT: usize = 160;
pub const SA_REQID: usize = 208;
pub const SA_FAMILY: usize = 212;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub fn family(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u16,
        IpAddr::V6(_) => libc::AF_INET6 as u16,
    }
}

/// `xfrm_address_t`: 16 bytes, an IPv4 address in the first four.
fn address(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The address back from an `xfrm_address_t` of `family`.
pub fn read_address(bytes: &[u8], family: u16) -> Option<IpAddr> {
    let raw: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    if family == libc::AF_INET as u16 {
        Some(IpAddr::from([raw[0], raw[1], raw[2], raw[3]]))
    } else if family == libc::AF_INET6 as u16 {
        Some(IpAddr::from(raw))
    } else {
        None
    }
}

fn host_bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `struct xfrm_selector`: addresses with prefix lengths (an unspecified address matches any), protocol and
/// destination port.
fn selector(s: &Selector) -> [u8; SELECTOR_LEN] {
    let mut out = [0u8; SELECTOR_LEN];
    let prefix = |ip: Option<IpAddr>| ip.map_or(0, host_bits);
    if let Some(dst) = s.dst {
        out[0..16].copy_from_slice(&address(dst));
    }
    if let Some(src) = s.src {
        out[16..32].copy_from_slice(&address(src));
    }
    if let Some(port) = s.dport {
        out[32..34].copy_from_slice(&port.to_be_bytes());
        out[34..36].copy_from_slice(&u16::MAX.to_be_bytes());
    }
    // sport and sport_mask (36..40) stay 0: any source port (VXLAN spreads flows over them).
    out[40..42].copy_from_slice(&s.family.to_ne_bytes());
    out[42] = prefix(s.dst);
    out[43] = prefix(s.src);
    out[44] = s.proto;
    // ifindex (48..52) and user (52..56) stay 0.
    out
}

/// `xfrm_lifetime_cfg` with no hard limits and the given soft ones (`None`: none).
fn lifetime(soft_bytes: Option<u64>, soft_packets: Option<u64>) -> [u8; 64] {
    let mut out = [0u8; 64];
    let fields = [
        soft_bytes.unwrap_or(XFRM_INF),
        XFRM_INF,
        soft_packets.unwrap_or(XFRM_INF),
        XFRM_INF,
        0,
        0,
        0,
        0,
    ];
    for (i, v) in fields.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    out
}

fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) {
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
}

fn attribute(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align4(buf.len()), 0);
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

/// XFRM_MSG_NEWSA for one ESP transport-mode state: AEAD `rfc4106(gcm(aes))` with the key and salt, the
/// ICV length, ESN with a replay window (in `xfrm_replay_state_esn`; the legacy `replay_window` byte must be
/// 0 then), and the selector narrowed to UDP to the VXLAN port between the two hosts.
pub fn new_state(s: &EspState, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    header(&mut buf, XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    let fam = family(s.id.dst);
    let mut info = [0u8; USERSA_INFO_LEN];
    info[..SELECTOR_LEN].copy_from_slice(&selector(&Selector {
        family: fam,
        src: Some(s.src),
        dst: Some(s.id.dst),
        proto: IPPROTO_UDP,
        dport: Some(s.port),
    }));
    info[SELECTOR_LEN..SELECTOR_LEN + 16].copy_from_slice(&address(s.id.dst));
    info[SA_SPI..SA_SPI + 4].copy_from_slice(&s.id.spi.to_be_bytes());
    info[SA_PROTO] = IPPROTO_ESP;
    info[SA_SADDR..SA_SADDR + 16].copy_from_slice(&address(s.src));
    info[96..160].copy_from_slice(&lifetime(s.soft_bytes, s.soft_packets));
    // curlft (160..192), stats (192..204), seq (204..208) stay 0.
    info[SA_REQID..SA_REQID + 4].copy_from_slice(&s.reqid.to_ne_bytes());
    info[SA_FAMILY..SA_FAMILY + 2].copy_from_slice(&fam.to_ne_bytes());
    info[214] = XFRM_MODE_TRANSPORT;
    info[215] = 0;
    info[216] = XFRM_STATE_ESN;
    buf.extend_from_slice(&info);

    let mut aead = vec![0u8; ALGO_NAME_LEN + 8];
    let name = s.algorithm.as_bytes();
    aead[..name.len()].copy_from_slice(name);
    aead[ALGO_NAME_LEN..ALGO_NAME_LEN + 4]
        .copy_from_slice(&((s.key.len() * 8) as u32).to_ne_bytes());
    aead[ALGO_NAME_LEN + 4..ALGO_NAME_LEN + 8].copy_from_slice(&s.icv_bits.to_ne_bytes());
    aead.extend_from_slice(&s.key);
    attribute(&mut buf, XFRMA_ALG_AEAD, &aead);

    let words = s.replay_window.div_ceil(32);
    let mut esn = Vec::with_capacity(24 + words as usize * 4);
    for v in [words, 0, 0, 0, 0, s.replay_window] {
        esn.extend_from_slice(&v.to_ne_bytes());
    }
    esn.resize(24 + words as usize * 4, 0);
    attribute(&mut buf, XFRMA_REPLAY_ESN_VAL, &esn);
    finish(buf)
}

/// The key (with its salt) of the XFRMA_ALG_AEAD attribute among a dumped state's `attributes`.
pub fn aead_key(attributes: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= attributes.len() {
        let len = u16::from_ne_bytes(attributes[at..at + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(attributes[at + 2..at + 4].try_into().ok()?);
        if len < 4 || at + len > attributes.len() {
            return None;
        }
        if kind == XFRMA_ALG_AEAD {
            let value = &attributes[at + 4..at + len];
            let bits = u32::from_ne_bytes(
                value
                    .get(ALGO_NAME_LEN..ALGO_NAME_LEN + 4)?
                    .try_into()
                    .ok()?,
            );
            return value.get(ALGO_NAME_LEN + 8..ALGO_NAME_LEN + 8 + bits as usize / 8);
        }
        at += align4(len);
    }
    None
}

/// XFRM_MSG_DELSA (`xfrm_usersa_id`): the state is named by destination, SPI and protocol.
pub fn delete_state(id: &StateId, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN + USERSA_ID_LEN);
    header(&mut buf, XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    let mut body = [0u8; USERSA_ID_LEN];
    body[..16].copy_from_slice(&address(id.dst));
    body[16..20].copy_from_slice(&id.spi.to_be_bytes());
    body[20..22].copy_from_slice(&family(id.dst).to_ne_bytes());
    body[22] = IPPROTO_ESP;
    buf.extend_from_slice(&body);
    finish(buf)
}

/// XFRM_MSG_GETSA as a dump of every state (the kernel takes an empty `xfrm_usersa_id`).
pub fn dump_states(seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN + USERSA_ID_LEN);
    header(&mut buf, XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq);
    buf.extend_from_slice(&[0u8; USERSA_ID_LEN]);
    finish(buf)
}

/// XFRM_MSG_UPDPOLICY: inserts, or replaces the policy with the same selector and direction. `Protect`
/// carries one required ESP transport template with the reqid of the states it may use; `Block` drops.
pub fn update_policy(p: &Policy, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN + USERPOLICY_INFO_LEN + 4 + USER_TMPL_LEN);
    header(&mut buf, XFRM_MSG_UPDPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    let mut info = [0u8; USERPOLICY_INFO_LEN];
    info[..SELECTOR_LEN].copy_from_slice(&selector(&p.selector));
    info[SELECTOR_LEN..SELECTOR_LEN + 64].copy_from_slice(&lifetime(None, None));
    // curlft (120..152) stays 0; index (156..160) 0: the kernel picks one.
    info[152..156].copy_from_slice(&p.priority.to_ne_bytes());
    info[160] = p.dir as u8;
    info[161] = match p.action {
        PolicyAction::Protect { .. } => 0,
        PolicyAction::Block => 1,
    };
    buf.extend_from_slice(&info);
    if let PolicyAction::Protect { reqid } = p.action {
        let mut tmpl = [0u8; USER_TMPL_LEN];
        // id.daddr and id.spi stay 0: any state to the selector's destination with this reqid.
        tmpl[20] = IPPROTO_ESP;
        tmpl[24..26].copy_from_slice(&p.selector.family.to_ne_bytes());
        tmpl[44..48].copy_from_slice(&reqid.to_ne_bytes());
        tmpl[48] = XFRM_MODE_TRANSPORT;
        // share 0, optional 0 (required); every algorithm allowed.
        for at in [52, 56, 60] {
            tmpl[at..at + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        }
        attribute(&mut buf, XFRMA_TMPL, &tmpl);
    }
    finish(buf)
}

/// XFRM_MSG_DELPOLICY (`xfrm_userpolicy_id`), by selector and direction.
pub fn delete_policy(selector_of: &Selector, dir: PolicyDir, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(NLMSG_HDRLEN + USERPOLICY_ID_LEN);
    header(&mut buf, XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    let mut body = [0u8; USERPOLICY_ID_LEN];
    body[..SELECTOR_LEN].copy_from_slice(&selector(selector_of));
    body[SELECTOR_LEN + 4] = dir as u8;
    buf.extend_from_slice(&body);
    finish(buf)
}
