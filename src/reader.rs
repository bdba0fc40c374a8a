//! The fast capture-file reader: pcap (both byte orders, micro- and nanosecond,
//! the "modified" variant) and pcapng (several sections, interfaces and link types),
//! read in large chunks and split into records without copying packets.
//!
//! This module owns chunking and record framing only; record and block syntax is
//! parsed by the `pcap-parser` crate. It produces [`Chunk`]s: one buffer of file bytes
//! and the records found in it, which the pipeline can hand whole to worker threads.
//! It never decodes packet contents. A file that stops part-way yields the records
//! before the damage and a [`Damage`] in libpcap's words, with the byte offset of the
//! record that could not be read.

use crate::capture::{Damage, OpenError};
use crate::model::Nanos;
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapError, PcapHeader};
use std::io::Read;

/// Bytes read from the file per chunk (a record larger than this grows the chunk).
pub const CHUNK_BYTES: usize = 1 << 20;

/// libpcap's own limit on a record's captured length (pcap-int.h, MAXIMUM_SNAPLEN).
pub const MAX_RECORD: u32 = 262_144;

/// One record of a chunk: where its bytes are and what the file says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Offset of the packet bytes in [`Chunk::data`].
    pub off: u32,
    /// Captured length.
    pub caplen: u32,
    /// Length on the wire.
    pub wire_len: u32,
    /// `LINKTYPE_*` of the interface that captured it.
    pub linktype: u32,
    pub ts: Nanos,
    /// 1-based number of the record in its file (Wireshark's frame number).
    pub frame: u64,
    /// Which worker owns the record's flow, when the reader already knows
    /// (see `engine`); [`Record::UNSHARDED`] otherwise.
    pub shard: u16,
}

impl Record {
    /// The reader has not looked at the frame: every worker decodes it.
    pub const UNSHARDED: u16 = u16::MAX;
    /// Every worker must read it (a DNS answer names flows of all shards).
    pub const ALL_SHARDS: u16 = u16::MAX - 1;
    /// Not decodable: only the first worker looks at it, to count why.
    pub const NO_FLOW: u16 = u16::MAX - 2;
}

/// A buffer of file bytes and the complete records inside it.
#[derive(Debug, Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub records: Vec<Record>,
    /// Index of the input file (command-line order).
    pub file: u32,
}

impl Chunk {
    /// The captured bytes of `r`.
    pub fn bytes(&self, r: &Record) -> &[u8] {
        let start = r.off as usize;
        let end = start.saturating_add(r.caplen as usize);
        self.data.get(start..end).unwrap_or(&[])
    }
}

/// What a fill produced besides the records now in the chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// More may follow.
    More,
    /// Clean end of the input.
    End,
    /// Reading stopped on damage; the records before it are in the chunk.
    Damaged(Damage),
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    /// Units per second of the timestamps.
    resolution: u64,
    offset_s: i64,
}

/// pcap files before version 2.3 wrote the captured and wire lengths the other way
/// round; libpcap swaps them back (always before 2.3, when they look swapped in 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lengths {
    AsWritten,
    Swapped,
    MaybeSwapped,
}

/// libpcap's largest plausible captured length for a link type (`max_snaplen_for_dlt`).
fn max_snaplen(linktype: u32) -> u32 {
    match linktype {
        231 => 128 * 1024 * 1024, // D-Bus
        279 => 8 * 1024 * 1024,   // EBHSCR
        249 => 1024 * 1024,       // USBPcap
        _ => MAX_RECORD,
    }
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nano: bool,
        modified: bool,
        linktype: u32,
        /// The snapshot length as libpcap adjusts it (0 or too large: the maximum).
        snaplen: u32,
        lengths: Lengths,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// Reads one capture file (or stdin) chunk by chunk.
pub struct FileReader {
    name: String,
    input: Box<dyn Read + Send>,
    format: Format,
    /// Bytes read but not yet framed into records (a record cut by the chunk end).
    carry: Vec<u8>,
    /// File offset of `carry[0]`.
    carry_offset: u64,
    eof: bool,
    frames: u64,
    file_index: u32,
    /// Link type of the first interface (for reports).
    first_linktype: Option<u32>,
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl FileReader {
    /// Open `path` (`-` for standard input) and read its file header.
    pub fn open(path: &str, file_index: u32) -> Result<FileReader, OpenError> {
        let err = |reason: String| OpenError {
            file: path.to_string(),
            reason,
        };
        let mut input: Box<dyn Read + Send> = if path == "-" {
            Box::new(std::io::stdin())
        } else {
            match std::fs::metadata(path) {
                Err(e) => return Err(err(crate::capture::io_reason(&e))),
                Ok(m) if m.is_dir() => {
                    return Err(err("is a directory, not a capture file".into()))
                }
                Ok(_) => {}
            }
            Box::new(std::fs::File::open(path).map_err(|e| err(crate::capture::io_reason(&e)))?)
        };
        let mut head = vec![0u8; 24];
        let n = read_full(&mut *input, &mut head).map_err(|e| err(e.to_string()))?;
        head.truncate(n);
        if n == 0 {
            return Err(err("empty file (0 bytes), not a capture".into()));
        }
        if n < 4 {
            return Err(err(format!(
                "truncated dump file; tried to read 4 file header bytes, only got {n}"
            )));
        }
        let magic = [head[0], head[1], head[2], head[3]];
        let mut reader = FileReader {
            name: path.to_string(),
            input,
            format: Format::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
            },
            carry: Vec::new(),
            carry_offset: 0,
            eof: false,
            frames: 0,
            file_index,
            first_linktype: None,
        };
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            // pcapng: the section header block is parsed as a block like the others.
            reader.carry = head;
            reader.carry_offset = 0;
            // Validate the first section header now, so a non-capture fails at open.
            reader
                .fill_carry(64 * 1024)
                .map_err(|e| err(e.to_string()))?;
            match pcap_parser::pcapng::parse_sectionheaderblock(&reader.carry) {
                Ok((_, shb)) => {
                    reader.format = Format::PcapNg {
                        big_endian: shb.big_endian(),
                        interfaces: Vec::new(),
                    };
                }
                Err(nom::Err::Incomplete(_)) => {
                    return Err(err(format!(
                        "truncated pcapng dump file; tried to read a section header block, only got {} bytes",
                        reader.carry.len()
                    )))
                }
                Err(_) => return Err(err("bad pcapng section header block".into())),
            }
            // Learn the first interface's link type for the report, without consuming.
            reader.first_linktype = first_idb_linktype(&reader.carry);
            return Ok(reader);
        }
        let known = matches!(
            magic,
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x34, 0xcd, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xcd, 0x34]
        );
        if !known {
            return Err(err(
                "unknown file format (not a pcap or pcapng capture)".into()
            ));
        }
        if n < 24 {
            return Err(err(format!(
                "truncated dump file; tried to read 24 file header bytes, only got {n}"
            )));
        }
        let hdr: PcapHeader = match pcap_parser::pcap::parse_pcap_header(&head) {
            Ok((_, h)) => h,
            Err(_) => return Err(err("bad pcap file header".into())),
        };
        if hdr.version_major < 2 {
            return Err(err(format!(
                "archaic pcap savefile format {}.{}",
                hdr.version_major, hdr.version_minor
            )));
        }
        // The upper bits carry the FCS length (LT_LINKTYPE / LT_FCS_LENGTH).
        let linktype = (hdr.network.0 as u32) & 0x03ff_ffff;
        let max = max_snaplen(linktype);
        let snaplen = if hdr.snaplen == 0 || hdr.snaplen > max {
            max
        } else {
            hdr.snaplen
        };
        let lengths = match (hdr.version_major, hdr.version_minor) {
            (2, m) if m < 3 => Lengths::Swapped,
            (2, 3) => Lengths::MaybeSwapped,
            _ => Lengths::AsWritten,
        };
        reader.format = Format::Pcap {
            big_endian: hdr.is_bigendian(),
            nano: hdr.is_nanosecond_precision(),
            modified: hdr.is_modified_format(),
            linktype,
            snaplen,
            lengths,
        };
        reader.first_linktype = Some(linktype);
        reader.carry_offset = 24;
        Ok(reader)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Link type of the file (pcap) or of its first interface (pcapng), if known.
    pub fn linktype(&self) -> Option<u32> {
        self.first_linktype
    }

    /// Records read so far.
    pub fn packets(&self) -> u64 {
        self.frames
    }

    /// Read until `carry` holds at least `want` bytes or the input ends.
    fn fill_carry(&mut self, want: usize) -> std::io::Result<()> {
        while self.carry.len() < want && !self.eof {
            let old = self.carry.len();
            let grow = (want - old).max(CHUNK_BYTES);
            self.carry.resize(old + grow, 0);
            let n = read_full(&mut *self.input, &mut self.carry[old..])?;
            self.carry.truncate(old + n);
            if n < grow {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// Fill `chunk` (cleared first) with the next records.
    pub fn fill(&mut self, chunk: &mut Chunk) -> Fill {
        chunk.records.clear();
        chunk.file = self.file_index;
        // The chunk takes the carried bytes plus a fresh read.
        std::mem::swap(&mut chunk.data, &mut self.carry);
        self.carry.clear();
        let base = self.carry_offset;
        if chunk.data.len() < CHUNK_BYTES && !self.eof {
            // Read into the spare capacity (no zero-filling of the buffer first).
            let want = (CHUNK_BYTES - chunk.data.len()) as u64;
            chunk.data.reserve(want as usize);
            match (&mut self.input).take(want).read_to_end(&mut chunk.data) {
                Ok(n) => {
                    if (n as u64) < want {
                        self.eof = true;
                    }
                }
                Err(e) => {
                    return Fill::Damaged(self.damage(base, format!("read error: {e}")));
                }
            }
        }
        let (consumed, stop) = match self.format {
            Format::Pcap { .. } => self.frame_pcap(chunk, base),
            Format::PcapNg { .. } => self.frame_pcapng(chunk, base),
        };
        // Bytes after the last complete record wait for the next chunk.
        let rest = chunk.data.get(consumed..).unwrap_or(&[]);
        self.carry.extend_from_slice(rest);
        self.carry_offset = base + consumed as u64;
        if let Some(d) = stop {
            return Fill::Damaged(d);
        }
        if self.eof && self.carry.is_empty() {
            return Fill::End;
        }
        if self.eof && !chunk.records.is_empty() {
            // Let the caller process these records, then report the cut record.
            return Fill::More;
        }
        if self.eof {
            let have = self.carry.len();
            let reason = match self.format {
                Format::Pcap { modified, .. } => {
                    let hl = if modified { 24 } else { 16 };
                    if have < hl {
                        format!(
                            "truncated dump file; tried to read {hl} header bytes, only got {have}"
                        )
                    } else {
                        let (caplen, _) = self.pcap_lengths(&self.carry).unwrap_or((0, 0));
                        let want = caplen.min(self.pcap_snaplen());
                        format!(
                            "truncated dump file; tried to read {} captured bytes, only got {}",
                            want,
                            have - hl
                        )
                    }
                }
                Format::PcapNg { big_endian, .. } => {
                    let need = if have >= 8 {
                        let b = [self.carry[4], self.carry[5], self.carry[6], self.carry[7]];
                        if big_endian {
                            u32::from_be_bytes(b)
                        } else {
                            u32::from_le_bytes(b)
                        }
                    } else {
                        8
                    };
                    format!(
                        "truncated pcapng dump file; tried to read {need} bytes, only got {have}"
                    )
                }
            };
            let d = self.damage(self.carry_offset, reason);
            self.carry.clear();
            return Fill::Damaged(d);
        }
        if chunk.records.is_empty() && consumed == 0 {
            // One record larger than a chunk: read more before framing again.
            let want = chunk.data.len() + CHUNK_BYTES;
            std::mem::swap(&mut chunk.data, &mut self.carry);
            if let Err(e) = self.fill_carry(want) {
                return Fill::Damaged(self.damage(base, format!("read error: {e}")));
            }
        }
        Fill::More
    }

    fn damage(&self, offset: u64, reason: String) -> Damage {
        Damage {
            file: self.name.clone(),
            offset: Some(offset),
            packets_read: self.frames,
            reason,
        }
    }

    /// (captured length, wire length) of the record header `b`, as libpcap reads them.
    fn pcap_lengths(&self, b: &[u8]) -> Option<(u32, u32)> {
        let Format::Pcap {
            big_endian,
            lengths,
            ..
        } = self.format
        else {
            return None;
        };
        let word = |at: usize| -> Option<u32> {
            let f = b.get(at..at + 4)?;
            let a = [f[0], f[1], f[2], f[3]];
            Some(if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            })
        };
        let (caplen, len) = (word(8)?, word(12)?);
        Some(match lengths {
            Lengths::Swapped => (len, caplen),
            Lengths::MaybeSwapped if caplen > len => (len, caplen),
            _ => (caplen, len),
        })
    }

    fn pcap_snaplen(&self) -> u32 {
        match self.format {
            Format::Pcap { snaplen, .. } => snaplen,
            _ => MAX_RECORD,
        }
    }

    /// Frame pcap records in `chunk.data`; returns bytes consumed and damage, if any.
    /// Lengths are judged as libpcap judges them (`sf-pcap.c`), with its messages.
    fn frame_pcap(&mut self, chunk: &mut Chunk, base: u64) -> (usize, Option<Damage>) {
        let Format::Pcap {
            nano,
            modified,
            linktype,
            snaplen,
            ..
        } = self.format
        else {
            return (0, None);
        };
        let hl = if modified { 24 } else { 16 };
        let max = max_snaplen(linktype);
        let data = &chunk.data;
        let mut at = 0usize;
        while let Some(h) = data.get(at..at + hl) {
            let (caplen, len) = self.pcap_lengths(h).unwrap_or((0, 0));
            if caplen > max {
                let reason = if caplen <= snaplen {
                    format!("invalid packet capture length {caplen}, bigger than maximum of {max}")
                } else {
                    format!(
                        "invalid packet capture length {caplen}, bigger than snaplen of {snaplen}"
                    )
                };
                return (at, Some(self.damage(base + at as u64, reason)));
            }
            // Longer than the file's snapshot length: libpcap keeps the first
            // `snaplen` bytes and skips the rest.
            let keep = caplen.min(snaplen);
            let end = at + hl + caplen as usize;
            if end > data.len() {
                break;
            }
            let (ts_sec, ts_frac) = match self.format {
                Format::Pcap {
                    big_endian: true, ..
                } => (
                    u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
                    u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                ),
                _ => (
                    u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
                    u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
                ),
            };
            let frac_ns = if nano {
                i64::from(ts_frac)
            } else {
                i64::from(ts_frac) * 1000
            };
            self.frames += 1;
            chunk.records.push(Record {
                off: (at + hl) as u32,
                caplen: keep,
                wire_len: len,
                linktype,
                ts: i64::from(ts_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(frac_ns),
                frame: self.frames,
                shard: Record::UNSHARDED,
            });
            at = end;
        }
        (at, None)
    }

    fn frame_pcapng(&mut self, chunk: &mut Chunk, base: u64) -> (usize, Option<Damage>) {
        let data = &chunk.data;
        let mut at = 0usize;
        loop {
            let Format::PcapNg {
                big_endian,
                ref mut interfaces,
            } = self.format
            else {
                return (at, None);
            };
            let rest = match data.get(at..) {
                Some(r) if r.len() >= 12 => r,
                _ => break,
            };
            // A section header may switch the byte order.
            let is_shb = rest[..4] == [0x0a, 0x0d, 0x0d, 0x0a];
            let parsed = if is_shb {
                pcap_parser::pcapng::parse_sectionheaderblock(rest)
                    .map(|(r, b)| (r, Block::SectionHeader(b)))
            } else if big_endian {
                pcap_parser::pcapng::parse_block_be(rest)
            } else {
                pcap_parser::pcapng::parse_block_le(rest)
            };
            let (remaining, block) = match parsed {
                Ok(x) => x,
                Err(nom::Err::Incomplete(_)) => break,
                Err(e) => {
                    let reason = match e {
                        nom::Err::Error(PcapError::HeaderNotRecognized) => {
                            "unknown pcapng block".to_string()
                        }
                        _ => "bad pcapng block".to_string(),
                    };
                    return (at, Some(self.damage(base + at as u64, reason)));
                }
            };
            let used = rest.len() - remaining.len();
            match block {
                Block::SectionHeader(shb) => {
                    self.format = Format::PcapNg {
                        big_endian: shb.big_endian(),
                        interfaces: Vec::new(),
                    };
                }
                Block::InterfaceDescription(idb) => {
                    let iface = Interface {
                        linktype: idb.linktype.0 as u32,
                        resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                        offset_s: idb.ts_offset(),
                    };
                    if interfaces.len() < 65_536 {
                        interfaces.push(iface);
                    }
                }
                Block::EnhancedPacket(epb) => {
                    let Some(iface) = interfaces.get(epb.if_id as usize).copied() else {
                        let reason = format!(
                            "a packet arrived on interface {}, but there's no Interface Description Block for that interface",
                            epb.if_id
                        );
                        return (at, Some(self.damage(base + at as u64, reason)));
                    };
                    let caplen = epb.caplen.min(epb.data.len() as u32);
                    let off = epb.data.as_ptr() as usize - data.as_ptr() as usize;
                    let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    self.frames += 1;
                    chunk.records.push(Record {
                        off: off as u32,
                        caplen,
                        wire_len: epb.origlen.max(caplen),
                        linktype: iface.linktype,
                        ts: units_to_ns(units, iface.resolution, iface.offset_s),
                        frame: self.frames,
                        shard: Record::UNSHARDED,
                    });
                }
                Block::SimplePacket(spb) => {
                    let Some(iface) = interfaces.first().copied() else {
                        let reason =
                            "a packet arrived before any Interface Description Block".to_string();
                        return (at, Some(self.damage(base + at as u64, reason)));
                    };
                    let caplen = (spb.data.len() as u32).min(spb.origlen);
                    let off = spb.data.as_ptr() as usize - data.as_ptr() as usize;
                    self.frames += 1;
                    chunk.records.push(Record {
                        off: off as u32,
                        caplen,
                        wire_len: spb.origlen.max(caplen),
                        linktype: iface.linktype,
                        ts: 0,
                        frame: self.frames,
                        shard: Record::UNSHARDED,
                    });
                }
                _ => {}
            }
            at += used;
        }
        (at, None)
    }
}

fn units_to_ns(units: u64, resolution: u64, offset_s: i64) -> Nanos {
    let ns = (u128::from(units) * 1_000_000_000) / u128::from(resolution.max(1));
    let ns = i64::try_from(ns).unwrap_or(i64::MAX);
    ns.saturating_add(offset_s.saturating_mul(1_000_000_000))
}

/// The link type of the first interface description block after the section header.
fn first_idb_linktype(b: &[u8]) -> Option<u32> {
    let (rest, shb) = pcap_parser::pcapng::parse_sectionheaderblock(b).ok()?;
    let (_, blk) = if shb.big_endian() {
        pcap_parser::pcapng::parse_block_be(rest).ok()?
    } else {
        pcap_parser::pcapng::parse_block_le(rest).ok()?
    };
    match blk {
        Block::InterfaceDescription(idb) => Some(idb.linktype.0 as u32),
        _ => None,
    }
}
