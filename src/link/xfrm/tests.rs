//! The encoder against the layout of linux/xfrm.h (x86_64), field by field; the VM test
//! (integration/overlay_esp_vm.rs) proves the same bytes against a kernel with ESP.

use super::wire::*;
use super::*;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn state() -> EspState {
    EspState {
        id: StateId {
            dst: "192.0.2.2".parse().unwrap(),
            spi: 0x1234_5678,
        },
        src: "192.0.2.1".parse().unwrap(),
        port: 4790,
        reqid: 0x7e7e,
        algorithm: ESP_AEAD,
        key: [0xab; ESP_KEY_LEN],
        icv_bits: ESP_ICV_BITS,
        replay_window: 128,
        soft_bytes: None,
        soft_packets: Some(1000),
    }
}

/// The attributes after the fixed part: (type, value).
fn attributes(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let len = u16_at(b, at) as usize;
        out.push((u16_at(b, at + 2), &b[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

#[test]
fn a_new_state_has_the_header_info_aead_and_esn_where_the_kernel_reads_them() {
    let m = new_state(&state(), 77);
    assert_eq!(u32_at(&m, 0) as usize, m.len(), "nlmsg_len");
    assert_eq!(u16_at(&m, 4), XFRM_MSG_NEWSA);
    assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!(u32_at(&m, 8), 77);
    let info = &m[16..16 + USERSA_INFO_LEN];
    // Selector: daddr, saddr, dport 4790 with a full mask, AF_INET, /32 both, UDP.
    assert_eq!(&info[0..4], &[192, 0, 2, 2]);
    assert_eq!(&info[16..20], &[192, 0, 2, 1]);
    assert_eq!(&info[32..36], &[0x12, 0xb6, 0xff, 0xff]);
    assert_eq!(u16_at(info, 40), libc::AF_INET as u16);
    assert_eq!((info[42], info[43], info[44]), (32, 32, IPPROTO_UDP));
    // id: daddr, SPI big-endian, ESP; then the state's saddr.
    assert_eq!(&info[56..60], &[192, 0, 2, 2]);
    assert_eq!(&info[72..76], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(info[76], IPPROTO_ESP);
    assert_eq!(&info[80..84], &[192, 0, 2, 1]);
    // Lifetime: soft bytes none, hard bytes none, soft packets 1000, hard packets none.
    let lft = |i: usize| u64::from_ne_bytes(info[96 + 8 * i..104 + 8 * i].try_into().unwrap());
    assert_eq!(
        (lft(0), lft(1), lft(2), lft(3)),
        (u64::MAX, u64::MAX, 1000, u64::MAX)
    );
    assert_eq!(u32_at(info, 208), 0x7e7e, "reqid");
    assert_eq!(u16_at(info, 212), libc::AF_INET as u16);
    assert_eq!(
        (info[214], info[215], info[216]),
        (0, 0, 128),
        "transport, no legacy window, ESN"
    );
    let attrs = attributes(&m[16 + USERSA_INFO_LEN..]);
    assert_eq!(attrs.len(), 2);
    let (kind, aead) = attrs[0];
    assert_eq!(kind, 18, "XFRMA_ALG_AEAD");
    assert_eq!(&aead[..17], b"rfc4106(gcm(aes))");
    assert!(aead[17..64].iter().all(|&b| b == 0));
    assert_eq!(
        (u32_at(aead, 64), u32_at(aead, 68)),
        (288, 128),
        "key bits, ICV bits"
    );
    assert_eq!(&aead[72..], &[0xab; 36]);
    let (kind, esn) = attrs[1];
    assert_eq!(kind, 23, "XFRMA_REPLAY_ESN_VAL");
    assert_eq!(esn.len(), 24 + 4 * 4, "a 128-packet bitmap is 4 words");
    assert_eq!((u32_at(esn, 0), u32_at(esn, 20)), (4, 128));
}

#[test]
fn a_dumped_state_reads_back_as_the_one_encoded() {
    let m = new_state(&state(), 1);
    let listed = super::parse_state(&m[16..]).unwrap();
    assert_eq!(listed.id, state().id);
    assert_eq!(listed.src, state().src);
    assert_eq!(listed.reqid, 0x7e7e);
    assert_eq!(super::parse_state(&m[16..100]), None, "short");
}

#[test]
fn ipv6_states_use_the_whole_address_and_a_128_bit_prefix() {
    let mut s = state();
    s.src = "2001:db8::1".parse().unwrap();
    s.id.dst = "2001:db8::2".parse().unwrap();
    let m = new_state(&s, 1);
    let info = &m[16..];
    assert_eq!(info[15], 2);
    assert_eq!((info[42], info[43]), (128, 128));
    assert_eq!(u16_at(info, 212), libc::AF_INET6 as u16);
    assert_eq!(super::parse_state(info).unwrap().id.dst, s.id.dst);
}

#[test]
fn deleting_a_state_names_destination_spi_family_and_esp() {
    let m = delete_state(&state().id, 9);
    assert_eq!(u16_at(&m, 4), XFRM_MSG_DELSA);
    assert_eq!(m.len(), 16 + 24);
    let body = &m[16..];
    assert_eq!(&body[..4], &[192, 0, 2, 2]);
    assert_eq!(&body[16..20], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(u16_at(body, 20), libc::AF_INET as u16);
    assert_eq!(body[22], IPPROTO_ESP);
}

#[test]
fn a_protect_policy_carries_one_required_esp_transport_template() {
    let p = Policy {
        dir: PolicyDir::Out,
        selector: Selector::udp(
            Some("192.0.2.1".parse().unwrap()),
            Some("192.0.2.2".parse().unwrap()),
            4789,
        ),
        priority: 100,
        action: PolicyAction::Protect { reqid: 0x7e7e },
    };
    let m = update_policy(&p, 3);
    assert_eq!(u16_at(&m, 4), XFRM_MSG_UPDPOLICY);
    let info = &m[16..16 + 168];
    assert_eq!(&info[0..4], &[192, 0, 2, 2]);
    assert_eq!(&info[32..34], &4789u16.to_be_bytes());
    assert_eq!(u32_at(info, 152), 100, "priority");
    assert_eq!((info[160], info[161]), (1, 0), "out, allow");
    let attrs = attributes(&m[16 + 168..]);
    assert_eq!(attrs.len(), 1);
    let (kind, tmpl) = attrs[0];
    assert_eq!(
        (kind, tmpl.len()),
        (5, 64),
        "XFRMA_TMPL, one xfrm_user_tmpl"
    );
    assert_eq!(tmpl[20], IPPROTO_ESP);
    assert_eq!(u16_at(tmpl, 24), libc::AF_INET as u16);
    assert_eq!(u32_at(tmpl, 44), 0x7e7e);
    assert_eq!((tmpl[48], tmpl[50]), (0, 0), "transport, not optional");
    assert_eq!(u32_at(tmpl, 56), u32::MAX, "any cipher");
}

#[test]
fn a_block_policy_has_no_template_and_may_leave_the_destination_open() {
    let p = Policy {
        dir: PolicyDir::Out,
        selector: Selector::udp(Some("192.0.2.1".parse().unwrap()), None, 4789),
        priority: 1000,
        action: PolicyAction::Block,
    };
    let m = update_policy(&p, 3);
    assert_eq!(m.len(), 16 + 168);
    let info = &m[16..];
    assert_eq!(
        (info[42], info[43]),
        (0, 32),
        "any destination, this source"
    );
    assert_eq!(info[161], 1, "block");
    let d = delete_policy(&p.selector, PolicyDir::Out, 4);
    assert_eq!(u16_at(&d, 4), XFRM_MSG_DELPOLICY);
    assert_eq!(d.len(), 16 + 64);
    assert_eq!(&d[16..16 + 56], &info[..56], "same selector");
    assert_eq!(d[16 + 60], 1, "dir out");
}

#[test]
fn netlink_errors_and_message_boundaries_are_read() {
    let mut buf = Vec::new();
    for (kind, seq, errno) in [(2u16, 5u32, -17i32), (3, 6, 0)] {
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&errno.to_ne_bytes());
    }
    let msgs = super::messages(&buf);
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0].0, msgs[0].1), (2, 5));
    assert_eq!(super::error_code(msgs[0].2), libc::EEXIST);
    assert_eq!(msgs[1].0, 3);
}

#[test]
fn a_listed_state_tells_its_key_and_whether_it_passed_a_soft_limit() {
    let s = state();
    let m = new_state(&s, 1);
    // A dump answers with the same `xfrm_usersa_info` and attributes as NEWSA carries.
    let mut payload = m[16..].to_vec();
    let listed = parse_state(&payload).unwrap();
    assert_eq!(listed.id, s.id);
    assert_eq!(listed.reqid, 0x7e7e);
    assert_eq!(listed.key_digest, Some(s.key_digest()));
    assert!(!listed.soft_expired);
    let mut other = state();
    other.key[0] = 0;
    assert_ne!(listed.key_digest, Some(other.key_digest()));
    // curlft.packets at the soft limit of 1000.
    payload[SA_CURLFT + 8..SA_CURLFT + 16].copy_from_slice(&1000u64.to_ne_bytes());
    assert!(parse_state(&payload).unwrap().soft_expired);
}
