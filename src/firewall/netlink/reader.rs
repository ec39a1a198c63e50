//! Walks the netlink messages and attributes of a buffer received from the kernel.

use super::uapi::{NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN};

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// One received message; `payload` is everything after the 16-byte nlmsghdr.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a datagram into messages; stops at the first malformed header.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, String> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(format!(
                "message length {len} out of bounds ({} left)",
                buf.len()
            ));
        }
        out.push(Message {
            kind: u16::from_ne_bytes(buf[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[6..8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[8..12].try_into().unwrap()),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// The errno of an NLMSG_ERROR payload: 0 for an ack, positive otherwise. `None` for a payload too
/// short or a value no kernel sends (`i32::MIN` has no negation).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    let raw = i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?);
    raw.checked_neg()
}

/// The attributes in `buf` as (type without flag bits, value).
pub fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= NLA_HDRLEN {
        let len = u16::from_ne_bytes(buf[0..2].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[2..4].try_into().unwrap()) & !NLA_F_NESTED & 0x3fff;
        if len < NLA_HDRLEN || len > buf.len() {
            break;
        }
        out.push((kind, &buf[NLA_HDRLEN..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// The first attribute of type `kind`.
pub fn attribute(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(buf)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let mut w = super::super::writer::MessageWriter::new();
        w.begin_message(0x0a04, 1, 9, 1, 0);
        w.put_str(1, "tether");
        w.begin_nested(3);
        w.put_bytes(1, &[1, 2, 3, 4]);
        w.end_nested();
        w.end_message();
        let bytes = w.into_bytes();
        let msgs = messages(&bytes).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].seq, 9);
        let attrs = attributes(&msgs[0].payload[4..]);
        assert_eq!(attrs[0], (1, &b"tether\0"[..]));
        assert_eq!(attribute(attrs[1].1, 1), Some(&[1u8, 2, 3, 4][..]));
    }

    /// Issue 21: negating `i32::MIN` overflowed (a panic in debug builds).
    #[test]
    fn error_codes_negate_without_overflow() {
        assert_eq!(error_code(&(-17i32).to_ne_bytes()), Some(17));
        assert_eq!(error_code(&0i32.to_ne_bytes()), Some(0));
        assert_eq!(error_code(&i32::MIN.to_ne_bytes()), None);
        assert_eq!(error_code(&[1, 2]), None);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let mut bytes = 40u32.to_ne_bytes().to_vec();
        bytes.extend([0u8; 12]);
        assert!(messages(&bytes).is_err());
    }
}
