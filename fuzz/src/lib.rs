//! Shared pieces of the fuzz targets: the documented input formats (so that
//! `seed-corpus.py` can write seeds the targets read the same way) and the checks of
//! the parsers' documented contracts that every target applies to what it gets back.
//!
//! Nothing here may hide a panic of the code under test: the checks only add
//! assertions, they never catch anything.

use arbitrary::{Arbitrary, Unstructured};
use mdmaudit::decode::linktype;
use mdmaudit::dns::{HostName, MAX_NAME_BYTES};
use mdmaudit::tls::ClientHelloInfo;

/// Link types reached by the first input byte of `decode_frame` and of each raw-frame
/// record of `flow_table`: a selector below `LINKTYPES.len()` picks one of these (the
/// ones `mdmaudit::decode::linktype` supports); any other selector is used as the raw
/// link type number itself (so unsupported numbers are tried too).
pub const LINKTYPES: [u32; 14] = [
    linktype::NULL,
    linktype::ETHERNET,
    linktype::PPP,
    linktype::RAW_OPENBSD,
    linktype::RAW_BSDOS,
    linktype::PPP_HDLC,
    linktype::PPP_ETHER,
    linktype::RAW,
    linktype::LOOP,
    linktype::LINUX_SLL,
    linktype::IPV4,
    linktype::IPV6,
    linktype::NFLOG,
    linktype::LINUX_SLL2,
];

/// The link type a selector byte stands for (see [`LINKTYPES`]).
pub fn linktype_of(selector: u8) -> u32 {
    LINKTYPES
        .get(usize::from(selector))
        .copied()
        .unwrap_or(u32::from(selector))
}

/// Longest text a [`HostName`] may have: every one of its at most
/// [`MAX_NAME_BYTES`] wire bytes escaped as `\xNN`.
pub const MAX_NAME_TEXT: usize = 4 * MAX_NAME_BYTES;

/// Characters a name shown in a report must never contain (the contract of
/// [`HostName`]: control, white-space and invisible or reordering characters are
/// escaped, so a report cannot be made to lie).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Checks the documented shape of a name learned from the wire.
pub fn check_name(name: &HostName) {
    check_name_text(name.as_str());
}

/// Checks a name already turned into text (as in a flow record).
pub fn check_name_text(text: &str) {
    assert!(!text.is_empty(), "empty name");
    assert!(
        text.len() <= MAX_NAME_TEXT,
        "name of {} bytes exceeds the cap",
        text.len()
    );
    if let Some(c) = text.chars().find(|&c| is_unsafe_char(c)) {
        panic!("name {text:?} holds unsafe character {c:?}");
    }
    assert!(
        !text.bytes().any(|b| b.is_ascii_uppercase()),
        "name {text:?} is not lowercased"
    );
}

/// Longest ALPN protocol name `mdmaudit::tls` keeps, in wire bytes.
pub const MAX_ALPN_BYTES: usize = 64;

/// Checks what a ClientHello parse returned: the SNI is a valid name, the ALPN value is
/// bounded (each kept byte escaped to at most 4 characters) and printable.
pub fn check_hello(info: &ClientHelloInfo) {
    if let Some(sni) = &info.sni {
        check_name(sni);
    }
    if let Some(alpn) = &info.alpn_first {
        assert!(
            alpn.len() <= 4 * MAX_ALPN_BYTES,
            "ALPN of {} bytes exceeds the cap",
            alpn.len()
        );
        if let Some(c) = alpn.chars().find(|&c| c.is_control()) {
            panic!("ALPN {alpn:?} holds control character {c:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// tls_hello_segments
// ---------------------------------------------------------------------------------------

/// One client segment of a `tls_hello_segments` input: the bytes
/// `stream[start .. start + len]` (clamped to the stream), sent with sequence number
/// `isn + 1 + start + seq_shift` (wrapping), flagged as cut by the capture or not.
///
/// Wire layout (what `#[derive(Arbitrary)]` reads, integers little-endian, a bool is
/// the low bit of one byte): `start: u16, len: u16, seq_shift: i16, truncated: u8`.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: u16,
    pub len: u16,
    pub seq_shift: i16,
    pub truncated: bool,
}

/// A `tls_hello_segments` input.
///
/// Layout: `flags: u8` (bit 0: the SYN was seen, so the assembler gets `Some(isn)`),
/// `isn: u32`, `count: u8`, then `count` [`Segment`]s (7 bytes each), then the client
/// byte stream the segments are cut from (the rest of the input).
#[derive(Debug)]
pub struct SegmentPlan<'a> {
    pub syn_seen: bool,
    pub isn: u32,
    pub segments: Vec<Segment>,
    pub stream: &'a [u8],
}

impl<'a> SegmentPlan<'a> {
    pub fn read(data: &'a [u8]) -> SegmentPlan<'a> {
        let mut u = Unstructured::new(data);
        // Reading integers and derived structs from `Unstructured` never fails: past
        // the end of the input it yields zeros.
        let flags: u8 = u.arbitrary().unwrap_or_default();
        let isn: u32 = u.arbitrary().unwrap_or_default();
        let count: u8 = u.arbitrary().unwrap_or_default();
        let mut segments = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            if u.is_empty() {
                break;
            }
            if let Ok(s) = u.arbitrary::<Segment>() {
                segments.push(s);
            }
        }
        SegmentPlan {
            syn_seen: flags & 1 == 1,
            isn,
            segments,
            stream: u.take_rest(),
        }
    }

    /// The sequence number and bytes of one segment.
    pub fn cut(&self, s: &Segment) -> (u32, &'a [u8]) {
        let start = usize::from(s.start).min(self.stream.len());
        let end = start
            .saturating_add(usize::from(s.len))
            .min(self.stream.len());
        let seq = self
            .isn
            .wrapping_add(1)
            .wrapping_add(u32::from(s.start))
            .wrapping_add(s.seq_shift as i32 as u32);
        (seq, &self.stream[start..end])
    }
}

// ---------------------------------------------------------------------------------------
// flow_table
// ---------------------------------------------------------------------------------------

/// Limits of the flow table under test, all small so that eviction, idle expiry and the
/// DNS cache cap are reached by short inputs.
///
/// Layout: six bytes, `max_flows = 1 + b0 % 8`, `max_dns_entries = 1 + b1 % 8`,
/// `max_hello_segments = 1 + b2 % 40`, and the TCP, TCP-attempt and UDP idle timeouts
/// `1 + b3`, `1 + b4`, `1 + b5` seconds.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct TableLimits {
    pub flows: u8,
    pub dns: u8,
    pub hello_segments: u8,
    pub tcp_idle_s: u8,
    pub tcp_attempt_idle_s: u8,
    pub udp_idle_s: u8,
}

impl TableLimits {
    pub fn max_flows(&self) -> usize {
        1 + usize::from(self.flows % 8)
    }
}

/// The head of one `flow_table` record.
///
/// Layout: `kind: u8`, `dt_10ms: i16` (packet time moves by this many 10 ms steps; it
/// may go backwards as in real captures), `len: u16`, then `len` bytes (fewer at the
/// end of the input). With `kind < 0x80` the bytes are a frame of link type
/// [`linktype_of`]`(kind)` that goes through `decode`; with `kind >= 0x80` they are a
/// [`Synthetic`] packet header followed by its payload.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct RecordHead {
    pub kind: u8,
    pub dt_10ms: i16,
    pub len: u16,
}

/// A packet built directly as a decoded frame, between a few hosts and ports, so the
/// fuzzer reaches handshakes, resets, port reuse and naming without writing headers.
///
/// Layout (17 bytes): `proto: u8` (`% 3`: TCP, UDP, ICMP error quoting a TCP (even
/// `icmp_type`) or UDP packet), `src: u8`, `dst: u8` (`% 6` into [`HOSTS`]),
/// `sport: u8`, `dport: u8` (`% 8` into [`PORTS`]), `seq: u32`, `ack: u32`,
/// `flags: u8` (TCP flags), `cut: u8` (bytes the capture cut: `payload_len` is the
/// payload's length plus this), `icmp_type: u8`, `icmp_code: u8`. The payload is the
/// rest of the record.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct Synthetic {
    pub proto: u8,
    pub src: u8,
    pub dst: u8,
    pub sport: u8,
    pub dport: u8,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub cut: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// Size of a [`Synthetic`] header in a record.
pub const SYNTHETIC_LEN: usize = 17;

/// Hosts of synthetic packets: three IPv4, two IPv6 and one IPv4-mapped IPv6 address.
pub const HOSTS: [&str; 6] = [
    "10.0.0.1",
    "17.57.146.52",
    "192.0.2.7",
    "2001:db8::1",
    "2a01:111::5",
    "::ffff:17.57.146.52",
];

/// Ports of synthetic packets: services the flow table names (TLS, HTTP, DNS, Apple
/// push, FCM), two client ports and port 0.
pub const PORTS: [u16; 8] = [443, 80, 53, 5223, 5228, 49152, 49153, 0];

/// Packet time of the first record: 2023-11-14T22:13:20Z.
pub const START_NS: i64 = 1_700_000_000_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_plan_layout() {
        // flags=1, isn=0x01020304, count=2,
        // seg 0: start=0, len=5, shift=0, truncated=0
        // seg 1: start=5, len=0xffff, shift=-1, truncated=1
        // stream "abcdefgh"
        let mut data = vec![1, 4, 3, 2, 1, 2];
        data.extend_from_slice(&[0, 0, 5, 0, 0, 0, 0]);
        data.extend_from_slice(&[5, 0, 0xff, 0xff, 0xff, 0xff, 1]);
        data.extend_from_slice(b"abcdefgh");
        let p = SegmentPlan::read(&data);
        assert!(p.syn_seen);
        assert_eq!(p.isn, 0x01020304);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.stream, b"abcdefgh");
        assert_eq!(p.cut(&p.segments[0]), (0x01020305, &b"abcde"[..]));
        assert_eq!(p.cut(&p.segments[1]), (0x01020305 + 5 - 1, &b"fgh"[..]));
        assert!(p.segments[1].truncated);
    }

    #[test]
    fn synthetic_header_size() {
        let data = [0u8; 64];
        let mut u = Unstructured::new(&data);
        let _: Synthetic = u.arbitrary().unwrap();
        assert_eq!(64 - u.len(), SYNTHETIC_LEN);
        let mut u = Unstructured::new(&data);
        let _: RecordHead = u.arbitrary().unwrap();
        assert_eq!(64 - u.len(), 5);
        let mut u = Unstructured::new(&data);
        let _: TableLimits = u.arbitrary().unwrap();
        assert_eq!(64 - u.len(), 6);
    }
}
