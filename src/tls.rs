//! TLS ClientHello reassembly and server name (SNI) extraction.
//!
//! This module owns turning the first client-to-server bytes of a TCP flow into the
//! server name the client asked for: [`HelloAssembler`] places TCP segments (out of
//! order, retransmitted, overlapping, across sequence wrap-around) into a bounded
//! buffer, follows the TLS record layer (a ClientHello may span several records and
//! segments), and parses the hello with tls-parser when it is whole. When the capture
//! cut segments (snaplen) or lost them, a tolerant walk over the bytes we do have still
//! yields the SNI if the whole server_name extension is among them. The same parsing is
//! offered for a contiguous buffer ([`sni_from_client_bytes`]) and for a bare handshake
//! message such as QUIC CRYPTO data ([`parse_handshake_client_hello`]).
//!
//! It is a pure byte parser: it knows nothing of packets, flows or the catalog. It must
//! never panic, never buffer more than [`MAX_HELLO_BYTES`] per flow (nothing at all when
//! a hello arrives whole in its first segment), and it returns a state for every input;
//! oddities are reported as values ([`MalformedHello`], `partial`, `anomaly`), never as
//! panics or silence.

use crate::dns::HostName;
use serde::Serialize;
use std::fmt::Write as _;
use tls_parser::{
    parse_tls_extension_alpn_content, parse_tls_extension_sni_content,
    parse_tls_handshake_client_hello, TlsExtension,
};

/// Most client stream bytes buffered per flow while waiting for a ClientHello. A hello
/// that needs more is reported as [`HelloState::Overflow`].
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// Most disjoint byte ranges (holes between them) kept per flow; more is an overflow.
const MAX_RANGES: usize = 32;

/// Largest TLS record accepted (2^14 plaintext plus the 2048 bytes TLS allows for
/// expansion); anything larger is not a record we understand.
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

/// Without the SYN, how many more segments we wait for an earlier one when the first
/// segment seen does not start like TLS (counted again after each earlier one).
const UNANCHORED_PATIENCE: u8 = 3;

/// Without the SYN, how many times an earlier segment may move the stream start.
const MAX_REBASES: u8 = 8;

/// Tolerant walks tried per flow while segments still arrive (each copies at most
/// [`MAX_HELLO_BYTES`]); [`HelloAssembler::finish`] always tries one more.
const SALVAGE_BUDGET: u8 = 8;

/// Longest ALPN protocol name kept, in bytes.
const MAX_ALPN_BYTES: usize = 64;

/// Extension types.
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_ECH: u16 = 0xfe0d;
const EXT_ESNI_DRAFT: u16 = 0xffce;

/// What a ClientHello told us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientHelloInfo {
    /// The first `host_name` of the server_name extension, if any.
    pub sni: Option<HostName>,
    /// The hello was not seen whole (the capture cut it, segments were missing, or it
    /// exceeded the cap): the fields come from a tolerant walk over the bytes we have,
    /// and the SNI is reported only when the whole server_name extension is among them.
    /// Fields after the first missing byte (ALPN, ECH) may be absent.
    pub partial: bool,
    /// The first protocol the client offered in ALPN (`h2`, `http/1.1`, ...); printable
    /// ASCII as is, other bytes escaped as `\xNN`.
    pub alpn_first: Option<Box<str>>,
    /// An encrypted_client_hello (or draft ESNI) extension is present. Real ECH and the
    /// GREASE ECH that browsers send look alike; with real ECH the SNI is the provider's
    /// public name, not the destination.
    pub ech: bool,
    /// The legacy_version field (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// An inconsistency met after the fixed fields; parsing stopped there and the
    /// fields found before it are kept.
    pub anomaly: Option<MalformedHello>,
}

/// How a stream that starts like TLS fails to carry a ClientHello we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedHello {
    /// The first handshake message is not a ClientHello (its type, raw).
    NotClientHello(u8),
    /// A record of another content type (raw) came before the hello was complete.
    RecordType(u8),
    /// A handshake record of length 0 or longer than 2^14 + 2048 (raw length).
    RecordLength(u16),
    /// The fixed fields (version to compression methods) do not fit the message.
    Body,
    /// The extensions block or one extension runs past its bounds.
    Extensions,
    /// The server_name extension's content is malformed.
    ServerName,
}

/// Where a flow's ClientHello stands after a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloState {
    /// Keep feeding client-to-server segments.
    NeedMore,
    /// A ClientHello was read (whole, or partially: see [`ClientHelloInfo::partial`]).
    Done(ClientHelloInfo),
    /// The stream does not start with a TLS handshake record (this includes SSLv2-format
    /// hellos, which carry no SNI).
    NotTls,
    /// The stream starts like TLS but the hello cannot be read.
    Malformed(MalformedHello),
    /// The hello needs more than [`MAX_HELLO_BYTES`] of stream (or the segments left
    /// too many holes); what a tolerant walk over the buffered bytes found, if it found
    /// the server_name extension or walked all extensions.
    Overflow(Option<ClientHelloInfo>),
    /// The hello started but cannot be completed (segments cut by the snaplen or lost)
    /// and the bytes we have do not hold the server_name extension.
    Incomplete,
    /// A final state was already returned; nothing more will be reported.
    Closed,
}

/// Why a buffer holds no ClientHello ([`sni_from_client_bytes`],
/// [`parse_handshake_client_hello`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotHello {
    /// Does not start with a TLS handshake record.
    NotTls,
    /// Starts like a TLS handshake but cannot be read.
    Malformed(MalformedHello),
    /// The hello is larger than [`MAX_HELLO_BYTES`] and its first bytes hold no SNI.
    TooLarge,
}

// ---------------------------------------------------------------------------------------
// Bytes with holes
// ---------------------------------------------------------------------------------------

/// A byte buffer of which only some ranges are known (the others are zero filler).
#[derive(Clone, Copy)]
struct Sparse<'a> {
    bytes: &'a [u8],
    /// Sorted, disjoint `[start, end)` ranges; `None` when every byte is known.
    known: Option<&'a [(usize, usize)]>,
}

impl<'a> Sparse<'a> {
    fn whole(bytes: &'a [u8]) -> Self {
        Sparse { bytes, known: None }
    }

    /// `len` bytes at `off`, if they are all known.
    fn get(&self, off: usize, len: usize) -> Option<&'a [u8]> {
        let end = off.checked_add(len)?;
        let s = self.bytes.get(off..end)?;
        match self.known {
            None => Some(s),
            Some(_) if len == 0 => Some(s),
            Some(ranges) => ranges
                .iter()
                .any(|&(a, b)| a <= off && end <= b)
                .then_some(s),
        }
    }

    fn u8(&self, off: usize) -> Option<u8> {
        self.get(off, 1)?.first().copied()
    }

    fn u16(&self, off: usize) -> Option<u16> {
        let b = self.get(off, 2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn u24(&self, off: usize) -> Option<usize> {
        let b = self.get(off, 3)?;
        Some(
            usize::from(*b.first()?) << 16 | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?),
        )
    }

    /// Copies `[start, end)` (clipped to the buffer) onto `out`, and the known parts of
    /// it, shifted to their place in `out`, onto `ranges`.
    fn copy_out(
        &self,
        start: usize,
        end: usize,
        out: &mut Vec<u8>,
        ranges: &mut Vec<(usize, usize)>,
    ) {
        let end = end.min(self.bytes.len());
        let Some(src) = self.bytes.get(start..end) else {
            return;
        };
        let base = out.len();
        out.extend_from_slice(src);
        let mut add = |a: usize, b: usize| {
            let (a, b) = (a.max(start), b.min(end));
            if a >= b {
                return;
            }
            // Both ends are at or after `start` (clipped above): shift to `out`.
            let (a, b) = (
                a.saturating_sub(start).saturating_add(base),
                b.saturating_sub(start).saturating_add(base),
            );
            match ranges.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => ranges.push((a, b)),
            }
        };
        match self.known {
            None => add(start, end),
            Some(known) => {
                for &(a, b) in known {
                    add(a, b);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Record layer
// ---------------------------------------------------------------------------------------

/// Why the record layer gives no hello.
enum FrameStop {
    /// Not enough known bytes to say anything yet.
    Undecided,
    NotTls,
    Malformed(MalformedHello),
}

/// The record layer of a client stream, walked without copying.
struct Frame {
    /// Length of the ClientHello handshake message, header included.
    declared: usize,
    /// Every byte of the message is present and known.
    complete: bool,
    /// The message lies wholly inside the first record (it starts at stream offset 5).
    single_record: bool,
    /// Stream offset just past the hello's last byte, or a lower bound when record
    /// headers are missing.
    end_estimate: usize,
    /// The hello cannot end within [`MAX_HELLO_BYTES`] of stream.
    too_large: bool,
}

/// Whether the stream's first bytes look like a TLS handshake record.
fn starts_like_tls(stream: Sparse<'_>) -> Result<(), FrameStop> {
    match stream.u8(0) {
        None => return Err(FrameStop::Undecided),
        Some(0x16) => {}
        Some(_) => return Err(FrameStop::NotTls),
    }
    match stream.u8(1) {
        None => return Err(FrameStop::Undecided),
        Some(3) => {}
        Some(_) => return Err(FrameStop::NotTls),
    }
    match stream.u8(2) {
        None => Err(FrameStop::Undecided),
        Some(0..=4) => Ok(()),
        Some(_) => Err(FrameStop::NotTls),
    }
}

/// Whether a segment could be the start of a client's TLS stream: handshake record,
/// version 3.x, ClientHello (as far as the segment goes). Used without the SYN, so that
/// a segment from the middle of a hello is not taken for its start.
fn looks_like_hello_start(payload: &[u8]) -> bool {
    let ok = |i: usize, f: fn(u8) -> bool| payload.get(i).is_none_or(|&b| f(b));
    !payload.is_empty()
        && ok(0, |b| b == 0x16)
        && ok(1, |b| b == 0x03)
        && ok(2, |b| b <= 0x04)
        && ok(5, |b| b == 0x01)
}

/// Walks record headers from the stream start, gathering the handshake header (which
/// may itself straddle records) to learn the hello's length.
fn frame(stream: Sparse<'_>) -> Result<Frame, FrameStop> {
    starts_like_tls(stream)?;
    let mut pos = 0usize; // stream offset of the next record header
    let mut msg_len = 0usize; // message bytes in the records before `pos`
    let mut hs = [0u8; 4];
    let mut hs_n = 0usize;
    let mut declared: Option<usize> = None;
    let mut complete = true;
    let mut single_record = false;
    let mut too_large = false;
    loop {
        if let Some(d) = declared {
            if msg_len >= d {
                return Ok(Frame {
                    declared: d,
                    complete,
                    single_record,
                    end_estimate: pos,
                    too_large,
                });
            }
        }
        let Some(h) = stream.get(pos, 5) else { break };
        let (ctype, rlen) = match *h {
            [t, _, _, hi, lo] => (t, usize::from(u16::from_be_bytes([hi, lo]))),
            _ => break,
        };
        if ctype != 0x16 {
            return Err(FrameStop::Malformed(MalformedHello::RecordType(ctype)));
        }
        if rlen == 0 || rlen > MAX_RECORD_LEN {
            return Err(FrameStop::Malformed(MalformedHello::RecordLength(
                rlen as u16,
            )));
        }
        // Positions and message byte counts stay below the stream's length plus one
        // record, and `payload` exceeds `msg_len`: these saturating ops are exact.
        let payload = pos.saturating_add(5);
        // Message bytes up to this record's end.
        let rec_end = msg_len.saturating_add(rlen);
        // Handshake header bytes that fall in this record.
        while hs_n < rec_end {
            let Some(slot) = hs.get_mut(hs_n) else { break }; // all four gathered
            match stream.u8(payload.saturating_add(hs_n).saturating_sub(msg_len)) {
                Some(b) => {
                    *slot = b;
                    hs_n = hs_n.saturating_add(1);
                }
                None => break,
            }
        }
        if declared.is_none() && hs_n == 4 {
            let [t, a, b, c] = hs;
            if t != 1 {
                return Err(FrameStop::Malformed(MalformedHello::NotClientHello(t)));
            }
            let d = (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)).saturating_add(4);
            declared = Some(d);
            single_record = pos == 0 && d <= rlen;
        }
        if hs_n < 4 && rec_end >= 4 {
            break; // a header byte is unknown: the length cannot be learned yet
        }
        if let Some(d) = declared {
            let take = rlen.min(d.saturating_sub(msg_len));
            if stream.get(payload, take).is_none() {
                complete = false;
            }
        }
        msg_len = rec_end;
        pos = payload.saturating_add(rlen);
        if let Some(d) = declared {
            // Where the hello ends at the earliest (one more record header if needed).
            let remaining = d.saturating_sub(msg_len);
            let min_end = if remaining > 0 {
                pos.saturating_add(5).saturating_add(remaining)
            } else {
                pos
            };
            if min_end > MAX_HELLO_BYTES {
                too_large = true;
            }
        }
    }
    match declared {
        None => Err(FrameStop::Undecided),
        Some(d) => {
            let remaining = d.saturating_sub(msg_len);
            Ok(Frame {
                declared: d,
                complete: false,
                single_record,
                end_estimate: pos.saturating_add(5).saturating_add(remaining),
                too_large,
            })
        }
    }
}

/// Copies the first `want` bytes of the handshake message out of its records,
/// recording which of them are known.
fn gather_message(
    stream: Sparse<'_>,
    want: usize,
    out: &mut Vec<u8>,
    ranges: &mut Vec<(usize, usize)>,
) {
    out.clear();
    ranges.clear();
    let mut pos = 0usize;
    while out.len() < want {
        let Some(h) = stream.get(pos, 5) else { break };
        let rlen = match *h {
            [0x16, _, _, hi, lo] => usize::from(u16::from_be_bytes([hi, lo])),
            _ => break,
        };
        if rlen == 0 {
            break;
        }
        // `pos` lies inside the stream (its header was read) and `out` is shorter than
        // `want`, so these never saturate.
        let payload = pos.saturating_add(5);
        let take = rlen.min(want.saturating_sub(out.len()));
        let before = out.len();
        stream.copy_out(payload, payload.saturating_add(take), out, ranges);
        if out.len().saturating_sub(before) < take {
            break; // the record runs past the buffered bytes
        }
        pos = payload.saturating_add(rlen);
    }
}

// ---------------------------------------------------------------------------------------
// ClientHello contents
// ---------------------------------------------------------------------------------------

/// Why a walk over the hello stopped early.
enum Stop {
    /// A byte we need is missing.
    Blocked,
    Bad(MalformedHello),
}

#[derive(Default)]
struct Found {
    sni: Option<HostName>,
    sni_seen: bool,
    alpn_first: Option<Box<str>>,
    ech: bool,
}

impl Found {
    fn into_info(
        self,
        partial: bool,
        legacy_version: u16,
        anomaly: Option<MalformedHello>,
    ) -> ClientHelloInfo {
        ClientHelloInfo {
            sni: self.sni,
            partial,
            alpn_first: self.alpn_first,
            ech: self.ech,
            legacy_version,
            anomaly,
        }
    }
}

/// Walks the extensions in `msg[start..end)`: `Ok` when the list was walked to its end.
fn scan_extensions(
    msg: Sparse<'_>,
    start: usize,
    end: usize,
    found: &mut Found,
) -> Result<(), Stop> {
    let mut pos = start;
    // The end of `len` bytes at `at`, if they lie within the extensions block.
    let within = |at: usize, len: usize| {
        at.checked_add(len)
            .filter(|&e| e <= end)
            .ok_or(Stop::Bad(MalformedHello::Extensions))
    };
    while pos < end {
        let data = within(pos, 4)?;
        let etype = msg.u16(pos).ok_or(Stop::Blocked)?;
        let elen = usize::from(msg.u16(pos.saturating_add(2)).ok_or(Stop::Blocked)?);
        let next = within(data, elen)?;
        match etype {
            EXT_SERVER_NAME if !found.sni_seen => {
                let content = msg.get(data, elen).ok_or(Stop::Blocked)?;
                found.sni = server_name(content)?;
                found.sni_seen = true;
            }
            EXT_ALPN if found.alpn_first.is_none() => {
                if let Some(content) = msg.get(data, elen) {
                    found.alpn_first = first_alpn(content);
                }
            }
            EXT_ECH | EXT_ESNI_DRAFT => found.ech = true,
            _ => {}
        }
        pos = next;
    }
    Ok(())
}

/// The first `host_name` entry of a server_name extension's content.
fn server_name(content: &[u8]) -> Result<Option<HostName>, Stop> {
    match parse_tls_extension_sni_content(content) {
        Ok((_, TlsExtension::SNI(list))) => Ok(list
            .iter()
            .find(|(t, _)| t.0 == 0)
            .and_then(|(_, name)| HostName::from_wire(name))),
        _ => Err(Stop::Bad(MalformedHello::ServerName)),
    }
}

/// The first protocol of an ALPN extension's content, printable or escaped.
fn first_alpn(content: &[u8]) -> Option<Box<str>> {
    let Ok((_, TlsExtension::ALPN(list))) = parse_tls_extension_alpn_content(content) else {
        return None;
    };
    let proto = list.first()?;
    let proto = proto.get(..MAX_ALPN_BYTES).unwrap_or(proto);
    let mut s = String::with_capacity(proto.len());
    for &b in proto {
        if (0x21..=0x7e).contains(&b) && b != b'\\' {
            s.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    Some(s.into_boxed_str())
}

/// Parses a whole ClientHello handshake message (header included, exactly its
/// declared length) with tls-parser.
fn parse_complete(msg: &[u8]) -> Result<ClientHelloInfo, MalformedHello> {
    let body = msg.get(4..).unwrap_or(&[]);
    let (rest, hello) = parse_tls_handshake_client_hello(body).map_err(|_| MalformedHello::Body)?;
    let mut found = Found::default();
    let mut anomaly = None;
    let walked = match hello.ext {
        Some(ext) => scan_extensions(Sparse::whole(ext), 0, ext.len(), &mut found),
        None if rest.is_empty() => Ok(()),
        None => {
            // The extensions length runs past the message: walk what is there.
            anomaly = Some(MalformedHello::Extensions);
            let ext = rest.get(2..).unwrap_or(&[]);
            scan_extensions(Sparse::whole(ext), 0, ext.len(), &mut found)
        }
    };
    if let Err(Stop::Bad(m)) = walked {
        anomaly = anomaly.or(Some(m));
    }
    Ok(found.into_info(false, hello.version.0, anomaly))
}

/// The fixed fields of a ClientHello message that may have holes: returns the
/// legacy_version and the extensions region, if the message has one.
fn walk_fixed(msg: Sparse<'_>, declared: usize) -> Result<(u16, Option<(usize, usize)>), Stop> {
    // The end of `len` bytes at `pos`, if they fit the message. A vector's contents
    // running past it are caught here too, before the next field is read, as the next
    // field's check would.
    let past = |pos: usize, len: usize| -> Result<usize, Stop> {
        pos.checked_add(len)
            .filter(|&e| e <= declared)
            .ok_or(Stop::Bad(MalformedHello::Body))
    };
    past(4, 2)?;
    let version = msg.u16(4).ok_or(Stop::Blocked)?;
    let pos = 4 + 2 + 32; // handshake header, legacy_version, random
    let after = past(pos, 1)?;
    let sid = usize::from(msg.u8(pos).ok_or(Stop::Blocked)?);
    if sid > 32 {
        return Err(Stop::Bad(MalformedHello::Body));
    }
    let pos = past(after, sid)?;
    let after = past(pos, 2)?;
    let suites = usize::from(msg.u16(pos).ok_or(Stop::Blocked)?);
    if suites % 2 == 1 {
        return Err(Stop::Bad(MalformedHello::Body));
    }
    let pos = past(after, suites)?;
    let after = past(pos, 1)?;
    let comp = usize::from(msg.u8(pos).ok_or(Stop::Blocked)?);
    let pos = past(after, comp)?;
    if pos == declared {
        return Ok((version, None));
    }
    let ext_start = past(pos, 2)?;
    let ext_len = usize::from(msg.u16(pos).ok_or(Stop::Blocked)?);
    // The block may run past the message (the caller reports that): no bound here.
    Ok((
        version,
        Some((ext_start, ext_start.saturating_add(ext_len))),
    ))
}

/// What a tolerant walk over an incomplete hello found.
enum Salvage {
    /// The server_name extension was read, or every extension was walked.
    Found(ClientHelloInfo),
    /// A byte needed to reach the server_name extension is missing.
    Blocked,
    Malformed(MalformedHello),
}

/// Tolerant walk over a ClientHello message with holes (header included).
fn salvage_message(msg: Sparse<'_>, declared: usize) -> Salvage {
    let (version, ext) = match walk_fixed(msg, declared) {
        Ok(v) => v,
        Err(Stop::Blocked) => return Salvage::Blocked,
        Err(Stop::Bad(m)) => return Salvage::Malformed(m),
    };
    let mut found = Found::default();
    let mut anomaly = None;
    let walked = match ext {
        None => Ok(()),
        Some((start, end)) => {
            let end = if end > declared {
                anomaly = Some(MalformedHello::Extensions);
                declared
            } else {
                end
            };
            scan_extensions(msg, start, end, &mut found)
        }
    };
    match walked {
        Ok(()) => Salvage::Found(found.into_info(true, version, anomaly)),
        Err(Stop::Bad(m)) => Salvage::Found(found.into_info(true, version, anomaly.or(Some(m)))),
        Err(Stop::Blocked) if found.sni_seen => {
            Salvage::Found(found.into_info(true, version, anomaly))
        }
        Err(Stop::Blocked) => Salvage::Blocked,
    }
}

/// Tolerant walk over a client stream with holes.
fn salvage_stream(stream: Sparse<'_>, declared: usize) -> Salvage {
    let mut msg = Vec::new();
    let mut ranges = Vec::new();
    gather_message(stream, declared.min(MAX_HELLO_BYTES), &mut msg, &mut ranges);
    let view = Sparse {
        bytes: &msg,
        known: Some(&ranges),
    };
    salvage_message(view, declared)
}

/// Parses the hello of a stream whose frame says it is complete.
fn parse_framed(stream: Sparse<'_>, f: &Frame) -> Result<ClientHelloInfo, MalformedHello> {
    if f.single_record {
        if let Some(msg) = stream.get(5, f.declared) {
            return parse_complete(msg);
        }
    }
    // Complete: every byte is in `stream`, so this copies at most its length.
    let mut msg = Vec::with_capacity(f.declared.min(stream.bytes.len()));
    let mut ranges = Vec::new();
    gather_message(stream, f.declared, &mut msg, &mut ranges);
    parse_complete(&msg)
}

/// The ClientHello at the start of a contiguous client byte stream (TLS record layer
/// included), possibly cut short.
///
/// `Ok(Some(info))` when the hello is whole (`partial == false`) or when the bytes hold
/// its whole server_name extension (`partial == true`); `Ok(None)` when more bytes are
/// needed; `Err` when the bytes are not a ClientHello we can read.
pub fn sni_from_client_bytes(data: &[u8]) -> Result<Option<ClientHelloInfo>, NotHello> {
    let stream = Sparse::whole(data);
    let f = match frame(stream) {
        Ok(f) => f,
        Err(FrameStop::Undecided) => return Ok(None),
        Err(FrameStop::NotTls) => return Err(NotHello::NotTls),
        Err(FrameStop::Malformed(m)) => return Err(NotHello::Malformed(m)),
    };
    if f.complete {
        return parse_framed(stream, &f)
            .map(Some)
            .map_err(NotHello::Malformed);
    }
    match salvage_stream(stream, f.declared) {
        Salvage::Found(info) => Ok(Some(info)),
        Salvage::Malformed(m) => Err(NotHello::Malformed(m)),
        Salvage::Blocked if f.too_large => Err(NotHello::TooLarge),
        Salvage::Blocked => Ok(None),
    }
}

/// The ClientHello in a bare handshake message (type, 24-bit length, body: no record
/// layer), as QUIC carries it in CRYPTO frames; `msg` is the contiguous data from
/// offset 0 and may be cut short. Same answers as [`sni_from_client_bytes`].
pub fn parse_handshake_client_hello(msg: &[u8]) -> Result<Option<ClientHelloInfo>, NotHello> {
    let view = Sparse::whole(msg);
    match view.u8(0) {
        None => return Ok(None),
        Some(1) => {}
        Some(t) => return Err(NotHello::Malformed(MalformedHello::NotClientHello(t))),
    }
    let Some(len) = view.u24(1) else {
        return Ok(None);
    };
    let declared = len.saturating_add(4); // a 24-bit length: never saturates
    if let Some(whole) = msg.get(..declared) {
        return parse_complete(whole).map(Some).map_err(NotHello::Malformed);
    }
    match salvage_message(view, declared) {
        Salvage::Found(info) => Ok(Some(info)),
        Salvage::Malformed(m) => Err(NotHello::Malformed(m)),
        Salvage::Blocked => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// TCP reassembly
// ---------------------------------------------------------------------------------------

/// Per-flow assembler of the client-to-server byte stream up to the end of the
/// ClientHello. Idle or fed a hello in one segment it holds no buffer; otherwise it
/// buffers at most [`MAX_HELLO_BYTES`].
#[derive(Debug)]
pub struct HelloAssembler {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// `base` is trusted: it came from the SYN, or the bytes there start like TLS.
    anchored: bool,
    /// A final state was returned.
    closed: bool,
    buf: Option<Box<Reassembly>>,
}

#[derive(Debug, Default)]
struct Reassembly {
    /// Stream bytes from offset 0; bytes outside `have` are zero filler.
    data: Vec<u8>,
    /// Known ranges of `data`: sorted, disjoint, not touching.
    have: Vec<(usize, usize)>,
    /// A segment was cut by the capture's snaplen.
    cut: bool,
    /// Highest stream offset at which a segment started.
    furthest_start: usize,
    /// A segment reached past [`MAX_HELLO_BYTES`].
    past_cap: bool,
    /// More than [`MAX_RANGES`] holes would have been needed.
    too_many_holes: bool,
    /// Length of the contiguous prefix at the last completeness check.
    checked_prefix: usize,
    unanchored_pushes: u8,
    rebases: u8,
    salvage_left: u8,
}

impl Reassembly {
    fn new() -> Box<Self> {
        Box::new(Reassembly {
            salvage_left: SALVAGE_BUDGET,
            ..Reassembly::default()
        })
    }

    fn view(&self) -> Sparse<'_> {
        Sparse {
            bytes: &self.data,
            known: Some(&self.have),
        }
    }

    fn prefix(&self) -> usize {
        match self.have.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }

    /// Places `payload` at stream offset `off`; returns whether it brought new bytes.
    /// Overlaps are overwritten (a retransmission carries the same bytes).
    fn insert(&mut self, off: usize, payload: &[u8]) -> bool {
        self.furthest_start = self.furthest_start.max(off);
        let end = off.saturating_add(payload.len());
        if end > MAX_HELLO_BYTES {
            self.past_cap = true;
        }
        let end = end.min(MAX_HELLO_BYTES);
        let Some(src) = end
            .checked_sub(off)
            .filter(|&n| n > 0)
            .and_then(|n| payload.get(..n))
        else {
            return false;
        };
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        if let Some(dst) = self.data.get_mut(off..end) {
            dst.copy_from_slice(src);
        }
        let covered = self.have.iter().any(|&(a, b)| a <= off && end <= b);
        if covered {
            return false;
        }
        self.have.push((off, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(a, b) in &self.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if merged.len() > MAX_RANGES {
            self.too_many_holes = true;
        }
        self.have = merged;
        true
    }

    /// Moves everything `shift` bytes later (an earlier segment showed where the
    /// stream really starts), dropping what falls past the cap.
    fn shift(&mut self, shift: usize) {
        let mut data = vec![0u8; shift.min(MAX_HELLO_BYTES)];
        data.extend_from_slice(&self.data);
        data.truncate(MAX_HELLO_BYTES);
        self.data = data;
        self.have = self
            .have
            .iter()
            .filter_map(|&(a, b)| {
                // Offsets and `shift` are at most MAX_HELLO_BYTES: never saturates.
                let (a, b) = (
                    a.saturating_add(shift),
                    b.saturating_add(shift).min(MAX_HELLO_BYTES),
                );
                (a < b).then_some((a, b))
            })
            .collect();
        self.furthest_start = self.furthest_start.saturating_add(shift);
        self.checked_prefix = 0;
    }
}

impl HelloAssembler {
    /// `isn`: the client's SYN sequence number if the SYN was seen (data starts at
    /// `isn + 1`), else `None`: then the first data segment defines the start, and a
    /// later segment with a lower sequence number (within [`MAX_HELLO_BYTES`]) still
    /// takes its place as long as the first one did not start like TLS.
    pub fn new(isn: Option<u32>) -> Self {
        HelloAssembler {
            base: isn.map(|s| s.wrapping_add(1)),
            anchored: isn.is_some(),
            closed: false,
            buf: None,
        }
    }

    /// Feeds one client-to-server segment: its TCP sequence number (for a SYN carrying
    /// data, as with TCP Fast Open, pass `seq + 1`), its payload as captured, and
    /// whether the capture cut the payload short (snaplen). Empty segments that were
    /// not cut are ignored. Once a state other than `NeedMore` is returned, further
    /// calls return [`HelloState::Closed`].
    pub fn push(&mut self, seq: u32, payload: &[u8], truncated: bool) -> HelloState {
        if self.closed {
            return HelloState::Closed;
        }
        if payload.is_empty() && !truncated {
            return HelloState::NeedMore;
        }
        let state = self.place(seq, payload, truncated);
        if state != HelloState::NeedMore {
            self.closed = true;
            self.buf = None;
        }
        state
    }

    /// Bytes of reassembly buffer this assembler holds (0 when the hello came in one
    /// segment): what a flow table counts against its reassembly budget.
    pub fn buffered(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.data.capacity())
    }

    /// The final word at the end of the flow (or when the caller gives up): a tolerant
    /// walk over whatever was buffered. `NeedMore` here means no client data was seen.
    pub fn finish(&mut self) -> HelloState {
        if self.closed {
            return HelloState::Closed;
        }
        self.closed = true;
        let Some(buf) = self.buf.take() else {
            return HelloState::NeedMore;
        };
        if !self.anchored {
            return HelloState::NotTls;
        }
        let view = buf.view();
        match frame(view) {
            Err(FrameStop::NotTls) => HelloState::NotTls,
            Err(FrameStop::Malformed(m)) => HelloState::Malformed(m),
            Err(FrameStop::Undecided) => HelloState::Incomplete,
            Ok(f) => match salvage_stream(view, f.declared) {
                Salvage::Found(info) if f.too_large => HelloState::Overflow(Some(info)),
                Salvage::Found(info) => HelloState::Done(info),
                Salvage::Malformed(m) => HelloState::Malformed(m),
                Salvage::Blocked if f.too_large => HelloState::Overflow(None),
                Salvage::Blocked => HelloState::Incomplete,
            },
        }
    }

    /// Whether the assembler currently holds a buffer (for memory accounting).
    pub fn is_buffering(&self) -> bool {
        self.buf.is_some()
    }

    fn place(&mut self, seq: u32, payload: &[u8], truncated: bool) -> HelloState {
        let first = self.base.is_none();
        if first && payload.is_empty() {
            return HelloState::NeedMore; // a start cannot be anchored on no bytes
        }
        let base = *self.base.get_or_insert(seq);
        if first {
            // No SYN: the first data segment defines the start, if it looks like TLS.
            self.anchored = looks_like_hello_start(payload);
        }
        let rel = seq.wrapping_sub(base) as i32;
        let (off, payload) = if rel >= 0 {
            (rel as usize, payload)
        } else {
            let back = rel.unsigned_abs() as usize;
            let rebase_ok = self.buf.as_ref().is_some_and(|b| b.rebases < MAX_REBASES);
            if !self.anchored && back <= MAX_HELLO_BYTES && rebase_ok {
                // An earlier segment: the stream starts here, not where we thought.
                self.base = Some(seq);
                if let Some(buf) = self.buf.as_mut() {
                    buf.shift(back);
                    buf.rebases = buf.rebases.saturating_add(1);
                    buf.unanchored_pushes = 0;
                }
                self.anchored = looks_like_hello_start(payload);
                (0, payload)
            } else {
                match payload.get(back..) {
                    Some(rest) if !rest.is_empty() => (0, rest),
                    _ => return HelloState::NeedMore, // wholly before the start
                }
            }
        };

        // Fast path: a whole hello in the first segment needs no buffer.
        if self.buf.is_none() && off == 0 && !truncated && self.anchored {
            let stream = Sparse::whole(payload);
            match frame(stream) {
                Err(FrameStop::NotTls) => return HelloState::NotTls,
                Err(FrameStop::Malformed(m)) => return HelloState::Malformed(m),
                Ok(f) if f.complete => {
                    return match parse_framed(stream, &f) {
                        Ok(info) => HelloState::Done(info),
                        Err(m) => HelloState::Malformed(m),
                    };
                }
                Ok(f) if f.too_large => {
                    return match salvage_stream(stream, f.declared) {
                        Salvage::Found(info) => HelloState::Overflow(Some(info)),
                        Salvage::Malformed(m) => HelloState::Malformed(m),
                        Salvage::Blocked => HelloState::Overflow(None),
                    };
                }
                _ => {}
            }
        }

        let buf = self.buf.get_or_insert_with(Reassembly::new);
        buf.cut |= truncated;
        let added = buf.insert(off, payload);
        if !self.anchored {
            buf.unanchored_pushes = buf.unanchored_pushes.saturating_add(1);
            return if buf.unanchored_pushes > UNANCHORED_PATIENCE {
                HelloState::NotTls
            } else {
                HelloState::NeedMore
            };
        }
        Self::evaluate(buf, added)
    }

    /// Decides what the buffered bytes amount to after a segment was placed.
    fn evaluate(buf: &mut Reassembly, added: bool) -> HelloState {
        let prefix = buf.prefix();
        if prefix > buf.checked_prefix {
            buf.checked_prefix = prefix;
            let stream = Sparse::whole(buf.data.get(..prefix).unwrap_or(&[]));
            match frame(stream) {
                Err(FrameStop::NotTls) => return HelloState::NotTls,
                Err(FrameStop::Malformed(m)) => return HelloState::Malformed(m),
                Err(FrameStop::Undecided) => {}
                Ok(f) if f.complete => {
                    return match parse_framed(stream, &f) {
                        Ok(info) => HelloState::Done(info),
                        Err(m) => HelloState::Malformed(m),
                    };
                }
                Ok(_) => {}
            }
        }

        let f = match frame(buf.view()) {
            Ok(f) => f,
            // The start is still missing (or was judged above).
            Err(_) if buf.too_many_holes => return HelloState::Overflow(None),
            Err(_) => return HelloState::NeedMore,
        };
        let overflow = f.too_large || buf.too_many_holes;
        // The client has sent beyond the hello: the server got it whole, so a hole in our
        // copy is the capture's (snaplen or loss), unless a retransmission is still to
        // come (TLS 1.3 early data follows the hello without waiting).
        let sent_past = buf.furthest_start >= f.end_estimate || buf.past_cap;
        let try_now = overflow || ((buf.cut || sent_past) && added && buf.salvage_left > 0);
        if !try_now {
            return HelloState::NeedMore;
        }
        buf.salvage_left = buf.salvage_left.saturating_sub(1);
        match salvage_stream(buf.view(), f.declared) {
            Salvage::Found(info) if overflow => HelloState::Overflow(Some(info)),
            Salvage::Found(info) => HelloState::Done(info),
            Salvage::Malformed(m) => HelloState::Malformed(m),
            Salvage::Blocked if overflow => HelloState::Overflow(None),
            // The capture cut what we need and the client has moved on.
            Salvage::Blocked if buf.cut && sent_past => HelloState::Incomplete,
            Salvage::Blocked => HelloState::NeedMore,
        }
    }
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

    /// A real ClientHello: `openssl s_client -connect 127.0.0.1:14433 -servername
    /// courier.push.apple.com -alpn h2,http/1.1` (OpenSSL 3, loopback, tcpdump), 346
    /// bytes, one TLS record in one TCP segment.
    const OPENSSL_HELLO: &[u8] = include!("../tests/data/openssl_client_hello.rs");

    /// Where the server_name extension of [`OPENSSL_HELLO`] ends in the stream.
    const OPENSSL_SNI_END: usize = 175;

    /// A ClientHello handshake message (header included) with the given extensions.
    fn hello_msg(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![
            0x03, 0x03, // legacy_version
        ];
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0x00); // session id length 0
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // cipher suites: TLS_AES_128_GCM_SHA256
        body.extend_from_slice(&[0x01, 0x00]); // compression: null
        let mut ext = Vec::new();
        for (t, data) in exts {
            ext.extend_from_slice(&t.to_be_bytes()); // extension type
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes()); // extension length
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes()); // extensions length
        body.extend_from_slice(&ext);
        let len = body.len() as u32;
        let mut msg = vec![0x01]; // ClientHello
        msg.extend_from_slice(&len.to_be_bytes()[1..]); // 24-bit length
        msg.extend_from_slice(&body);
        msg
    }

    /// server_name extension content: list length, host_name (0), name length, name.
    fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut v = ((name.len() + 3) as u16).to_be_bytes().to_vec(); // list length
        v.push(0x00); // host_name
        v.extend_from_slice(&(name.len() as u16).to_be_bytes()); // name length
        v.extend_from_slice(name);
        (EXT_SERVER_NAME, v)
    }

    /// Wraps a handshake message in handshake records of at most the given sizes (the
    /// last size repeats).
    fn records(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = msg;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i.min(sizes.len() - 1)].min(rest.len());
            out.extend_from_slice(&[0x16, 0x03, 0x01]); // handshake, TLS 1.0
            out.extend_from_slice(&(n as u16).to_be_bytes()); // record length
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        out
    }

    fn done(state: HelloState) -> ClientHelloInfo {
        match state {
            HelloState::Done(info) => info,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn sni_of(info: &ClientHelloInfo) -> Option<&str> {
        info.sni.as_ref().map(|s| s.as_str())
    }

    const ISN: u32 = 1_000_000;

    #[test]
    fn single_segment_hello_needs_no_buffer() {
        let mut a = HelloAssembler::new(Some(ISN));
        let info = done(a.push(ISN + 1, OPENSSL_HELLO, false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(!info.partial);
        assert_eq!(info.alpn_first.as_deref(), Some("h2"));
        assert!(!info.ech);
        assert_eq!(info.legacy_version, 0x0303);
        assert_eq!(info.anomaly, None);
        assert!(!a.is_buffering());
        assert_eq!(
            a.push(ISN + 347, b"\x14\x03\x03\x00\x01\x01", false),
            HelloState::Closed
        );
        assert!(std::mem::size_of::<HelloAssembler>() <= 24);
    }

    #[test]
    fn three_segments_delivered_1_3_2() {
        let h = OPENSSL_HELLO;
        let (s1, s2, s3) = (&h[..100], &h[100..200], &h[200..]);
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, s1, false), HelloState::NeedMore);
        assert_eq!(a.push(ISN + 201, s3, false), HelloState::NeedMore);
        let info = done(a.push(ISN + 101, s2, false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(!info.partial);
        assert!(!a.is_buffering());
    }

    #[test]
    fn retransmitted_and_overlapping_segments() {
        let h = OPENSSL_HELLO;
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &h[..120], false), HelloState::NeedMore);
        assert_eq!(a.push(ISN + 1, &h[..120], false), HelloState::NeedMore); // retransmission
        assert_eq!(a.push(ISN + 61, &h[60..150], false), HelloState::NeedMore); // overlap
        let info = done(a.push(ISN + 101, &h[100..], false)); // overlaps and completes
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
    }

    #[test]
    fn hello_across_two_records_split_inside_the_name() {
        let msg = hello_msg(&[
            sni(b"mdmenrollment.apple.com"),
            (EXT_ALPN, vec![0, 3, 2, b'h', b'2']),
        ]);
        // First record ends in the middle of the host name (message offset 60).
        let stream = records(&msg, &[60, 1000]);
        assert_eq!(stream[65..68], [0x16, 0x03, 0x01]); // second record header
        let mut a = HelloAssembler::new(Some(ISN));
        let info = done(a.push(ISN + 1, &stream, false));
        assert_eq!(sni_of(&info), Some("mdmenrollment.apple.com"));
        assert_eq!(info.alpn_first.as_deref(), Some("h2"));
        assert!(!info.partial);
        // Same bytes in two segments cut across the record boundary.
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &stream[..67], false), HelloState::NeedMore);
        let info = done(a.push(ISN + 68, &stream[67..], false));
        assert_eq!(sni_of(&info), Some("mdmenrollment.apple.com"));
        // Handshake header itself split over 1-byte records.
        let stream = records(&msg, &[1, 1, 1, 1, 500]);
        assert_eq!(
            sni_from_client_bytes(&stream)
                .unwrap()
                .unwrap()
                .sni
                .unwrap()
                .as_str(),
            "mdmenrollment.apple.com"
        );
    }

    #[test]
    fn snaplen_cut_with_sni_inside() {
        // 200 bytes captured of a 346-byte segment: the server_name extension (ends at
        // 175) is inside, what follows is not.
        let mut a = HelloAssembler::new(Some(ISN));
        let info = done(a.push(ISN + 1, &OPENSSL_HELLO[..200], true));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(info.partial);
        assert_eq!(info.alpn_first, None); // ALPN lies past the cut
        assert_eq!(info.anomaly, None);
        // Cut exactly at the end of the extension still works; one byte less does not.
        let mut a = HelloAssembler::new(Some(ISN));
        assert!(matches!(
            a.push(ISN + 1, &OPENSSL_HELLO[..OPENSSL_SNI_END], true),
            HelloState::Done(_)
        ));
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, &OPENSSL_HELLO[..OPENSSL_SNI_END - 1], true),
            HelloState::NeedMore
        );
    }

    #[test]
    fn snaplen_cut_before_sni() {
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, &OPENSSL_HELLO[..96], true),
            HelloState::NeedMore
        );
        assert!(a.is_buffering());
        // The client's next segment (a ChangeCipherSpec after the 346-byte hello) shows
        // the hello was sent whole: what is missing will not come.
        assert_eq!(
            a.push(ISN + 347, b"\x14\x03\x03\x00\x01\x01", false),
            HelloState::Incomplete
        );
        assert!(!a.is_buffering());
        // Without a later segment, finish says the same.
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, &OPENSSL_HELLO[..96], true),
            HelloState::NeedMore
        );
        assert_eq!(a.finish(), HelloState::Incomplete);
        assert_eq!(a.finish(), HelloState::Closed);
    }

    #[test]
    fn lost_segment_is_salvaged_at_finish() {
        // The middle segment never arrives (capture loss, no snaplen cut).
        let h = OPENSSL_HELLO;
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &h[..180], false), HelloState::NeedMore);
        assert_eq!(a.push(ISN + 301, &h[300..], false), HelloState::NeedMore);
        let info = done(a.finish());
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(info.partial);
        // Once the client sends past the hello (its ChangeCipherSpec at 346), the hole
        // is the capture's: the walk runs without waiting for the end of the flow.
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &h[..180], false), HelloState::NeedMore);
        assert_eq!(a.push(ISN + 301, &h[300..], false), HelloState::NeedMore);
        let info = done(a.push(ISN + 347, b"\x14\x03\x03\x00\x01\x01", false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(info.partial);
        // Lost before the SNI and not cut: wait (a retransmission may come) until the
        // end of the flow.
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &h[..100], false), HelloState::NeedMore);
        assert_eq!(
            a.push(ISN + 347, b"\x14\x03\x03\x00\x01\x01", false),
            HelloState::NeedMore
        );
        assert_eq!(a.finish(), HelloState::Incomplete);
    }

    #[test]
    fn sni_late_behind_a_hole_in_an_earlier_extension() {
        // A 600-byte padding extension, then ECH, then server_name. The capture cut the
        // first segment inside the padding; the second segment holds the rest.
        let msg = hello_msg(&[
            (21, vec![0; 600]),
            (EXT_ECH, vec![0; 8]),
            sni(b"gdmf.apple.com"),
        ]);
        let stream = records(&msg, &[16384]);
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &stream[..300], true), HelloState::NeedMore);
        let info = done(a.push(ISN + 1 + 500, &stream[500..], false));
        assert_eq!(sni_of(&info), Some("gdmf.apple.com"));
        assert!(info.partial);
        assert!(info.ech);
    }

    #[test]
    fn garbage_and_other_protocols_are_not_tls() {
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            HelloState::NotTls
        );
        assert!(!a.is_buffering());
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, &[0x16, 0x02, 0x00, 0x00], false),
            HelloState::NotTls
        );
        // Without the SYN we wait a little for an earlier segment, then give up.
        let mut a = HelloAssembler::new(None);
        for i in 0..UNANCHORED_PATIENCE as u32 {
            assert_eq!(
                a.push(5000 + i * 10, b"0123456789", false),
                HelloState::NeedMore
            );
        }
        assert_eq!(a.push(5100, b"xx", false), HelloState::NotTls);
        assert!(!a.is_buffering());
        let mut a = HelloAssembler::new(None);
        assert_eq!(
            a.push(5000, b"SSH-2.0-OpenSSH_9.6\r\n", false),
            HelloState::NeedMore
        );
        assert_eq!(a.finish(), HelloState::NotTls);
        assert_eq!(HelloAssembler::new(None).finish(), HelloState::NeedMore);
    }

    #[test]
    fn sslv2_format_hello_is_not_tls() {
        #[rustfmt::skip]
        let v2 = [
            0x80, 0x2e,             // SSLv2 record: 2-byte header, length 46
            0x01,                   // CLIENT-HELLO
            0x03, 0x01,             // version TLS 1.0
            0x00, 0x15,             // cipher specs length 21
            0x00, 0x00,             // session id length 0
            0x00, 0x10,             // challenge length 16
            0x01, 0x00, 0x80, 0x07, 0x00, 0xc0, 0x03, 0x00, 0x80, 0x06, 0x00, 0x40,
            0x02, 0x00, 0x80, 0x04, 0x00, 0x80, 0x00, 0x00, 0x04, // cipher specs
            0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
            0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, // challenge
        ];
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(a.push(ISN + 1, &v2, false), HelloState::NotTls);
        assert_eq!(sni_from_client_bytes(&v2), Err(NotHello::NotTls));
    }

    #[test]
    fn sequence_wrap_around() {
        let isn = u32::MAX - 150; // data starts at MAX - 149, wraps inside the hello
        let h = OPENSSL_HELLO;
        let start = isn.wrapping_add(1);
        let mut a = HelloAssembler::new(Some(isn));
        assert_eq!(
            a.push(start.wrapping_add(200), &h[200..], false),
            HelloState::NeedMore
        );
        assert_eq!(
            a.push(start.wrapping_add(100), &h[100..200], false),
            HelloState::NeedMore
        );
        let info = done(a.push(start, &h[..100], false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
    }

    #[test]
    fn no_syn_and_the_second_segment_first() {
        let h = OPENSSL_HELLO;
        let seq = u32::MAX - 50; // and across wrap-around
        let mut a = HelloAssembler::new(None);
        assert_eq!(
            a.push(seq.wrapping_add(150), &h[150..], false),
            HelloState::NeedMore
        );
        let info = done(a.push(seq, &h[..150], false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        // Once the start looks like TLS, an older segment is ignored.
        let mut a = HelloAssembler::new(None);
        assert_eq!(a.push(seq, &h[..150], false), HelloState::NeedMore);
        assert_eq!(
            a.push(seq.wrapping_sub(10), b"0123456789", false),
            HelloState::NeedMore
        );
        let info = done(a.push(seq.wrapping_add(150), &h[150..], false));
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
    }

    #[test]
    fn overflow_salvages_an_early_sni() {
        // A 20000-byte hello (padding after the server_name extension) in records of
        // 16384, sent in 1400-byte segments.
        let msg = hello_msg(&[sni(b"big.example"), (21, vec![0; 20000])]);
        let stream = records(&msg, &[16384]);
        let mut a = HelloAssembler::new(Some(ISN));
        match a.push(ISN + 1, &stream[..1400], false) {
            HelloState::Overflow(Some(info)) => {
                assert_eq!(sni_of(&info), Some("big.example"));
                assert!(info.partial);
            }
            other => panic!("{other:?}"),
        }
        // The SNI after the padding cannot be reached within the cap.
        let msg = hello_msg(&[(21, vec![0; 20000]), sni(b"big.example")]);
        let stream = records(&msg, &[16384]);
        let mut a = HelloAssembler::new(Some(ISN));
        let mut last = HelloState::NeedMore;
        for (i, chunk) in stream.chunks(1400).enumerate() {
            last = a.push(ISN + 1 + (i * 1400) as u32, chunk, false);
            if last != HelloState::NeedMore {
                break;
            }
        }
        assert_eq!(last, HelloState::Overflow(None));
        assert_eq!(
            sni_from_client_bytes(&stream[..5000]),
            Err(NotHello::TooLarge)
        );
        // A contiguous buffer holding all of it has no reason to give up.
        let info = sni_from_client_bytes(&stream).unwrap().unwrap();
        assert_eq!(sni_of(&info), Some("big.example"));
        assert!(!info.partial);
    }

    #[test]
    fn many_tiny_records_hit_the_cap() {
        // 1-byte records cost 6 stream bytes per message byte: a 3000-byte hello needs
        // 18000 bytes of stream.
        let msg = hello_msg(&[sni(b"a.example"), (21, vec![0; 2900])]);
        let stream = records(&msg, &[1]);
        let mut a = HelloAssembler::new(Some(ISN));
        let mut last = HelloState::NeedMore;
        for (i, chunk) in stream.chunks(1400).enumerate() {
            last = a.push(ISN + 1 + (i * 1400) as u32, chunk, false);
            if last != HelloState::NeedMore {
                // Told as soon as the record headers show the hello cannot fit.
                assert!(i * 1400 < MAX_HELLO_BYTES, "{i}");
                break;
            }
        }
        match last {
            HelloState::Overflow(Some(info)) => assert_eq!(sni_of(&info), Some("a.example")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_many_holes_is_an_overflow() {
        let msg = hello_msg(&[(21, vec![0; 2000]), sni(b"a.example")]);
        let stream = records(&msg, &[16384]);
        let mut a = HelloAssembler::new(Some(ISN));
        let mut last = HelloState::NeedMore;
        // Every other 10-byte piece, beyond the first 100 bytes.
        for off in (100..stream.len()).step_by(20) {
            last = a.push(ISN + 1 + off as u32, &stream[off..off + 10], false);
            if last != HelloState::NeedMore {
                break;
            }
        }
        assert_eq!(last, HelloState::Overflow(None));
    }

    #[test]
    fn malformed_hellos() {
        // A ServerHello where a ClientHello should be.
        let server_hello = [0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00];
        let mut a = HelloAssembler::new(Some(ISN));
        assert_eq!(
            a.push(ISN + 1, &server_hello, false),
            HelloState::Malformed(MalformedHello::NotClientHello(2))
        );
        // A zero-length handshake record.
        assert_eq!(
            sni_from_client_bytes(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Err(NotHello::Malformed(MalformedHello::RecordLength(0)))
        );
        // A ChangeCipherSpec record before the hello is complete.
        let msg = hello_msg(&[sni(b"a.example")]);
        let mut stream = records(&msg[..20], &[20]);
        stream.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        assert_eq!(
            sni_from_client_bytes(&stream),
            Err(NotHello::Malformed(MalformedHello::RecordType(0x14)))
        );
        // Session id longer than 32.
        let mut bad = msg.clone();
        bad[38] = 33;
        assert_eq!(
            parse_handshake_client_hello(&bad),
            Err(NotHello::Malformed(MalformedHello::Body))
        );
        // server_name content that does not parse: the hello is read, the anomaly kept.
        let msg = hello_msg(&[
            (EXT_SERVER_NAME, vec![0x00, 0x09, 0x00]),
            (EXT_ALPN, vec![0, 3, 2, b'h', b'2']),
        ]);
        let info = parse_handshake_client_hello(&msg).unwrap().unwrap();
        assert_eq!(info.sni, None);
        assert_eq!(info.anomaly, Some(MalformedHello::ServerName));
        // Extensions length larger than the message: what is there is still walked.
        let mut msg = hello_msg(&[sni(b"a.example")]);
        let ext_len_at = 4 + 2 + 32 + 1 + 4 + 2;
        msg[ext_len_at + 1] += 10;
        let info = parse_handshake_client_hello(&msg).unwrap().unwrap();
        assert_eq!(sni_of(&info), Some("a.example"));
        assert_eq!(info.anomaly, Some(MalformedHello::Extensions));
    }

    #[test]
    fn contiguous_and_bare_message_entry_points() {
        assert_eq!(sni_from_client_bytes(&[]), Ok(None));
        assert_eq!(sni_from_client_bytes(&OPENSSL_HELLO[..3]), Ok(None));
        assert_eq!(sni_from_client_bytes(&OPENSSL_HELLO[..100]), Ok(None));
        let info = sni_from_client_bytes(&OPENSSL_HELLO[..OPENSSL_SNI_END])
            .unwrap()
            .unwrap();
        assert!(info.partial);
        let info = sni_from_client_bytes(OPENSSL_HELLO).unwrap().unwrap();
        assert!(!info.partial);
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        // QUIC-style bare handshake message: the record layer stripped.
        let msg = &OPENSSL_HELLO[5..];
        let info = parse_handshake_client_hello(msg).unwrap().unwrap();
        assert_eq!(sni_of(&info), Some("courier.push.apple.com"));
        assert!(!info.partial);
        let info = parse_handshake_client_hello(&msg[..OPENSSL_SNI_END - 5])
            .unwrap()
            .unwrap();
        assert!(info.partial);
        assert_eq!(parse_handshake_client_hello(&msg[..60]), Ok(None));
        assert_eq!(parse_handshake_client_hello(&[]), Ok(None));
        assert_eq!(
            parse_handshake_client_hello(&[0x02, 0, 0, 0]),
            Err(NotHello::Malformed(MalformedHello::NotClientHello(2)))
        );
        // A hello without extensions (TLS 1.0 era).
        let mut plain = hello_msg(&[]);
        plain.truncate(plain.len() - 2); // drop the empty extensions length
        plain[3] -= 2; // and fix the 24-bit length
        let info = parse_handshake_client_hello(&plain).unwrap().unwrap();
        assert_eq!(info.sni, None);
        assert_eq!(info.anomaly, None);
    }

    #[test]
    fn odd_names_are_escaped_and_capped() {
        let msg = hello_msg(&[sni(b"Evil\x1b[31m.Example")]);
        let info = parse_handshake_client_hello(&msg).unwrap().unwrap();
        let name = info.sni.unwrap();
        assert!(name.is_escaped());
        assert_eq!(name.as_str(), "evil\\x1b[31m.example");
        let long = vec![b'a'; 400];
        let info = parse_handshake_client_hello(&hello_msg(&[sni(&long)]))
            .unwrap()
            .unwrap();
        assert_eq!(info.sni.unwrap().as_str().len(), crate::dns::MAX_NAME_BYTES);
    }

    #[test]
    fn every_split_and_every_cut_returns_a_value() {
        let h = OPENSSL_HELLO;
        for cut in 1..h.len() {
            // Two segments, delivered in both orders.
            for order in [false, true] {
                let mut a = HelloAssembler::new(Some(ISN));
                let (first, second) = ((ISN + 1, &h[..cut]), (ISN + 1 + cut as u32, &h[cut..]));
                let (x, y) = if order {
                    (second, first)
                } else {
                    (first, second)
                };
                let _ = a.push(x.0, x.1, false);
                let info = done(a.push(y.0, y.1, false));
                assert_eq!(sni_of(&info), Some("courier.push.apple.com"), "cut {cut}");
            }
            // A snaplen cut: SNI if and only if its extension is inside.
            let mut a = HelloAssembler::new(Some(ISN));
            let got = a.push(ISN + 1, &h[..cut], true);
            if cut >= OPENSSL_SNI_END {
                assert_eq!(
                    sni_of(&done(got)),
                    Some("courier.push.apple.com"),
                    "cut {cut}"
                );
            } else {
                assert_eq!(got, HelloState::NeedMore, "cut {cut}");
                assert_eq!(a.finish(), HelloState::Incomplete, "cut {cut}");
            }
            let _ = parse_handshake_client_hello(h.get(5..cut).unwrap_or(&[]));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..3000 {
            let mut buf = [0u8; 96];
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            // Make a plausible start half of the time.
            if next() % 2 == 0 {
                buf[..6].copy_from_slice(&[0x16, 0x03, 0x01, 0x00, (next() % 200) as u8, 0x01]);
            }
            let _ = sni_from_client_bytes(&buf);
            let _ = parse_handshake_client_hello(&buf[5..]);
            let mut a = HelloAssembler::new(if next() % 2 == 0 { Some(next()) } else { None });
            for _ in 0..6 {
                let at = (next() % 96) as usize;
                let len = (next() % 40) as usize;
                let end = (at + len).min(96);
                let seq = next();
                let _ = a.push(seq, &buf[at..end], next() % 3 == 0);
            }
            let _ = a.finish();
        }
    }
}
