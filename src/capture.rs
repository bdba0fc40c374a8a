//! Packet sources: capture files (pcap, pcapng, stdin) read through libpcap.
//!
//! This module owns the boundary with libpcap and turns its failures into typed,
//! user-facing errors that name the file: [`OpenError`] when an input cannot be used
//! at all, [`Damage`] when reading stops part-way (with the byte offset and the
//! packet count, in libpcap's own words). It never decodes packet contents.

use crate::model::Nanos;
use pcap::{Capture, Offline, Precision};
use std::fmt;
use std::path::Path;

/// One captured frame as the source hands it over.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    pub ts: Nanos,
    /// Length on the wire (may exceed `data.len()` when the snaplen cut it).
    pub wire_len: u32,
    pub data: &'a [u8],
}

/// Where reading stopped in a damaged input, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    pub file: String,
    /// Byte offset where libpcap's next read began (the end of the last packet
    /// record or block read): where the damaged record or block starts.
    pub offset: Option<u64>,
    /// Packets read from this file before the damage.
    pub packets_read: u64,
    /// libpcap's reason, e.g. "truncated dump file; tried to read 16 header bytes, only got 7".
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(o) = self.offset {
            write!(f, "at byte {o}, ")?;
        }
        write!(f, "after {} packets: {}", self.packets_read, self.reason)
    }
}

/// An input that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError {
    pub file: String,
    pub reason: String,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

impl std::error::Error for OpenError {}

/// Anything that yields frames of one link type: a capture file, stdin, a live
/// interface, or packets built in memory by a test.
pub trait PacketSource {
    /// Display name of the input (a path, `-` for stdin, an interface name).
    fn name(&self) -> &str;
    /// The pcap `LINKTYPE_*` of the frames.
    fn linktype(&self) -> u32;
    /// The next frame; `Ok(None)` at a clean end; `Err` when reading stopped on damage.
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, Damage>;
}

/// A pcap or pcapng file (or stdin) read by libpcap.
pub struct FileSource {
    cap: Capture<Offline>,
    name: String,
    linktype: u32,
    packets: u64,
}

extern "C" {
    // libpcap: the stdio stream of an offline capture, for byte offsets.
    fn pcap_file(p: *mut libc::c_void) -> *mut libc::FILE;
}

impl FileSource {
    /// Open `path` (`-` means standard input).
    pub fn open(path: &str) -> Result<FileSource, OpenError> {
        let err = |reason: String| OpenError {
            file: path.to_string(),
            reason,
        };
        let cap = if path == "-" {
            // SAFETY: fd 0 stays open for the life of the process; libpcap takes a
            // FILE* over a dup of it through the crate's own helper.
            unsafe { Capture::from_raw_fd_with_precision(0, Precision::Nano) }
                .map_err(|e| err(clean_pcap_error(&e.to_string())))?
        } else {
            let p = Path::new(path);
            match std::fs::metadata(p) {
                Err(e) => return Err(err(io_reason(&e))),
                Ok(m) if m.is_dir() => {
                    return Err(err("is a directory, not a capture file".into()))
                }
                Ok(m) if m.len() == 0 => {
                    return Err(err("empty file (0 bytes), not a capture".into()))
                }
                Ok(_) => {}
            }
            if let Err(e) = std::fs::File::open(p) {
                return Err(err(io_reason(&e)));
            }
            Capture::from_file_with_precision(p, Precision::Nano)
                .map_err(|e| err(clean_pcap_error(&e.to_string())))?
        };
        let linktype = dlt_to_linktype(cap.get_datalink().0);
        Ok(FileSource {
            cap,
            name: path.to_string(),
            linktype,
            packets: 0,
        })
    }

    fn offset(&self) -> Option<u64> {
        // SAFETY: the pcap_t pointer is valid while `self.cap` lives; pcap_file only
        // returns the FILE* libpcap reads from (NULL for non-file captures).
        let off = unsafe {
            let fp = pcap_file(self.cap.as_ptr().cast());
            if fp.is_null() {
                return None;
            }
            libc::ftello(fp)
        };
        u64::try_from(off).ok()
    }
}

impl PacketSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn linktype(&self) -> u32 {
        self.linktype
    }

    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, Damage> {
        let offset = self.offset();
        let packets = self.packets;
        match self.cap.next_packet() {
            Ok(p) => {
                self.packets += 1;
                // With nanosecond precision libpcap stores nanoseconds in tv_usec.
                // The file's seconds are an unsigned 32-bit field (valid to 2106);
                // libpcap's pcap_timeval holds them signed, so undo the sign.
                // (time_t and suseconds_t are not i64 on every platform.)
                #[allow(clippy::useless_conversion)]
                let secs = i64::from(p.header.ts.tv_sec);
                let secs = if secs < 0 && secs >= i64::from(i32::MIN) {
                    i64::from(secs as i32 as u32)
                } else {
                    secs
                };
                #[allow(clippy::useless_conversion)]
                let ts = secs
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(p.header.ts.tv_usec));
                Ok(Some(RawPacket {
                    ts,
                    wire_len: p.header.len,
                    data: p.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => Ok(None),
            Err(e) => Err(Damage {
                file: self.name.clone(),
                offset,
                packets_read: packets,
                reason: clean_pcap_error(&e.to_string()),
            }),
        }
    }
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// libpcap's messages, without the crate's "libpcap error: " prefix.
fn clean_pcap_error(s: &str) -> String {
    s.trim_start_matches("libpcap error: ").trim().to_string()
}

/// libpcap hands out `DLT_*` values; files and reports use `LINKTYPE_*` values.
/// They differ only for a few historical types.
fn dlt_to_linktype(dlt: i32) -> u32 {
    match dlt {
        12 | 14 => 101, // DLT_RAW (Linux 12, BSD/OS 14) -> LINKTYPE_RAW
        11 | 13 => 100, // DLT_ATM_RFC1483
        15 => 102,      // DLT_SLIP_BSDOS
        16 => 103,      // DLT_PPP_BSDOS
        19 => 106,      // DLT_ATM_CLIP
        d => d as u32,
    }
}

/// Name of a `LINKTYPE_*` value for reports (1 -> "en10mb", 276 -> "linux_sll2").
pub fn linktype_name(lt: u32) -> String {
    let known = match lt {
        0 => Some("null"),
        1 => Some("en10mb"),
        9 => Some("ppp"),
        50 => Some("ppp_hdlc"),
        51 => Some("ppp_ether"),
        101 => Some("raw"),
        108 => Some("loop"),
        113 => Some("linux_sll"),
        228 => Some("ipv4"),
        229 => Some("ipv6"),
        239 => Some("nflog"),
        276 => Some("linux_sll2"),
        _ => None,
    };
    if let Some(k) = known {
        return k.to_string();
    }
    match i32::try_from(lt).ok().map(|v| pcap::Linktype(v).get_name()) {
        Some(Ok(n)) => n.to_ascii_lowercase(),
        _ => format!("linktype {lt}"),
    }
}
