//! Appends netlink messages and attributes to one buffer (netlink(7): 16-byte header,
//! 4-byte aligned attributes), with the nfgenmsg header nfnetlink puts after it.

use super::uapi::{NFGENMSG_LEN, NFNETLINK_V0, NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN};

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

#[derive(Debug, Default)]
pub struct MessageWriter {
    buf: Vec<u8>,
    message_start: Option<usize>,
    nests: Vec<usize>,
}

impl MessageWriter {
    pub fn new() -> MessageWriter {
        MessageWriter::default()
    }

    /// Starts a message: nlmsghdr (length patched in `end_message`) then nfgenmsg, whose
    /// `res_id` is big-endian.
    pub fn begin_message(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        debug_assert!(self.message_start.is_none(), "message not ended");
        self.message_start = Some(self.buf.len());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        // Port id 0: the kernel fills in ours.
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        debug_assert_eq!(
            self.buf.len() - self.message_start.unwrap_or(0),
            NLMSG_HDRLEN + NFGENMSG_LEN
        );
    }

    pub fn end_message(&mut self) {
        debug_assert!(self.nests.is_empty(), "nested attribute not ended");
        let start = self
            .message_start
            .take()
            .expect("end_message without begin_message");
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub fn put_bytes(&mut self, kind: u16, value: &[u8]) {
        self.put_header(kind, value.len());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// Strings go with their NUL terminator, as nft sends them.
    pub fn put_str(&mut self, kind: u16, value: &str) {
        // Written in place: a plugin's batch has hundreds of names, each a copy otherwise.
        self.put_header(kind, value.len() + 1);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn put_header(&mut self, kind: u16, value_len: usize) {
        let len = NLA_HDRLEN + value_len;
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    pub fn put_be32(&mut self, kind: u16, value: u32) {
        self.put_bytes(kind, &value.to_be_bytes());
    }

    pub fn begin_nested(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    pub fn end_nested(&mut self) {
        let start = self.nests.pop().expect("end_nested without begin_nested");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let aligned = align4(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        debug_assert!(self.message_start.is_none(), "message not ended");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_nul_terminated_and_padded() {
        let mut w = MessageWriter::new();
        w.begin_message(0x0a0c, 0x5, 7, 1, 0);
        w.put_str(1, "tether");
        w.end_message();
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 16 + 4 + 12);
        assert_eq!(&bytes[0..4], &32u32.to_ne_bytes());
        assert_eq!(&bytes[20..22], &11u16.to_ne_bytes());
        assert_eq!(&bytes[24..32], b"tether\0\0");
    }
}
