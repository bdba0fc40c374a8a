//! DNS response parsing and the `HostName` value every name source produces.
//!
//! This module owns two things: [`HostName`], the normalized, bounded, printable form
//! of a server name learned from the wire (shared with `tls` and `http`), and the
//! decoding of DNS responses (over UDP, and one length-prefixed message of a DNS over
//! TCP stream) into the A, AAAA and CNAME answers a later flow can be named by.
//! It is a pure byte parser: it knows nothing of packets, flows or the catalog. It
//! must never panic, never allocate without a bound (names are at most 255 wire bytes,
//! at most [`MAX_ANSWERS`] answers are kept, compression pointers are followed at most
//! [`MAX_POINTER_JUMPS`] times and only backwards), and it returns a value for every
//! input: a message that is not a usable response is an `Err`, an answer section that
//! stops early keeps the answers decoded so far and says why it stopped.

use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name kept, in bytes: a DNS name is at most 255 bytes on the wire, and SNI
/// and HTTP `Host` values are cut to the same length (the cut is recorded).
pub const MAX_NAME_BYTES: usize = 255;

/// Most answers kept from one response; the others are counted in
/// [`DnsResponse::answers_over_cap`].
pub const MAX_ANSWERS: usize = 64;

/// Most compression pointers followed while reading one name.
pub const MAX_POINTER_JUMPS: usize = 32;

/// Most entries in the question section we walk past (real responses carry one).
const MAX_QUESTIONS: u16 = 8;

/// Most labels a name of at most 255 wire bytes can have (each label takes at least
/// two bytes: its length and one byte).
const MAX_LABELS: usize = 128;

// ---------------------------------------------------------------------------------------
// HostName
// ---------------------------------------------------------------------------------------

const FLAG_ESCAPED: u8 = 1;
const FLAG_CUT: u8 = 2;

/// A server name as learned from the wire (TLS SNI, HTTP `Host`, DNS): ASCII letters
/// lowercased, no trailing dot, never empty, built from at most [`MAX_NAME_BYTES`] wire
/// bytes.
///
/// A name made only of printable characters (printable ASCII, or UTF-8 without control,
/// white-space or invisible formatting characters) is kept as it is. Anything else is
/// kept in an escaped form (`\xNN` for each odd byte, `\\` for a backslash, and for DNS
/// a dot inside a label as `\x2e`), flagged by [`HostName::is_escaped`], so that a
/// hostile name can be printed safely yet still tells the reader what was sent. It
/// serializes as its text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName {
    text: Box<str>,
    flags: u8,
}

impl HostName {
    /// Normalizes a name taken from the wire (SNI `host_name`, HTTP `Host` without its
    /// port). Strips one trailing dot; `None` if nothing is left.
    pub fn from_wire(bytes: &[u8]) -> Option<HostName> {
        let bytes = match bytes.split_last() {
            Some((b'.', rest)) => rest,
            _ => bytes,
        };
        if bytes.is_empty() {
            return None;
        }
        let cut = bytes.len() > MAX_NAME_BYTES;
        let bytes = bytes.get(..MAX_NAME_BYTES).unwrap_or(bytes);
        let mut flags = if cut { FLAG_CUT } else { 0 };
        let text = if let Some(plain) = plain_text(bytes) {
            let mut s = plain.to_owned();
            s.make_ascii_lowercase();
            s
        } else {
            flags |= FLAG_ESCAPED;
            let mut s = String::with_capacity(bytes.len().saturating_mul(2));
            escape_into(&mut s, bytes, false);
            s
        };
        Some(HostName {
            text: text.into_boxed_str(),
            flags,
        })
    }

    /// Builds a name from DNS labels (slices of the message), joined with dots.
    fn from_labels(labels: &[&[u8]]) -> Option<HostName> {
        if labels.is_empty() {
            return None;
        }
        let plain = labels
            .iter()
            .all(|l| l.iter().all(|&b| is_plain_ascii(b) && b != b'.'));
        let total = labels
            .iter()
            .fold(0usize, |t, l| t.saturating_add(l.len()).saturating_add(1));
        let mut s = String::with_capacity(if plain {
            total
        } else {
            total.saturating_mul(2)
        });
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            if plain {
                for &b in label.iter() {
                    s.push(char::from(b.to_ascii_lowercase()));
                }
            } else {
                escape_into(&mut s, label, true);
            }
        }
        Some(HostName {
            text: s.into_boxed_str(),
            flags: if plain { 0 } else { FLAG_ESCAPED },
        })
    }

    /// The name as text (escaped when [`HostName::is_escaped`]).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text, without copying it.
    pub fn into_string(self) -> String {
        self.text.into_string()
    }

    /// The wire bytes were not all printable and the text is the escaped form.
    pub fn is_escaped(&self) -> bool {
        self.flags & FLAG_ESCAPED != 0
    }

    /// The wire name was longer than [`MAX_NAME_BYTES`] and was cut.
    pub fn is_cut(&self) -> bool {
        self.flags & FLAG_CUT != 0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Serialize for HostName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Printable ASCII other than space and backslash (the escape character).
fn is_plain_ascii(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'\\'
}

/// Characters that are printable but invisible or reorder text (zero-width, bidi
/// controls, BOM): kept out of the plain form so a report cannot be made to lie.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `Some(text)` when the bytes can be shown as they are.
fn plain_text(bytes: &[u8]) -> Option<&str> {
    if bytes.iter().all(|&b| is_plain_ascii(b)) {
        return std::str::from_utf8(bytes).ok();
    }
    let s = std::str::from_utf8(bytes).ok()?;
    let printable = s
        .chars()
        .all(|c| !c.is_control() && !c.is_whitespace() && !is_invisible(c) && c != '\\');
    printable.then_some(s)
}

/// Appends the escaped form of `bytes`, lowercasing ASCII letters. With `in_label`, a
/// dot is escaped too (it is data inside a DNS label, not a separator).
fn escape_into(out: &mut String, bytes: &[u8], in_label: bool) {
    use fmt::Write as _;
    for &b in bytes {
        if b == b'\\' {
            out.push_str("\\\\");
        } else if is_plain_ascii(b) && !(in_label && b == b'.') {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// DNS responses
// ---------------------------------------------------------------------------------------

/// Why a DNS message could not be used, or why its answer section stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsError {
    /// Shorter than the 12-byte header.
    TooShort,
    /// The QR bit is clear: a query, not a response.
    NotResponse,
    /// More questions than we walk past.
    TooManyQuestions,
    /// A section, record or name runs past the end of the message.
    Truncated,
    /// A label type other than a plain label or a compression pointer.
    BadLabel,
    /// A compression pointer that does not point backwards, or too many of them.
    BadPointer,
    /// A name longer than 255 bytes on the wire.
    NameTooLong,
    /// An A or AAAA record whose data is not 4 or 16 bytes.
    BadRdata,
    /// DNS over TCP: the buffer holds fewer bytes than the length prefix announces;
    /// `needed` is the whole length (prefix included) required.
    Incomplete { needed: usize },
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::TooShort => f.write_str("DNS message shorter than its header"),
            DnsError::NotResponse => f.write_str("DNS message is a query, not a response"),
            DnsError::TooManyQuestions => f.write_str("DNS message has too many questions"),
            DnsError::Truncated => f.write_str("DNS message ends inside a record"),
            DnsError::BadLabel => f.write_str("DNS name has an unknown label type"),
            DnsError::BadPointer => f.write_str("DNS name has a bad compression pointer"),
            DnsError::NameTooLong => f.write_str("DNS name longer than 255 bytes"),
            DnsError::BadRdata => f.write_str("DNS address record with a bad data length"),
            DnsError::Incomplete { needed } => {
                write!(f, "DNS over TCP message incomplete ({needed} bytes needed)")
            }
        }
    }
}

impl std::error::Error for DnsError {}

/// One answer record we keep (other types are skipped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DnsAnswer {
    A {
        name: HostName,
        addr: Ipv4Addr,
        ttl: u32,
    },
    Aaaa {
        name: HostName,
        addr: Ipv6Addr,
        ttl: u32,
    },
    Cname {
        name: HostName,
        target: HostName,
        ttl: u32,
    },
}

impl DnsAnswer {
    /// The owner name of the record.
    pub fn name(&self) -> &HostName {
        match self {
            DnsAnswer::A { name, .. } | DnsAnswer::Aaaa { name, .. } => name,
            DnsAnswer::Cname { name, .. } => name,
        }
    }

    /// The record's time to live, in seconds.
    pub fn ttl(&self) -> u32 {
        match *self {
            DnsAnswer::A { ttl, .. } | DnsAnswer::Aaaa { ttl, .. } => ttl,
            DnsAnswer::Cname { ttl, .. } => ttl,
        }
    }
}

/// The parts of a DNS response that name later flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsResponse {
    /// Transaction id.
    pub id: u16,
    /// Response code (0 no error, 2 server failure, 3 name error, ...), raw.
    pub rcode: u8,
    /// The TC bit: the server cut the response (the client will retry over TCP).
    pub truncated: bool,
    /// The first question's name (`None` without a question, or for the root).
    pub question: Option<HostName>,
    /// The first question's type (1 A, 28 AAAA, 65 HTTPS, ...), 0 without a question.
    pub qtype: u16,
    /// A, AAAA and CNAME answers of class IN, in message order, at most [`MAX_ANSWERS`].
    pub answers: Vec<DnsAnswer>,
    /// Answers of those types that were dropped because [`MAX_ANSWERS`] were kept.
    pub answers_over_cap: u16,
    /// Why the answer section stopped before its announced count (e.g. the capture cut
    /// the packet); the answers before that point are kept.
    pub incomplete: Option<DnsError>,
}

/// Reads big-endian u16 at `pos`.
fn be16(msg: &[u8], pos: usize) -> Option<u16> {
    let b = msg.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

/// The labels of one name, as slices of the message.
struct Labels<'a> {
    items: [&'a [u8]; MAX_LABELS],
    len: usize,
}

impl<'a> Labels<'a> {
    fn new() -> Self {
        Labels {
            items: [&[]; MAX_LABELS],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    fn name(&self) -> Option<HostName> {
        HostName::from_labels(self.as_slice())
    }
}

/// Reads the name starting at `start`, following compression pointers backwards only.
/// Returns the position just after the name where it started (after the first pointer
/// if there is one).
fn read_name<'a>(msg: &'a [u8], start: usize, labels: &mut Labels<'a>) -> Result<usize, DnsError> {
    labels.len = 0;
    let mut pos = start;
    let mut resume: Option<usize> = None;
    let mut jumps = 0usize;
    let mut wire_len = 1usize; // the root label
    loop {
        let b = *msg.get(pos).ok_or(DnsError::Truncated)?;
        // `pos` indexes a byte of `msg`, so `pos + 1` cannot overflow.
        let after = pos.checked_add(1).ok_or(DnsError::Truncated)?;
        match b & 0xc0 {
            0x00 => {
                let n = usize::from(b);
                if n == 0 {
                    return Ok(resume.unwrap_or(after));
                }
                wire_len = wire_len.saturating_add(n).saturating_add(1);
                if wire_len > MAX_NAME_BYTES {
                    return Err(DnsError::NameTooLong);
                }
                let end = after.checked_add(n).ok_or(DnsError::Truncated)?;
                let label = msg.get(after..end).ok_or(DnsError::Truncated)?;
                // wire_len <= 255 and every label adds >= 2, so this never overflows.
                if let Some(slot) = labels.items.get_mut(labels.len) {
                    *slot = label;
                    labels.len = labels.len.saturating_add(1);
                }
                pos = end;
            }
            0xc0 => {
                let lo = *msg.get(after).ok_or(DnsError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                jumps = jumps.saturating_add(1);
                if target >= pos || jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::BadPointer);
                }
                // `after` indexes a byte of `msg` too.
                resume.get_or_insert(after.checked_add(1).ok_or(DnsError::Truncated)?);
                pos = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Parses one DNS response as carried in a UDP payload.
pub fn parse_response(payload: &[u8]) -> Result<DnsResponse, DnsError> {
    let msg = payload;
    if msg.len() < 12 {
        return Err(DnsError::TooShort);
    }
    let id = be16(msg, 0).ok_or(DnsError::TooShort)?;
    let flags = be16(msg, 2).ok_or(DnsError::TooShort)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotResponse);
    }
    let qdcount = be16(msg, 4).ok_or(DnsError::TooShort)?;
    let ancount = be16(msg, 6).ok_or(DnsError::TooShort)?;
    if qdcount > MAX_QUESTIONS {
        return Err(DnsError::TooManyQuestions);
    }

    let mut labels = Labels::new();
    let mut pos = 12usize;
    let mut question = None;
    let mut qtype = 0u16;
    for i in 0..qdcount {
        pos = read_name(msg, pos, &mut labels)?;
        let t = be16(msg, pos).ok_or(DnsError::Truncated)?;
        let class_at = pos.checked_add(2).ok_or(DnsError::Truncated)?;
        be16(msg, class_at).ok_or(DnsError::Truncated)?;
        pos = class_at.checked_add(2).ok_or(DnsError::Truncated)?;
        if i == 0 {
            question = labels.name();
            qtype = t;
        }
    }

    let mut resp = DnsResponse {
        id,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        question,
        qtype,
        answers: Vec::new(),
        answers_over_cap: 0,
        incomplete: None,
    };
    for _ in 0..ancount {
        match read_answer(msg, pos, &mut labels, &mut resp) {
            Ok(next) => pos = next,
            Err(e) => {
                resp.incomplete = Some(e);
                break;
            }
        }
    }
    Ok(resp)
}

/// Reads one resource record at `pos`, keeps it in `resp` if it is one we use, and
/// returns the position of the next record.
fn read_answer<'a>(
    msg: &'a [u8],
    pos: usize,
    labels: &mut Labels<'a>,
    resp: &mut DnsResponse,
) -> Result<usize, DnsError> {
    let pos = read_name(msg, pos, labels)?;
    // The fixed part: type (2), class (2), TTL (4), data length (2).
    let rdata_at = pos.checked_add(10).ok_or(DnsError::Truncated)?;
    let fixed = msg.get(pos..rdata_at).ok_or(DnsError::Truncated)?;
    let &[t0, t1, c0, c1, l0, l1, l2, l3, d0, d1] = fixed else {
        return Err(DnsError::Truncated);
    };
    let rtype = u16::from_be_bytes([t0, t1]);
    let class = u16::from_be_bytes([c0, c1]);
    let ttl = u32::from_be_bytes([l0, l1, l2, l3]);
    let rdlen = usize::from(u16::from_be_bytes([d0, d1]));
    let next = rdata_at.checked_add(rdlen).ok_or(DnsError::Truncated)?;
    let rdata = msg.get(rdata_at..next).ok_or(DnsError::Truncated)?;
    // Class IN; mDNS sets the top bit (cache flush).
    if class & 0x7fff != 1 || !matches!(rtype, 1 | 5 | 28) {
        return Ok(next);
    }
    if resp.answers.len() >= MAX_ANSWERS {
        resp.answers_over_cap = resp.answers_over_cap.saturating_add(1);
        return Ok(next);
    }
    let Some(name) = labels.name() else {
        return Ok(next); // a record for the root: nothing to name
    };
    let answer = match rtype {
        1 => {
            let a: [u8; 4] = rdata.try_into().map_err(|_| DnsError::BadRdata)?;
            DnsAnswer::A {
                name,
                addr: Ipv4Addr::from(a),
                ttl,
            }
        }
        28 => {
            let a: [u8; 16] = rdata.try_into().map_err(|_| DnsError::BadRdata)?;
            DnsAnswer::Aaaa {
                name,
                addr: Ipv6Addr::from(a),
                ttl,
            }
        }
        _ => {
            // CNAME: the target may use compression pointers into the whole message.
            let end = read_name(msg, rdata_at, labels)?;
            if end > next {
                return Err(DnsError::Truncated);
            }
            let Some(target) = labels.name() else {
                return Ok(next);
            };
            DnsAnswer::Cname { name, target, ttl }
        }
    };
    resp.answers.push(answer);
    Ok(next)
}

/// Parses the first message of a DNS over TCP byte stream (server to client), which is
/// preceded by its 2-byte length. Returns the response and the number of stream bytes
/// it took (prefix included), so the caller can go on with the next message.
pub fn parse_tcp_stream_message(stream: &[u8]) -> Result<(DnsResponse, usize), DnsError> {
    let len = usize::from(be16(stream, 0).ok_or(DnsError::Incomplete { needed: 2 })?);
    let needed = len.saturating_add(2); // len <= 65535
    let msg = stream
        .get(2..needed)
        .ok_or(DnsError::Incomplete { needed })?;
    Ok((parse_response(msg)?, needed))
}

/// An address from a response, with the name a later flow to it should be credited to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub addr: IpAddr,
    /// The name the client asked for: the head of the CNAME chain that leads to the
    /// address, which is the question whenever the response is well formed.
    pub name: HostName,
    /// Every name from `name` to the owner of the address record, in order (one entry
    /// when there is no CNAME).
    pub chain: Vec<HostName>,
    /// The smallest TTL along the chain, in seconds.
    pub ttl: u32,
}

/// For each A and AAAA answer, follows CNAME records backwards to the name at the head
/// of the chain (normally the question: `courier.push.apple.com` -> CNAME
/// `courier-push-apple.com.akadns.net` -> A 17.57.146.52 gives 17.57.146.52 named
/// `courier.push.apple.com`). CNAME loops are cut.
pub fn resolve_chain(resp: &DnsResponse) -> Vec<Resolution> {
    let mut out = Vec::new();
    for answer in &resp.answers {
        let (addr, owner, ttl) = match answer {
            DnsAnswer::A { name, addr, ttl } => (IpAddr::V4(*addr), name, *ttl),
            DnsAnswer::Aaaa { name, addr, ttl } => (IpAddr::V6(*addr), name, *ttl),
            DnsAnswer::Cname { .. } => continue,
        };
        let mut chain = vec![owner.clone()];
        let mut ttl = ttl;
        let mut current = owner;
        // Each step adds a distinct name, so at most answers.len() steps.
        for _ in 0..resp.answers.len() {
            let previous = resp.answers.iter().find_map(|a| match a {
                DnsAnswer::Cname { name, target, ttl } if target == current => Some((name, ttl)),
                _ => None,
            });
            match previous {
                Some((name, cname_ttl)) if !chain.contains(name) => {
                    chain.push(name.clone());
                    ttl = ttl.min(*cname_ttl);
                    current = name;
                }
                _ => break,
            }
        }
        chain.reverse();
        out.push(Resolution {
            addr,
            name: current.clone(),
            chain,
            ttl,
        });
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;

    /// Real response captured on loopback from dnsmasq
    /// (`--cname=courier.push.apple.com,courier-push-apple.com.akadns.net
    /// --host-record=courier-push-apple.com.akadns.net,17.57.146.52,2620:149:a44::12
    /// --local-ttl=300`) to `dig +noedns courier.push.apple.com A`.
    const A_WITH_CNAME: &[u8] = &[
        0x6a, 0x5c, // id
        0x85, 0x80, // flags: QR, opcode 0, AA, RD, RA, rcode 0
        0x00, 0x01, // qdcount 1
        0x00, 0x02, // ancount 2
        0x00, 0x00, // nscount 0
        0x00, 0x00, // arcount 0
        // question (offset 12): courier.push.apple.com
        0x07, b'c', b'o', b'u', b'r', b'i', b'e', b'r', //
        0x04, b'p', b'u', b's', b'h', //
        0x05, b'a', b'p', b'p', b'l', b'e', //
        0x03, b'c', b'o', b'm', 0x00, //
        0x00, 0x01, // qtype A
        0x00, 0x01, // qclass IN
        // answer 1: owner = pointer to offset 12 (the question name)
        0xc0, 0x0c, //
        0x00, 0x05, // type CNAME
        0x00, 0x01, // class IN
        0x00, 0x00, 0x01, 0x2c, // ttl 300
        0x00, 0x23, // rdlength 35
        // rdata (offset 52): courier-push-apple.com.akadns.net
        0x12, b'c', b'o', b'u', b'r', b'i', b'e', b'r', b'-', b'p', b'u', b's', b'h', b'-', b'a',
        b'p', b'p', b'l', b'e', //
        0x03, b'c', b'o', b'm', //
        0x06, b'a', b'k', b'a', b'd', b'n', b's', //
        0x03, b'n', b'e', b't', 0x00, //
        // answer 2: owner = pointer to offset 52 (the CNAME target)
        0xc0, 0x34, //
        0x00, 0x01, // type A
        0x00, 0x01, // class IN
        0x00, 0x00, 0x01, 0x2c, // ttl 300
        0x00, 0x04, // rdlength 4
        0x11, 0x39, 0x92, 0x34, // 17.57.146.52
    ];

    /// Same server, `dig +noedns courier.push.apple.com AAAA`: the answers only.
    const AAAA_WITH_CNAME: &[u8] = &[
        0x83, 0x97, // id
        0x85, 0x80, // flags: QR AA RD RA
        0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // 1 question, 2 answers
        0x07, b'c', b'o', b'u', b'r', b'i', b'e', b'r', 0x04, b'p', b'u', b's', b'h', 0x05, b'a',
        b'p', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, // courier.push.apple.com
        0x00, 0x1c, 0x00, 0x01, // qtype AAAA, qclass IN
        0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, // owner -> 12, CNAME, IN
        0x00, 0x00, 0x01, 0x2c, 0x00, 0x23, // ttl 300, rdlength 35
        0x12, b'c', b'o', b'u', b'r', b'i', b'e', b'r', b'-', b'p', b'u', b's', b'h', b'-', b'a',
        b'p', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x06, b'a', b'k', b'a', b'd', b'n', b's',
        0x03, b'n', b'e', b't', 0x00, // courier-push-apple.com.akadns.net
        0xc0, 0x34, 0x00, 0x1c, 0x00, 0x01, // owner -> 52, AAAA, IN
        0x00, 0x00, 0x01, 0x2c, 0x00, 0x10, // ttl 300, rdlength 16
        0x26, 0x20, 0x01, 0x49, 0x0a, 0x44, 0x00, 0x00, // 2620:149:a44::
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, // ...:12
    ];

    /// Same server, `dig +noedns nx.example A` with no upstream: REFUSED, no answers.
    const REFUSED: &[u8] = &[
        0x6d, 0xa0, // id
        0x81, 0x85, // flags: QR RD RA, rcode 5 (refused)
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1 question, 0 answers
        0x02, b'n', b'x', 0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x00, // nx.example
        0x00, 0x01, 0x00, 0x01, // A, IN
    ];

    fn name(s: &str) -> HostName {
        HostName::from_wire(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_answer_behind_cname() {
        let r = parse_response(A_WITH_CNAME).unwrap();
        assert_eq!(r.id, 0x6a5c);
        assert_eq!(r.rcode, 0);
        assert!(!r.truncated);
        assert_eq!(r.question, Some(name("courier.push.apple.com")));
        assert_eq!(r.qtype, 1);
        assert_eq!(r.incomplete, None);
        assert_eq!(
            r.answers,
            vec![
                DnsAnswer::Cname {
                    name: name("courier.push.apple.com"),
                    target: name("courier-push-apple.com.akadns.net"),
                    ttl: 300
                },
                DnsAnswer::A {
                    name: name("courier-push-apple.com.akadns.net"),
                    addr: Ipv4Addr::new(17, 57, 146, 52),
                    ttl: 300
                },
            ]
        );
        let res = resolve_chain(&r);
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].addr, IpAddr::V4(Ipv4Addr::new(17, 57, 146, 52)));
        assert_eq!(res[0].name.as_str(), "courier.push.apple.com");
        assert_eq!(
            res[0].chain,
            vec![
                name("courier.push.apple.com"),
                name("courier-push-apple.com.akadns.net")
            ]
        );
        assert_eq!(res[0].ttl, 300);
    }

    #[test]
    fn aaaa_answer_behind_cname() {
        let r = parse_response(AAAA_WITH_CNAME).unwrap();
        assert_eq!(r.qtype, 28);
        let res = resolve_chain(&r);
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].addr, "2620:149:a44::12".parse::<IpAddr>().unwrap());
        assert_eq!(res[0].name.as_str(), "courier.push.apple.com");
    }

    #[test]
    fn refused_has_question_and_no_answers() {
        let r = parse_response(REFUSED).unwrap();
        assert_eq!(r.rcode, 5);
        assert_eq!(r.question, Some(name("nx.example")));
        assert!(r.answers.is_empty());
        assert!(resolve_chain(&r).is_empty());
    }

    #[test]
    fn query_is_not_a_response() {
        let q = [
            0x6a, 0x5c, 0x01, 0x20, // id, flags: RD AD (QR clear)
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1 question
            0x01, b'a', 0x00, 0x00, 0x01, 0x00, 0x01, // a. A IN
        ];
        assert_eq!(parse_response(&q), Err(DnsError::NotResponse));
    }

    #[test]
    fn cut_answer_section_keeps_earlier_answers() {
        // The capture cut the packet inside the A record's data.
        let cut = &A_WITH_CNAME[..A_WITH_CNAME.len() - 2];
        let r = parse_response(cut).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(matches!(r.answers[0], DnsAnswer::Cname { .. }));
        assert_eq!(r.incomplete, Some(DnsError::Truncated));
        // Cut inside the question: unusable.
        assert_eq!(
            parse_response(&A_WITH_CNAME[..20]),
            Err(DnsError::Truncated)
        );
        assert_eq!(parse_response(&A_WITH_CNAME[..11]), Err(DnsError::TooShort));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_rejected() {
        let self_loop = [
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
            0xc0, 0x0c, // question name: pointer to itself (offset 12)
            0x00, 0x01, 0x00, 0x01, // A IN
        ];
        assert_eq!(parse_response(&self_loop), Err(DnsError::BadPointer));
        let forward = [
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
            0xc0, 0x0e, // pointer to offset 14 (forward)
            0x01, b'a', 0x00, 0x00, 0x01, 0x00, 0x01,
        ];
        assert_eq!(parse_response(&forward), Err(DnsError::BadPointer));
        let bad_label = [
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
            0x40, 0x00, // extended label type 0x40
        ];
        assert_eq!(parse_response(&bad_label), Err(DnsError::BadLabel));
    }

    #[test]
    fn chain_of_backward_pointers_is_bounded() {
        let mut m = vec![
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00,
            0x00, // 2 answers
            0x01, b'a', 0x00, 0x00, 0x01, 0x00, 0x01, // question a. A IN (name at 12)
            // answer 1 (offset 19): owner -> 12, TXT, IN, ttl 1, rdlength 80
            0xc0, 0x0c, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 80,
        ];
        // rdata at offset 31: 40 pointers, the first to 12, each next to the one before.
        let rdata_at = 31u16;
        let mut prev = 12u16;
        for i in 0..40u16 {
            m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
            prev = rdata_at + 2 * i;
        }
        // answer 2: owner -> the last pointer (41 jumps to reach a label), A, IN.
        m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
        m.extend_from_slice(&[0x00, 0x01, 0x00, 0x01, 0, 0, 0, 1, 0x00, 0x04, 10, 0, 0, 1]);
        let r = parse_response(&m).unwrap();
        assert_eq!(r.incomplete, Some(DnsError::BadPointer));
        assert!(r.answers.is_empty());
    }

    #[test]
    fn answers_over_cap_are_counted() {
        let mut m = vec![
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 70, 0x00, 0x00, 0x00,
            0x00, // 70 answers
            0x01, b'a', 0x00, 0x00, 0x01, 0x00, 0x01, // a. A IN
        ];
        for i in 0..70u8 {
            // owner -> 12, A, IN, ttl 60, rdlength 4, 10.0.0.i
            m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, i]);
        }
        let r = parse_response(&m).unwrap();
        assert_eq!(r.answers.len(), MAX_ANSWERS);
        assert_eq!(r.answers_over_cap, 6);
        assert_eq!(r.incomplete, None);
    }

    #[test]
    fn cname_loop_in_answers_terminates() {
        let mut m = vec![
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00,
            0x00, // 3 answers
            0x01, b'a', 0x00, 0x00, 0x01, 0x00, 0x01, // question a. (offset 12)
        ];
        // a CNAME b (b at offset 31), b CNAME a, b A 10.0.0.1
        m.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 9, 0, 3, 1, b'b', 0]);
        m.extend_from_slice(&[0xc0, 31, 0, 5, 0, 1, 0, 0, 0, 9, 0, 2, 0xc0, 0x0c]);
        m.extend_from_slice(&[0xc0, 31, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 1]);
        let r = parse_response(&m).unwrap();
        assert_eq!(r.answers.len(), 3);
        let res = resolve_chain(&r);
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].name.as_str(), "a");
        assert_eq!(res[0].chain, vec![name("a"), name("b")]);
    }

    #[test]
    fn over_tcp_with_length_prefix() {
        let mut stream = (A_WITH_CNAME.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(A_WITH_CNAME);
        stream.extend_from_slice(&[0x00]); // first byte of the next message
        let (r, used) = parse_tcp_stream_message(&stream).unwrap();
        assert_eq!(used, A_WITH_CNAME.len() + 2);
        assert_eq!(r.answers.len(), 2);
        assert_eq!(
            parse_tcp_stream_message(&stream[..50]),
            Err(DnsError::Incomplete {
                needed: A_WITH_CNAME.len() + 2
            })
        );
        assert_eq!(
            parse_tcp_stream_message(&[0x00]),
            Err(DnsError::Incomplete { needed: 2 })
        );
    }

    #[test]
    fn names_are_lowercased_and_odd_bytes_escaped() {
        let m = [
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
            0x03, b'W', b'.', 0x07, // label "W.\x07" (a dot and a BEL inside the label)
            0x03, b'C', b'o', b'M', 0x00, // "CoM"
            0x00, 0x01, 0x00, 0x01,
        ];
        let r = parse_response(&m).unwrap();
        let q = r.question.unwrap();
        assert_eq!(q.as_str(), "w\\x2e\\x07.com");
        assert!(q.is_escaped());
        assert_eq!(name("Example.COM.").as_str(), "example.com");
        assert_eq!(HostName::from_wire(b"."), None);
        assert_eq!(HostName::from_wire(b""), None);
        let odd = HostName::from_wire(b"a b\\c\xff").unwrap();
        assert_eq!(odd.as_str(), "a\\x20b\\\\c\\xff");
        assert!(odd.is_escaped());
        let utf8 = HostName::from_wire("Bücher.example".as_bytes()).unwrap();
        assert_eq!(utf8.as_str(), "bücher.example");
        assert!(!utf8.is_escaped());
        let bidi = HostName::from_wire("a\u{202e}b".as_bytes()).unwrap();
        assert!(bidi.is_escaped());
        let long = HostName::from_wire(&[b'a'; 300]).unwrap();
        assert!(long.is_cut());
        assert_eq!(long.as_str().len(), MAX_NAME_BYTES);
    }

    #[test]
    fn name_longer_than_255_is_rejected() {
        let mut m = vec![
            0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
        ];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'x'; 63]); // 5 * 64 = 320 wire bytes
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_response(&m), Err(DnsError::NameTooLong));
    }

    #[test]
    fn every_prefix_and_some_garbage_returns_a_value() {
        for msg in [A_WITH_CNAME, AAAA_WITH_CNAME, REFUSED] {
            for n in 0..=msg.len() {
                let _ = parse_response(&msg[..n]);
                let _ = parse_tcp_stream_message(&msg[..n]);
            }
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut buf = [0u8; 64];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[2] |= 0x80;
            if let Ok(r) = parse_response(&buf) {
                let _ = resolve_chain(&r);
            }
        }
    }
}
