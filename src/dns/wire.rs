//! The little of the DNS wire format (RFC 1035 §4, RFC 6891 for EDNS) the resolver needs: read a query's
//! header, question and EDNS size; write answers; walk an upstream reply's records to find their TTLs.
//! Hand-written rather than a full message parser: a local answer must cost about a microsecond, and
//! forwarded replies are passed through byte for byte (only ID and TTLs are rewritten).
//!
//! Every read is bounds-checked and every compression pointer must point backwards, so no input can make
//! it panic or loop.

pub const HEADER_LEN: usize = 12;
/// What a client without EDNS can receive over UDP (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;
/// The EDNS payload size tetherd advertises and honours at most (the DNS flag day 2020 value).
pub const EDNS_UDP_SIZE: u16 = 1232;

pub const TYPE_A: u16 = 1;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its own counts and lengths say.
    Truncated,
    /// A label or name longer than RFC 1035 allows, or a pointer that does not point backwards.
    BadName,
}

pub fn id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, WireError> {
    match msg.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

fn u32_at(msg: &[u8], at: usize) -> Result<u32, WireError> {
    match msg.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

pub fn flags(msg: &[u8]) -> u16 {
    u16_at(msg, 2).unwrap_or(0)
}

pub fn is_response(msg: &[u8]) -> bool {
    flags(msg) & FLAG_QR != 0
}

pub fn is_truncated(msg: &[u8]) -> bool {
    flags(msg) & FLAG_TC != 0
}

pub fn opcode(msg: &[u8]) -> u8 {
    ((flags(msg) >> 11) & 0xf) as u8
}

pub fn rcode(msg: &[u8]) -> u8 {
    (flags(msg) & 0xf) as u8
}

fn count(msg: &[u8], which: usize) -> u16 {
    u16_at(msg, 4 + 2 * which).unwrap_or(0)
}

/// Reads the name at `at` into `out` (lower case, dotted, no trailing dot; the root is ""), following
/// compression pointers. Returns the offset just past the name where it started.
pub fn read_name(msg: &[u8], at: usize, out: &mut String) -> Result<usize, WireError> {
    out.clear();
    let mut pos = at;
    let mut end = None;
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end.unwrap_or(pos + 1));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::Truncated)?;
                total += len + 1;
                if total > 255 {
                    return Err(WireError::BadName);
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    // Non-ASCII and dots inside a label cannot match any local name; keep them unambiguous.
                    match b {
                        b'A'..=b'Z' => out.push((b + 32) as char),
                        0x21..=0x7e if b != b'.' => out.push(b as char),
                        _ => out.push('\u{fffd}'),
                    }
                }
                pos += 1 + len;
            }
            0xc0 => {
                let target = (u16_at(msg, pos)? & 0x3fff) as usize;
                // Only backwards: rules out loops without counting hops.
                if target >= pos {
                    return Err(WireError::BadName);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(WireError::BadName),
        }
    }
}

/// Offset just past the (possibly compressed) name at `at`, without decoding it.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, WireError> {
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(at + 1),
            0x00 => at += 1 + len,
            0xc0 => return Ok(at + 2),
            _ => return Err(WireError::BadName),
        }
    }
}

/// A parsed query: what the resolver needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    pub recursion_desired: bool,
    /// Lower case, no trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends: replies copy `query[12..raw_end]` byte for byte, since some
    /// clients check that the question comes back in the case they sent.
    pub raw_end: usize,
    /// The client's EDNS UDP payload size, when it sent an OPT record.
    pub edns_size: Option<u16>,
}

impl Question {
    /// The largest UDP reply this client accepts.
    pub fn udp_limit(&self) -> usize {
        match self.edns_size {
            Some(size) => (size.clamp(CLASSIC_UDP_SIZE as u16, EDNS_UDP_SIZE)) as usize,
            None => CLASSIC_UDP_SIZE,
        }
    }
}

/// Why a message is not a query we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryProblem {
    /// Not even a header, or a response: drop it silently (answering could start a loop).
    Ignore,
    /// Answer with this rcode and no question.
    Reject(u8),
}

/// Parses one query: header checks, the single question, and the EDNS size if any.
pub fn parse_query(msg: &[u8]) -> Result<Question, QueryProblem> {
    if msg.len() < HEADER_LEN || is_response(msg) {
        return Err(QueryProblem::Ignore);
    }
    if opcode(msg) != 0 {
        return Err(QueryProblem::Reject(RCODE_NOTIMP));
    }
    if count(msg, 0) != 1 {
        return Err(QueryProblem::Reject(RCODE_FORMERR));
    }
    let mut name = String::with_capacity(64);
    let after_name =
        read_name(msg, HEADER_LEN, &mut name).map_err(|_| QueryProblem::Reject(RCODE_FORMERR))?;
    let qtype = u16_at(msg, after_name).map_err(|_| QueryProblem::Reject(RCODE_FORMERR))?;
    let qclass = u16_at(msg, after_name + 2).map_err(|_| QueryProblem::Reject(RCODE_FORMERR))?;
    let raw_end = after_name + 4;
    Ok(Question {
        id: id(msg).unwrap_or(0),
        recursion_desired: flags(msg) & FLAG_RD != 0,
        name,
        qtype,
        qclass,
        raw_end,
        edns_size: edns_size(msg, raw_end),
    })
}

/// The UDP size of the OPT record in the additional section, if any (a malformed tail means none).
fn edns_size(msg: &[u8], mut at: usize) -> Option<u16> {
    let records = count(msg, 1) as usize + count(msg, 2) as usize + count(msg, 3) as usize;
    let answers_and_authority = count(msg, 1) as usize + count(msg, 2) as usize;
    for i in 0..records {
        let after = skip_name(msg, at).ok()?;
        let rtype = u16_at(msg, after).ok()?;
        let class = u16_at(msg, after + 2).ok()?;
        let rdlen = u16_at(msg, after + 8).ok()? as usize;
        if i >= answers_and_authority && rtype == TYPE_OPT {
            return Some(class);
        }
        at = after + 10 + rdlen;
    }
    None
}

/// One answer record to write.
pub enum Rdata<'a> {
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    /// A dotted name, written uncompressed.
    Ptr(&'a str),
}

/// Writes replies into a reusable buffer: header, the query's question, answers, then an OPT record when
/// the client used EDNS.
pub struct ReplyWriter<'b> {
    out: &'b mut Vec<u8>,
    answers: u16,
    limit: usize,
    truncated: bool,
}

impl<'b> ReplyWriter<'b> {
    /// Starts a reply to `q` with `rcode`, authoritative (it is ours) or not. `limit` is the size the
    /// reply must fit (UDP) or 65535 (TCP).
    pub fn start(
        out: &'b mut Vec<u8>,
        query: &[u8],
        q: &Question,
        rcode: u8,
        authoritative: bool,
        limit: usize,
    ) -> ReplyWriter<'b> {
        out.clear();
        let mut flags = FLAG_QR | FLAG_RA | rcode as u16;
        if q.recursion_desired {
            flags |= FLAG_RD;
        }
        if authoritative {
            flags |= FLAG_AA;
        }
        out.extend_from_slice(&q.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&query[HEADER_LEN..q.raw_end]);
        // Room for the OPT record at the end.
        let reserve = if q.edns_size.is_some() { 11 } else { 0 };
        ReplyWriter {
            out,
            answers: 0,
            limit: limit.saturating_sub(reserve),
            truncated: false,
        }
    }

    /// Adds one answer for the question's name (a pointer to offset 12). Returns false, and marks the
    /// reply truncated, when it would not fit.
    pub fn answer(&mut self, rtype: u16, ttl: u32, rdata: Rdata<'_>) -> bool {
        let rd_len = match &rdata {
            Rdata::A(_) => 4,
            Rdata::Aaaa(_) => 16,
            Rdata::Ptr(name) => encoded_name_len(name),
        };
        if self.out.len() + 12 + rd_len > self.limit {
            self.truncated = true;
            return false;
        }
        self.out.extend_from_slice(&[0xc0, 0x0c]);
        self.out.extend_from_slice(&rtype.to_be_bytes());
        self.out.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        self.out.extend_from_slice(&(rd_len as u16).to_be_bytes());
        match rdata {
            Rdata::A(a) => self.out.extend_from_slice(&a.octets()),
            Rdata::Aaaa(a) => self.out.extend_from_slice(&a.octets()),
            Rdata::Ptr(name) => write_name(self.out, name),
        }
        self.answers += 1;
        true
    }

    /// Finishes the reply: counts, TC, and the OPT record for EDNS clients.
    pub fn finish(self, q: &Question) {
        self.out[6..8].copy_from_slice(&self.answers.to_be_bytes());
        if self.truncated {
            self.out[2] |= (FLAG_TC >> 8) as u8;
        }
        if q.edns_size.is_some() {
            self.out.extend_from_slice(&[0, 0, 41]);
            self.out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
            self.out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            self.out[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
    }
}

fn encoded_name_len(name: &str) -> usize {
    if name.is_empty() {
        1
    } else {
        name.len() + 2
    }
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

/// A header-only error reply (no question) for a query we could not parse.
pub fn error_reply(out: &mut Vec<u8>, query: &[u8], rcode: u8) {
    out.clear();
    let flags =
        FLAG_QR | FLAG_RA | (flags(query) & FLAG_RD) | (opcode(query) as u16) << 11 | rcode as u16;
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// What the cache needs of an upstream reply: where its TTL fields are and the smallest TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTtls {
    /// Offsets of the 32-bit TTL fields of every record but OPT.
    pub offsets: Vec<usize>,
    /// The smallest TTL of the answer and authority sections (for a negative answer: its SOA's).
    pub min_ttl: Option<u32>,
}

/// Walks an upstream reply. Fails on a malformed one (it is then passed on but never cached).
pub fn reply_ttls(msg: &[u8]) -> Result<ReplyTtls, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let mut at = HEADER_LEN;
    for _ in 0..count(msg, 0) {
        at = skip_name(msg, at)? + 4;
    }
    let scored = count(msg, 1) as usize + count(msg, 2) as usize;
    let total = scored + count(msg, 3) as usize;
    let mut offsets = Vec::with_capacity(total);
    let mut min_ttl: Option<u32> = None;
    for i in 0..total {
        let after = skip_name(msg, at)?;
        let rtype = u16_at(msg, after)?;
        let ttl = u32_at(msg, after + 4)?;
        let rdlen = u16_at(msg, after + 8)? as usize;
        if after + 10 + rdlen > msg.len() {
            return Err(WireError::Truncated);
        }
        if rtype != TYPE_OPT {
            offsets.push(after + 4);
            if i < scored {
                let mut ttl = ttl;
                if rtype == TYPE_SOA {
                    // RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM), the last rdata field.
                    ttl = ttl.min(u32_at(msg, after + 10 + rdlen - 4)?);
                }
                min_ttl = Some(min_ttl.map_or(ttl, |m| m.min(ttl)));
            }
        }
        at = after + 10 + rdlen;
    }
    Ok(ReplyTtls { offsets, min_ttl })
}

/// Lowers every TTL by `age` seconds (not below zero), for a reply served from the cache.
pub fn age_ttls(msg: &mut [u8], offsets: &[usize], age: u32) {
    for &at in offsets {
        age_ttl(msg, at, age);
    }
}

/// Lowers the TTL field at `at` by `age` seconds (not below zero).
pub fn age_ttl(msg: &mut [u8], at: usize, age: u32) {
    if let Some(field) = msg.get_mut(at..at + 4) {
        let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
        field.copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
    }
}

/// Where the question section of a message with one question ends.
pub fn question_end(msg: &[u8]) -> Result<usize, WireError> {
    let end = skip_name(msg, HEADER_LEN)? + 4;
    if end > msg.len() {
        return Err(WireError::Truncated);
    }
    Ok(end)
}

/// Sets TC and cuts a reply down to header + question, for a UDP client it does not fit.
pub fn truncate_to_question(msg: &mut Vec<u8>) {
    let Ok(mut at) = skip_name(msg, HEADER_LEN) else {
        msg.truncate(HEADER_LEN);
        msg[4..12].fill(0);
        msg[2] |= (FLAG_TC >> 8) as u8;
        return;
    };
    at += 4;
    msg.truncate(at.min(msg.len()));
    msg[6..12].fill(0);
    msg[2] |= (FLAG_TC >> 8) as u8;
}

/// Builds a query (for tests, the bench and the fake upstream).
pub fn build_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns as u8]);
    write_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    out
}

/// The answers of a reply as (type, rdata) pairs (for tests and the bench).
pub fn answers(msg: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, WireError> {
    let mut at = HEADER_LEN;
    for _ in 0..count(msg, 0) {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..count(msg, 1) {
        let after = skip_name(msg, at)?;
        let rtype = u16_at(msg, after)?;
        let rdlen = u16_at(msg, after + 8)? as usize;
        let rdata = msg
            .get(after + 10..after + 10 + rdlen)
            .ok_or(WireError::Truncated)?;
        out.push((rtype, rdata.to_vec()));
        at = after + 10 + rdlen;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_query_round_trips_through_the_parser() {
        let msg = build_query(0x1234, "Web.Net1", TYPE_A, true);
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "web.net1");
        assert_eq!((q.qtype, q.qclass), (TYPE_A, CLASS_IN));
        assert_eq!(q.edns_size, Some(EDNS_UDP_SIZE));
        assert!(q.recursion_desired);
        let plain = build_query(1, "x", TYPE_AAAA, false);
        assert_eq!(parse_query(&plain).unwrap().edns_size, None);
    }

    #[test]
    fn replies_echo_the_question_and_carry_answers() {
        let query = build_query(7, "WEB", TYPE_A, false);
        let q = parse_query(&query).unwrap();
        let mut out = Vec::new();
        let mut w = ReplyWriter::start(&mut out, &query, &q, RCODE_NOERROR, true, 512);
        assert!(w.answer(TYPE_A, 10, Rdata::A(Ipv4Addr::new(10, 0, 0, 2))));
        w.finish(&q);
        assert_eq!(id(&out), Some(7));
        assert!(is_response(&out) && !is_truncated(&out));
        assert_eq!(&out[12..query.len()], &query[12..]); // question as sent, case kept
        assert_eq!(answers(&out).unwrap(), vec![(TYPE_A, vec![10, 0, 0, 2])]);
        let ttls = reply_ttls(&out).unwrap();
        assert_eq!(ttls.min_ttl, Some(10));
        age_ttls(&mut out, &ttls.offsets, 4);
        assert_eq!(reply_ttls(&out).unwrap().min_ttl, Some(6));
    }

    #[test]
    fn answers_beyond_the_udp_limit_set_tc() {
        let query = build_query(7, "many", TYPE_A, false);
        let q = parse_query(&query).unwrap();
        let mut out = Vec::new();
        let mut w = ReplyWriter::start(&mut out, &query, &q, RCODE_NOERROR, true, 512);
        let fitted = (0..100)
            .take_while(|i| w.answer(TYPE_A, 10, Rdata::A(Ipv4Addr::new(10, 0, 0, *i))))
            .count();
        w.finish(&q);
        assert!(fitted < 100 && out.len() <= 512 && is_truncated(&out));
    }

    #[test]
    fn compression_loops_and_garbage_are_errors_not_panics() {
        // A pointer to itself.
        let mut msg = build_query(1, "a", TYPE_A, false);
        msg.truncate(12);
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&msg), Err(QueryProblem::Reject(RCODE_FORMERR)));
        assert_eq!(parse_query(&[0; 5]), Err(QueryProblem::Ignore));
        let mut seed = 0x2545f491u32;
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = parse_query(&bytes);
            let _ = reply_ttls(&bytes);
            let _ = answers(&bytes);
        }
    }

    #[test]
    fn ptr_names_are_written_uncompressed() {
        let query = build_query(9, "2.0.0.10.in-addr.arpa", TYPE_PTR, false);
        let q = parse_query(&query).unwrap();
        let mut out = Vec::new();
        let mut w = ReplyWriter::start(&mut out, &query, &q, RCODE_NOERROR, true, 512);
        w.answer(TYPE_PTR, 10, Rdata::Ptr("web.net1"));
        w.finish(&q);
        let ans = answers(&out).unwrap();
        assert_eq!(ans[0].1, b"\x03web\x04net1\x00".to_vec());
    }
}
