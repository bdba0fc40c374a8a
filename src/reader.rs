//! The fast capture-file reader: pcap (both byte orders, micro- and nanosecond,
//! the "modified" variant) and pcapng (several sections, interfaces and link types),
//! read in large chunks and split into records without copying packets.
//!
//! This module owns chunking and record framing only. Headers, record headers and
//! blocks are framed by libpcap's rules (`sf-pcap.c`, `sf-pcapng.c` of libpcap 1.10):
//! the same length checks in the same order, the same messages, so a damaged file
//! stops after the same packet with the same reason whichever reader reads it. Where
//! libpcap refuses a valid file for a limitation of its API (pcapng interfaces with
//! different link types or snapshot lengths, sections with another byte order), this
//! reader reads on. It produces [`Chunk`]s: a stretch of file bytes (a buffer filled
//! by read(2) or, for a regular file, a block read ahead with pread(2) by any thread
//! ([`crate::readahead`]) — the engine's default — or a slice of a mapped window of
//! a regular file, see [`FileReader::open`]) and the records found in it, which the
//! pipeline can hand whole to worker threads. It never decodes packet contents. A
//! file that stops part-way yields the records before the damage and a [`Damage`] in
//! libpcap's words, with the byte offset where libpcap's read of the next packet
//! began (the end of the last packet read).

use crate::capture::{Damage, OpenError};
use crate::mapped::{self, Window};
use crate::model::Nanos;
use crate::readahead::{ReadAhead, BLOCK_BYTES, HEADROOM};
use std::io::Read;
use std::sync::Arc;

/// Bytes read from the file per chunk (a record larger than this grows the chunk).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Bytes of a regular file mapped at once ([`crate::mapped`]); chunks are cut from
/// the window without copying. A window holds a few chunks' worth, so that windows
/// are mapped and unmapped rarely, and few are alive at once (peak memory).
pub const WINDOW_BYTES: usize = 16 << 20;

/// libpcap's own limit on a record's captured length (pcap-int.h, MAXIMUM_SNAPLEN).
pub const MAX_RECORD: u32 = 262_144;

/// One record of a chunk: where its bytes are and what the file says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Offset of the packet bytes in the chunk's bytes ([`Chunk::buf`]).
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
    /// The record's captured bytes in `buf`, its chunk's bytes ([`Chunk::buf`]).
    #[inline]
    pub fn bytes_in<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let start = self.off as usize;
        buf.get(start..start.saturating_add(self.caplen as usize))
            .unwrap_or(&[])
    }

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
    /// The bytes, when the chunk owns them (read(2), libpcap, live capture).
    pub data: Vec<u8>,
    pub records: Vec<Record>,
    /// Index of the input file (command-line order).
    pub file: u32,
    /// The bytes, when they are in a mapped window of the file: the window, and the
    /// offset and length of the chunk's bytes in it. Takes precedence over `data`.
    pub window: Option<(Arc<Window>, usize, usize)>,
    /// Where the chunk's bytes start in `data` (a block read ahead keeps room in
    /// front of its bytes, see [`crate::readahead`]).
    pub start: usize,
}

impl Chunk {
    /// The chunk's bytes, which the records' offsets index.
    #[inline]
    pub fn buf(&self) -> &[u8] {
        chunk_bytes(&self.window, &self.data, self.start)
    }

    /// The chunk's bytes and its records, to change the records while reading them.
    pub fn split(&mut self) -> (&[u8], &mut Vec<Record>) {
        (
            chunk_bytes(&self.window, &self.data, self.start),
            &mut self.records,
        )
    }

    /// The captured bytes of `r`.
    #[inline]
    pub fn bytes(&self, r: &Record) -> &[u8] {
        r.bytes_in(self.buf())
    }

    /// Empty the chunk for `file`, keeping its buffers' capacity.
    pub fn reset(&mut self, file: u32) {
        self.data.clear();
        self.recycle(file);
    }

    /// [`Chunk::reset`], but `data` keeps its length: a buffer that held a block read
    /// ahead is read into again without being zeroed first.
    pub fn recycle(&mut self, file: u32) {
        self.records.clear();
        self.window = None;
        self.start = 0;
        self.file = file;
    }
}

#[inline]
fn chunk_bytes<'a>(
    window: &'a Option<(Arc<Window>, usize, usize)>,
    data: &'a [u8],
    start: usize,
) -> &'a [u8] {
    match window {
        Some((w, at, len)) => w.bytes().get(*at..at.saturating_add(*len)).unwrap_or(&[]),
        None => data.get(start..).unwrap_or(&[]),
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
    /// The snapshot length as libpcap adjusts it ([`adjust_snaplen`]).
    snaplen: u32,
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

/// The snapshot length libpcap uses for a header's: read as a C `int`, zero or
/// negative means the link type's maximum; any positive value is kept as written.
fn adjust_snaplen(linktype: u32, snaplen: u32) -> u32 {
    match i32::try_from(snaplen) {
        Ok(s) if s > 0 => snaplen,
        _ => max_snaplen(linktype),
    }
}

/// pcapng block types and constants (`sf-pcapng.c`).
const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 1;
const BT_PB: u32 = 2;
const BT_SPB: u32 = 3;
const BT_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Largest first section header block libpcap accepts.
const SHB_INSANE_MAX: u32 = 1024 * 1024;
/// libpcap's limit on a block's length until an interface raises it.
const INITIAL_MAX_BLOCKSIZE: u32 = 16 * 1024 * 1024;

/// libpcap's block length limit once an interface of `linktype` is known: an EPB
/// with a packet of the link type's largest snapshot length and 128 KiB of options.
fn max_blocksize(linktype: u32) -> u32 {
    INITIAL_MAX_BLOCKSIZE.max(max_snaplen(linktype).saturating_add(8 + 20 + 131_072 + 4))
}

/// The 16 bits at `at` of `b` in the given byte order.
#[inline]
fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let w: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(w)
    } else {
        u16::from_le_bytes(w)
    })
}

/// The 32 bits at `at` of `b` in the given byte order.
#[inline]
fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    })
}

/// A 64-bit timestamp from its high and low words.
#[inline]
fn join64(high: u32, low: u32) -> u64 {
    u64::from(high).wrapping_shl(32) | u64::from(low)
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        nano: bool,
        modified: bool,
        linktype: u32,
        /// The snapshot length as libpcap adjusts it ([`adjust_snaplen`]).
        snaplen: u32,
        lengths: Lengths,
    },
    PcapNg {
        big_endian: bool,
        /// Interfaces of the current section.
        interfaces: Vec<Interface>,
        /// Longest block accepted ([`max_blocksize`]).
        max_block: u32,
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
    /// File offset where libpcap would start reading the next packet: the end of the
    /// last packet record or block (of the file header, or of the first interface
    /// description block, before any). Damage is reported at this offset.
    resume: u64,
    eof: bool,
    frames: u64,
    file_index: u32,
    /// Link type of the first interface (for reports).
    first_linktype: Option<u32>,
    /// Set for a regular file read through mapped windows; `input` and `carry` are
    /// then used for the file header only.
    mapped: Option<MapState>,
    /// Set for a regular file read with pread(2) in blocks that any thread may read
    /// ahead ([`crate::readahead`]); `input` is then used for the file header only.
    blocks: Option<Arc<ReadAhead>>,
    /// Flow workers of the run (1: one, records are not sharded here); see
    /// [`FileReader::set_shards`].
    shards: usize,
}

/// The mapped reading of a regular file.
struct MapState {
    file: std::fs::File,
    /// Owner id of our windows ([`mapped::new_owner`]).
    owner: u64,
    /// The file's size when last looked at.
    size: u64,
    window: Option<Arc<Window>>,
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0usize;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n = n.saturating_add(k),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One pcapng block as libpcap's `read_block` frames it.
enum NgBlock<'a> {
    /// The input ends cleanly before the block.
    End,
    /// This many bytes from the block's start are needed to go on (more may come).
    Need(usize),
    /// A well-framed block: its type, total length, byte order and body (the bytes
    /// between the 8-byte header and the 4-byte trailer).
    Block {
        ty: u32,
        len: usize,
        big_endian: bool,
        body: &'a [u8],
    },
    /// libpcap's reason for refusing the block.
    Bad(String),
}

/// Frame the block at the start of `rest` with libpcap's checks, in its order: the
/// header, the length (at least 12, a multiple of 4, at most `max_block`), the whole
/// block, the trailer. `eof`: no more bytes will follow `rest`.
fn ng_block(rest: &[u8], big_endian: bool, max_block: u32, eof: bool) -> NgBlock<'_> {
    let have = rest.len();
    let Some(head) = rest.first_chunk::<8>() else {
        return match (have, eof) {
            (0, true) => NgBlock::End,
            (_, false) => NgBlock::Need(8),
            (_, true) => NgBlock::Bad(format!(
                "truncated pcapng dump file; tried to read 8 bytes, only got {have}"
            )),
        };
    };
    let mut be = big_endian;
    if u32_at(head, 0, be) == Some(BT_SHB) {
        // A new section may change the byte order; its byte-order magic says which.
        match u32_at(rest, 8, false) {
            Some(BYTE_ORDER_MAGIC) => be = false,
            Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => be = true,
            Some(_) => {}
            None if !eof => return NgBlock::Need(12),
            None => {}
        }
    }
    let (Some(ty), Some(len)) = (u32_at(head, 0, be), u32_at(head, 4, be)) else {
        return NgBlock::Need(8);
    };
    if len < 12 {
        return NgBlock::Bad(format!(
            "block in pcapng dump file has a length of {len} < 12"
        ));
    }
    if len & 3 != 0 {
        return NgBlock::Bad(format!(
            "block in pcapng dump file has a length of {len} that is not a multiple of 4"
        ));
    }
    if len > max_block {
        return NgBlock::Bad(format!("pcapng block size {len} > maximum {max_block}"));
    }
    let total = len as usize;
    let Some(block) = rest.get(..total) else {
        if !eof {
            return NgBlock::Need(total);
        }
        return NgBlock::Bad(format!(
            "truncated pcapng dump file; tried to read {} bytes, only got {}",
            total.saturating_sub(8),
            have.saturating_sub(8)
        ));
    };
    if u32_at(block, total.saturating_sub(4), be) != Some(len) {
        return NgBlock::Bad("block total length in header and trailer don't match".into());
    }
    NgBlock::Block {
        ty,
        len: total,
        big_endian: be,
        body: block.get(8..total.saturating_sub(4)).unwrap_or_default(),
    }
}

/// libpcap's message for a block whose body is shorter than its contents need.
fn too_short(ty: u32) -> String {
    format!("block of type {ty} in pcapng dump file is too short")
}

/// An interface description block's body, with libpcap's checks of its options
/// (`add_interface`, `process_idb_options`).
fn parse_idb(body: &[u8], be: bool) -> Result<Interface, String> {
    let Some((fixed, mut opts)) = body.split_first_chunk::<8>() else {
        return Err(too_short(BT_IDB));
    };
    let linktype = u32::from(u16_at(fixed, 0, be).unwrap_or_default());
    let snaplen = u32_at(fixed, 4, be).unwrap_or_default();
    let mut resolution: Option<u64> = None;
    let mut offset_s: Option<i64> = None;
    while !opts.is_empty() {
        let Some((oh, rest)) = opts.split_first_chunk::<4>() else {
            return Err(too_short(BT_IDB));
        };
        let code = u16_at(oh, 0, be).unwrap_or_default();
        let olen = u16_at(oh, 2, be).unwrap_or_default();
        let padded = usize::from(olen).saturating_add(3) & !3;
        let (Some(value), Some(next)) = (rest.get(..padded), rest.get(padded..)) else {
            return Err(too_short(BT_IDB));
        };
        opts = next;
        match code {
            // opt_endofopt
            0 => {
                if olen != 0 {
                    return Err(format!(
                        "Interface Description Block has opt_endofopt option with length {olen} != 0"
                    ));
                }
                break;
            }
            // if_tsresol
            9 => {
                if olen != 1 {
                    return Err(format!(
                        "Interface Description Block has if_tsresol option with length {olen} != 1"
                    ));
                }
                if resolution.is_some() {
                    return Err(
                        "Interface Description Block has more than one if_tsresol option".into(),
                    );
                }
                let v = value.first().copied().unwrap_or_default();
                let exp = u32::from(v & 0x7f);
                resolution = if v & 0x80 != 0 {
                    match 1u64.checked_shl(exp).filter(|_| exp <= 63) {
                        Some(r) => Some(r),
                        None => {
                            return Err(format!(
                                "Interface Description Block if_tsresol option resolution 2^-{exp} is too high"
                            ))
                        }
                    }
                } else {
                    match 10u64.checked_pow(u32::from(v)).filter(|_| v <= 19) {
                        Some(r) => Some(r),
                        None => {
                            return Err(format!(
                                "Interface Description Block if_tsresol option resolution 10^-{v} is too high"
                            ))
                        }
                    }
                };
            }
            // if_tsoffset
            14 => {
                if olen != 8 {
                    return Err(format!(
                        "Interface Description Block has if_tsoffset option with length {olen} != 8"
                    ));
                }
                if offset_s.is_some() {
                    return Err(
                        "Interface Description Block has more than one if_tsoffset option".into(),
                    );
                }
                let w: [u8; 8] = value
                    .get(..8)
                    .and_then(|v| v.try_into().ok())
                    .unwrap_or_default();
                offset_s = Some(if be {
                    i64::from_be_bytes(w)
                } else {
                    i64::from_le_bytes(w)
                });
            }
            _ => {}
        }
    }
    Ok(Interface {
        linktype,
        snaplen: adjust_snaplen(linktype, snaplen),
        resolution: resolution.unwrap_or(1_000_000),
        offset_s: offset_s.unwrap_or(0),
    })
}

/// (captured length, wire length) of the pcap record header `h`, as libpcap reads them.
#[inline]
fn pcap_lengths(h: &[u8; 16], big_endian: bool, lengths: Lengths) -> (u32, u32) {
    let caplen = u32_at(h, 8, big_endian).unwrap_or_default();
    let len = u32_at(h, 12, big_endian).unwrap_or_default();
    match lengths {
        Lengths::Swapped => (len, caplen),
        Lengths::MaybeSwapped if caplen > len => (len, caplen),
        _ => (caplen, len),
    }
}

impl FileReader {
    /// Give each pcap record its flow worker, of `shards`, as it is framed, from a
    /// quick look at its headers ([`crate::flow::quick_shard`]): its first bytes
    /// are still in the cache then, where a pass after framing the whole chunk found
    /// them gone. Records the quick look cannot place stay [`Record::UNSHARDED`] for
    /// the engine to decode.
    pub fn set_shards(&mut self, shards: usize) {
        self.shards = shards.max(1);
    }

    /// Open `path` (`-` for standard input) and read its file header (pcapng: up to
    /// and including the first interface description block, as libpcap does).
    ///
    /// A regular file is read through mapped windows of [`WINDOW_BYTES`]; standard
    /// input, pipes and devices are read with read(2).
    pub fn open(path: &str, file_index: u32) -> Result<FileReader, OpenError> {
        Self::open_with(path, file_index, true)
    }

    /// [`FileReader::open`], with `map: false` to read even a regular file with
    /// read(2), as the engine does by default (`--reader fast`; both ways give the
    /// same records).
    pub fn open_with(path: &str, file_index: u32, map: bool) -> Result<FileReader, OpenError> {
        let err = |reason: String| OpenError {
            file: path.to_string(),
            reason,
        };
        let mut map_file = None;
        let mut block_file = None;
        let input: Box<dyn Read + Send> = if path == "-" {
            Box::new(std::io::stdin())
        } else {
            let regular = match std::fs::metadata(path) {
                Err(e) => return Err(err(crate::capture::io_reason(&e))),
                Ok(m) if m.is_dir() => {
                    return Err(err("is a directory, not a capture file".into()))
                }
                Ok(m) => m.is_file(),
            };
            let f = std::fs::File::open(path).map_err(|e| err(crate::capture::io_reason(&e)))?;
            if map && regular {
                map_file = f.try_clone().ok();
            } else if regular {
                block_file = f.try_clone().ok();
            }
            Box::new(f)
        };
        let mut reader = FileReader {
            name: path.to_string(),
            input,
            format: Format::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
                max_block: INITIAL_MAX_BLOCKSIZE,
            },
            carry: Vec::new(),
            carry_offset: 0,
            resume: 0,
            eof: false,
            frames: 0,
            file_index,
            first_linktype: None,
            mapped: None,
            blocks: None,
            shards: 1,
        };
        let mut head = [0u8; 24];
        let n = read_full(&mut *reader.input, &mut head).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            return Err(err("empty file (0 bytes), not a capture".into()));
        }
        let Some(&magic) = head.first_chunk::<4>().filter(|_| n >= 4) else {
            return Err(err(format!(
                "truncated dump file; tried to read 4 file header bytes, only got {n}"
            )));
        };
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            reader
                .carry
                .extend_from_slice(head.get(..n).unwrap_or_default());
            reader.open_pcapng().map_err(err)?;
            reader.start_mapping(map_file);
            reader.start_blocks(block_file);
            return Ok(reader);
        }
        let (big_endian, nano, modified) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true, false),
            [0x34, 0xcd, 0xb2, 0xa1] => (false, false, true),
            [0xa1, 0xb2, 0xcd, 0x34] => (true, false, true),
            _ => return Err(err("unknown file format".into())),
        };
        if n < 24 {
            // libpcap reads the magic number, then the rest of the header.
            return Err(err(format!(
                "truncated dump file; tried to read 24 file header bytes, only got {}",
                n.saturating_sub(4)
            )));
        }
        let field16 = |at| u16_at(&head, at, big_endian).unwrap_or_default();
        let field32 = |at| u32_at(&head, at, big_endian).unwrap_or_default();
        let (major, minor) = (field16(4), field16(6));
        if major < 2 {
            return Err(err("archaic pcap savefile format".into()));
        }
        if !((major == 2 && minor <= 4) || (major == 543 && minor == 0)) {
            return Err(err(format!(
                "unsupported pcap savefile version {major}.{minor}"
            )));
        }
        // The upper bits carry the FCS length (LT_LINKTYPE / LT_FCS_LENGTH).
        let linktype = field32(20) & 0x03ff_ffff;
        let lengths = match (major, minor) {
            (2, m) if m < 3 => Lengths::Swapped,
            (2, 3) => Lengths::MaybeSwapped,
            (543, _) => Lengths::Swapped,
            _ => Lengths::AsWritten,
        };
        reader.format = Format::Pcap {
            big_endian,
            nano,
            modified,
            linktype,
            snaplen: adjust_snaplen(linktype, field32(16)),
            lengths,
        };
        reader.first_linktype = Some(linktype);
        reader.carry_offset = 24;
        reader.resume = 24;
        reader.start_mapping(map_file);
        reader.start_blocks(block_file);
        Ok(reader)
    }

    /// Read the rest of the file through mapped windows, from `carry_offset` on.
    fn start_mapping(&mut self, file: Option<std::fs::File>) {
        let Some(file) = file else {
            return;
        };
        let mut m = MapState {
            file,
            owner: mapped::new_owner(),
            size: 0,
            window: None,
        };
        // The first window is mapped now: a file system that cannot map the file
        // keeps the read(2) path, from where the header reading left it.
        let Ok(size) = m.file.metadata().map(|md| md.len()) else {
            return;
        };
        if size > self.carry_offset {
            let len = size
                .saturating_sub(self.carry_offset)
                .min(WINDOW_BYTES as u64);
            let len = usize::try_from(len).unwrap_or(WINDOW_BYTES);
            match Window::map(&m.file, self.carry_offset, len, m.owner) {
                Ok(w) => {
                    m.window = Some(Arc::new(w));
                    m.size = size;
                }
                Err(_) => return,
            }
        }
        self.carry = Vec::new();
        self.eof = false;
        self.mapped = Some(m);
    }

    /// Read the rest of the file in blocks with pread(2) ([`crate::readahead`]), from
    /// where the header reading left the file position.
    fn start_blocks(&mut self, file: Option<std::fs::File>) {
        if let (Some(file), None) = (file, &self.mapped) {
            let base = self.carry_offset.saturating_add(self.carry.len() as u64);
            self.blocks = Some(Arc::new(ReadAhead::new(file, base)));
        }
    }

    /// The blocks of the file that other threads may read ahead of [`FileReader::fill`]
    /// ([`ReadAhead::prefetch`]), when it is read that way.
    pub fn read_ahead(&self) -> Option<Arc<ReadAhead>> {
        self.blocks.clone()
    }

    /// The owner id of this reader's mapped windows, if it maps the file: the engine
    /// asks [`mapped::first_fault`] about it once the workers are done.
    pub fn map_owner(&self) -> Option<u64> {
        self.mapped.as_ref().map(|m| m.owner)
    }

    /// libpcap's `pcap_ng_check_header`: the first section header block, then the
    /// blocks up to and including the first interface description block. `carry`
    /// holds the file's first bytes; on success it holds the bytes after that block.
    fn open_pcapng(&mut self) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        self.fill_carry(12).map_err(io)?;
        let Some(h) = self.carry.first_chunk::<12>() else {
            return Err("unknown file format".into());
        };
        let big_endian = match u32_at(h, 8, false) {
            Some(BYTE_ORDER_MAGIC) => false,
            Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            _ => return Err("unknown file format".into()),
        };
        let shb_len = u32_at(h, 4, big_endian).unwrap_or_default();
        if !(28..=SHB_INSANE_MAX).contains(&shb_len) {
            return Err(format!(
                "Section Header Block in pcapng dump file has invalid length 28 < _{shb_len}_ < {SHB_INSANE_MAX} (BT_SHB_INSANE_MAX)"
            ));
        }
        let shb_len = shb_len as usize;
        self.fill_carry(shb_len).map_err(io)?;
        let Some(shb) = self.carry.get(..shb_len) else {
            return Err(format!(
                "truncated pcapng dump file; tried to read {} bytes, only got {}",
                shb_len.saturating_sub(12),
                self.carry.len().saturating_sub(12)
            ));
        };
        let major = u16_at(shb, 12, big_endian).unwrap_or_default();
        let minor = u16_at(shb, 14, big_endian).unwrap_or_default();
        if !(major == 1 && (minor == 0 || minor == 2)) {
            return Err(format!(
                "unsupported pcapng savefile version {major}.{minor}"
            ));
        }
        // Look for the first interface description block (other blocks are skipped).
        let mut at = shb_len;
        let (iface, end) = loop {
            let rest = self.carry.get(at..).unwrap_or_default();
            let step = match ng_block(rest, big_endian, INITIAL_MAX_BLOCKSIZE, self.eof) {
                NgBlock::End => {
                    return Err("the capture file has no Interface Description Blocks".into())
                }
                NgBlock::Bad(r) => return Err(r),
                NgBlock::Need(w) => Err(at.saturating_add(w)),
                NgBlock::Block { ty, len, body, .. } => match ty {
                    BT_IDB => Ok(Some((parse_idb(body, big_endian)?, at.saturating_add(len)))),
                    BT_EPB | BT_SPB | BT_PB => {
                        return Err("the capture file has a packet block before any Interface Description Blocks".into())
                    }
                    _ => {
                        at = at.saturating_add(len);
                        Ok(None)
                    }
                },
            };
            match step {
                Ok(Some(found)) => break found,
                Ok(None) => {}
                Err(want) => self.fill_carry(want).map_err(io)?,
            }
        };
        self.format = Format::PcapNg {
            big_endian,
            interfaces: vec![iface],
            max_block: max_blocksize(iface.linktype),
        };
        self.first_linktype = Some(iface.linktype);
        self.carry.drain(..end.min(self.carry.len()));
        self.carry_offset = end as u64;
        self.resume = end as u64;
        Ok(())
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
        if let Some(ra) = self.blocks.clone() {
            while self.carry.len() < want && !self.eof {
                let b = ra.take()?;
                if b.len < BLOCK_BYTES {
                    self.eof = true;
                }
                let end = HEADROOM.saturating_add(b.len);
                self.carry
                    .extend_from_slice(b.buf.get(HEADROOM..end).unwrap_or_default());
                ra.give_back(b.buf);
            }
            return Ok(());
        }
        while self.carry.len() < want && !self.eof {
            let old = self.carry.len();
            let grow = want.saturating_sub(old).max(CHUNK_BYTES);
            self.carry.resize(old.saturating_add(grow), 0);
            let got = read_full(
                &mut *self.input,
                self.carry.get_mut(old..).unwrap_or_default(),
            );
            let n = match got {
                Ok(n) => n,
                Err(e) => {
                    self.carry.truncate(old);
                    return Err(e);
                }
            };
            self.carry.truncate(old.saturating_add(n));
            if n < grow {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// Fill `chunk` (cleared first) with the next records.
    pub fn fill(&mut self, chunk: &mut Chunk) -> Fill {
        if let Some(ra) = self.blocks.clone() {
            return self.fill_blocks(chunk, &ra);
        }
        chunk.reset(self.file_index);
        if self.mapped.is_some() {
            return self.fill_mapped(chunk);
        }
        // The chunk takes the carried bytes plus a fresh read.
        std::mem::swap(&mut chunk.data, &mut self.carry);
        self.carry.clear();
        let base = self.carry_offset;
        if chunk.data.len() < CHUNK_BYTES && !self.eof {
            // Read into the spare capacity (no zero-filling of the buffer first).
            let want = CHUNK_BYTES.saturating_sub(chunk.data.len());
            chunk.data.reserve(want);
            match (&mut self.input)
                .take(want as u64)
                .read_to_end(&mut chunk.data)
            {
                Ok(n) => {
                    if n < want {
                        self.eof = true;
                    }
                }
                Err(e) => return Fill::Damaged(self.damage(format!("read error: {e}"))),
            }
        }
        self.frame_chunk(chunk, base)
    }

    /// [`FileReader::fill`] for a file read in blocks: the chunk is the unframed tail
    /// of the previous block, then the next block, in the block's own buffer.
    fn fill_blocks(&mut self, chunk: &mut Chunk, ra: &ReadAhead) -> Fill {
        // The chunk's buffer keeps its length: it is read into again, unzeroed.
        chunk.recycle(self.file_index);
        let base = self.carry_offset;
        if self.eof {
            chunk.data.clear();
            chunk.data.extend_from_slice(&self.carry);
        } else {
            let b = match ra.take() {
                Ok(b) => b,
                Err(e) => return Fill::Damaged(self.damage(format!("read error: {e}"))),
            };
            if b.len < BLOCK_BYTES {
                self.eof = true;
            }
            let mut buf = b.buf;
            let end = HEADROOM.saturating_add(b.len);
            let start = HEADROOM.checked_sub(self.carry.len());
            match start.and_then(|s| buf.get_mut(s..HEADROOM).map(|room| (s, room))) {
                Some((s, room)) => {
                    room.copy_from_slice(&self.carry);
                    buf.truncate(end);
                    ra.give_back(std::mem::replace(&mut chunk.data, buf));
                    chunk.start = s;
                }
                None => {
                    // A tail longer than the headroom: copied with the block.
                    chunk.data.clear();
                    chunk.data.extend_from_slice(&self.carry);
                    chunk
                        .data
                        .extend_from_slice(buf.get(HEADROOM..end).unwrap_or_default());
                    ra.give_back(buf);
                }
            }
        }
        self.carry.clear();
        self.frame_chunk(chunk, base)
    }

    /// Frame the bytes of `chunk` (at file offset `base`) into its records and keep
    /// the unframed tail for the next chunk; when one record is larger than the chunk,
    /// read more first.
    fn frame_chunk(&mut self, chunk: &mut Chunk, base: u64) -> Fill {
        // At the end of the input the framers report whatever they cannot frame.
        let (data, records) = chunk.split();
        let (consumed, stop) = self.frame(data, self.eof, records, base, false);
        if let Some(d) = stop {
            return Fill::Damaged(d);
        }
        // Bytes after the last complete record wait for the next chunk.
        let rest = data.get(consumed..).unwrap_or_default();
        self.carry.extend_from_slice(rest);
        self.carry_offset = base.saturating_add(consumed as u64);
        if self.eof {
            if self.carry.is_empty() {
                return Fill::End;
            }
            // Not reached: at the end of the input every byte is framed or reported.
            self.carry.clear();
            return Fill::Damaged(self.damage("truncated dump file".into()));
        }
        if chunk.records.is_empty() && consumed == 0 {
            // One record larger than a chunk (all of it is in `carry` now): read more
            // before framing again.
            let want = self.carry.len().saturating_add(CHUNK_BYTES);
            if let Err(e) = self.fill_carry(want) {
                return Fill::Damaged(self.damage(format!("read error: {e}")));
            }
        }
        Fill::More
    }

    /// Frame the records in `data` (at file offset `base`; `eof`: nothing follows it);
    /// returns the bytes consumed and the damage met, if any. `in_window`: `data` lies
    /// in a mapped window, not yet in any cache.
    fn frame(
        &mut self,
        data: &[u8],
        eof: bool,
        records: &mut Vec<Record>,
        base: u64,
        in_window: bool,
    ) -> (usize, Option<Damage>) {
        match self.format {
            Format::Pcap { .. } => self.frame_pcap(data, eof, records, in_window),
            Format::PcapNg { .. } => self.frame_pcapng(data, eof, records, base),
        }
    }

    /// [`FileReader::fill`] for a mapped file: the chunk is the next stretch of the
    /// current window (a new window is mapped when the next record is not whole in
    /// it), at least [`CHUNK_BYTES`] long when the file holds that much.
    fn fill_mapped(&mut self, chunk: &mut Chunk) -> Fill {
        let base = self.carry_offset;
        let mut want = CHUNK_BYTES;
        loop {
            let (window, size) = match self.window_for(base, want) {
                Ok(w) => w,
                Err(e) => return Fill::Damaged(self.damage(format!("read error: {e}"))),
            };
            let (at, avail) = window.as_ref().map_or((0, 0), |w| {
                let at = usize::try_from(base.saturating_sub(w.offset())).unwrap_or(usize::MAX);
                (at, w.bytes().len().saturating_sub(at))
            });
            let take = avail.min(want);
            // Nothing follows: the slice reaches the end of the file.
            let eof = take == avail && base.saturating_add(avail as u64) >= size;
            let data = window
                .as_ref()
                .and_then(|w| w.bytes().get(at..at.saturating_add(take)))
                .unwrap_or_default();
            let frames_before = self.frames;
            let (consumed, stop) = self.frame(data, eof, &mut chunk.records, base, true);
            if let Some(d) = self.mapping_fault(chunk, base, frames_before) {
                // The records kept lie before the lost page.
                let len = chunk.records.last().map_or(0, |r| {
                    (r.off as usize).saturating_add(r.caplen as usize)
                });
                if let Some(w) = window.filter(|_| len > 0) {
                    chunk.window = Some((w, at, len));
                }
                return Fill::Damaged(d);
            }
            if consumed == 0 && chunk.records.is_empty() && stop.is_none() && !eof {
                // The next record is longer than the slice: take more.
                want = want.saturating_mul(2);
                continue;
            }
            self.carry_offset = base.saturating_add(consumed as u64);
            if let Some(w) = window.filter(|_| consumed > 0) {
                chunk.window = Some((w, at, consumed));
            }
            if let Some(d) = stop {
                return Fill::Damaged(d);
            }
            return if eof { Fill::End } else { Fill::More };
        }
    }

    /// The window holding `want` bytes from file offset `base` (or up to the end of
    /// the file), mapping a new one when the current one does not; and the file size.
    /// `None` when the file has no bytes at `base`.
    fn window_for(&mut self, base: u64, want: usize) -> std::io::Result<(Option<Arc<Window>>, u64)> {
        let Some(m) = self.mapped.as_mut() else {
            return Ok((None, base));
        };
        let want64 = want as u64;
        if let Some(w) = &m.window {
            let end = w.offset().saturating_add(w.bytes().len() as u64);
            let holds = base >= w.offset() && end >= base.saturating_add(want64);
            if holds {
                return Ok((Some(Arc::clone(w)), m.size));
            }
            if base >= w.offset() && end >= m.size {
                // The window reaches the end of the file as last seen: has it grown?
                m.size = m.file.metadata()?.len();
                if end >= m.size {
                    return Ok((Some(Arc::clone(w)), m.size));
                }
            }
        }
        m.window = None;
        m.size = m.file.metadata()?.len();
        if m.size <= base {
            return Ok((None, m.size));
        }
        let len = m.size.saturating_sub(base).min(want64.max(WINDOW_BYTES as u64));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let w = Arc::new(Window::map(&m.file, base, len, m.owner)?);
        m.window = Some(Arc::clone(&w));
        Ok((Some(w), m.size))
    }

    /// Damage when a page of the mapped file went missing while it was read (the file
    /// shrank, or a read error): the records of `chunk` that reach that page are
    /// dropped (the caller points the chunk at the bytes of those kept) and reading
    /// stops there.
    fn mapping_fault(&mut self, chunk: &mut Chunk, base: u64, frames_before: u64) -> Option<Damage> {
        let m = self.mapped.as_ref()?;
        let at = mapped::first_fault(m.owner)?;
        let now = m.file.metadata().map(|md| md.len()).unwrap_or(0);
        let keep = chunk
            .records
            .iter()
            .take_while(|r| {
                base.saturating_add(u64::from(r.off))
                    .saturating_add(u64::from(r.caplen))
                    <= at
            })
            .count();
        chunk.records.truncate(keep);
        self.frames = frames_before.saturating_add(keep as u64);
        self.resume = self.resume.min(at);
        Some(Damage {
            file: self.name.clone(),
            offset: Some(at),
            packets_read: self.frames,
            reason: mapped::changed_reason(at, now),
        })
    }

    /// Reading stopped for `reason`, where libpcap's next read would have begun.
    fn damage(&self, reason: String) -> Damage {
        Damage {
            file: self.name.clone(),
            offset: Some(self.resume),
            packets_read: self.frames,
            reason,
        }
    }

    /// Frame pcap records in `data`; returns bytes consumed and damage, if any.
    /// Lengths are judged as libpcap judges them (`sf-pcap.c`), with its messages.
    /// `in_window`: as for [`FileReader::frame`].
    fn frame_pcap(
        &mut self,
        data: &[u8],
        eof: bool,
        records: &mut Vec<Record>,
        in_window: bool,
    ) -> (usize, Option<Damage>) {
        let Format::Pcap {
            big_endian,
            nano,
            modified,
            linktype,
            snaplen,
            lengths,
        } = self.format
        else {
            return (0, None);
        };
        let hl: usize = if modified { 24 } else { 16 };
        let max = max_snaplen(linktype);
        let shards = self.shards;
        let mut at = 0usize;
        let mut stop = None;
        let mut ahead = 0usize;
        loop {
            // Copied bytes were just written by read(2) and are still in a cache;
            // asking for every line of them again cost the framer more than it saved
            // (main capture, packets phase: 1 thread 296.5 -> 285 ms, 2 threads 346 ->
            // 340 ms of CPU without it).
            if in_window {
                crate::prefetch::prefetch_lines(
                    data,
                    &mut ahead,
                    at.saturating_add(mapped::PREFETCH_BYTES),
                );
            }
            let rest = data.get(at..).unwrap_or_default();
            let Some(h) = rest.first_chunk::<16>().filter(|_| rest.len() >= hl) else {
                if eof && !rest.is_empty() {
                    stop = Some(format!(
                        "truncated dump file; tried to read {hl} header bytes, only got {}",
                        rest.len()
                    ));
                }
                break;
            };
            let (caplen, len) = pcap_lengths(h, big_endian, lengths);
            if caplen > max {
                stop = Some(if caplen > snaplen {
                    format!(
                        "invalid packet capture length {caplen}, bigger than snaplen of {snaplen}"
                    )
                } else {
                    format!("invalid packet capture length {caplen}, bigger than maximum of {max}")
                });
                break;
            }
            // Longer than the file's snapshot length: libpcap keeps the first
            // `snaplen` bytes and skips the rest.
            let keep = caplen.min(snaplen);
            let end = hl.saturating_add(caplen as usize);
            if rest.len() < end {
                if eof {
                    // libpcap reads the kept bytes, then skips the rest of the record.
                    let got = rest.len().saturating_sub(hl);
                    let want = if got < keep as usize { keep } else { caplen };
                    stop = Some(format!(
                        "truncated dump file; tried to read {want} captured bytes, only got {got}"
                    ));
                }
                break;
            }
            let ts_sec = u32_at(h, 0, big_endian).unwrap_or_default();
            let ts_frac = u32_at(h, 4, big_endian).unwrap_or_default();
            let frac_ns = if nano {
                i64::from(ts_frac)
            } else {
                i64::from(ts_frac).saturating_mul(1000)
            };
            self.frames = self.frames.saturating_add(1);
            let off = at.saturating_add(hl);
            let shard = match shards {
                1 => Record::UNSHARDED,
                n => rest
                    .get(hl..hl.saturating_add(keep as usize))
                    .and_then(|frame| crate::flow::quick_shard(linktype, frame, n))
                    .map_or(Record::UNSHARDED, |s| s as u16),
            };
            records.push(Record {
                off: off as u32,
                caplen: keep,
                wire_len: len,
                linktype,
                ts: i64::from(ts_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(frac_ns),
                frame: self.frames,
                shard,
            });
            at = at.saturating_add(end);
            self.resume = self.resume.saturating_add(end as u64);
        }
        (at, stop.map(|r| self.damage(r)))
    }

    /// Frame pcapng blocks in `data` (which starts at file offset `base`);
    /// returns bytes consumed and damage, if any. Blocks are framed by [`ng_block`] and
    /// their contents judged as `pcap_ng_next_packet` judges them, with its messages.
    fn frame_pcapng(
        &mut self,
        data: &[u8],
        eof: bool,
        records: &mut Vec<Record>,
        base: u64,
    ) -> (usize, Option<Damage>) {
        let Format::PcapNg {
            big_endian,
            interfaces,
            max_block,
        } = &mut self.format
        else {
            return (0, None);
        };
        let mut at = 0usize;
        let mut stop: Option<String> = None;
        loop {
            let rest = data.get(at..).unwrap_or_default();
            let (ty, len, be, body) = match ng_block(rest, *big_endian, *max_block, eof) {
                NgBlock::End | NgBlock::Need(_) => break,
                NgBlock::Bad(r) => {
                    stop = Some(r);
                    break;
                }
                NgBlock::Block {
                    ty,
                    len,
                    big_endian,
                    body,
                } => (ty, len, big_endian, body),
            };
            let word = |i: usize| u32_at(body, i, be).unwrap_or_default();
            // Packet blocks: (interface, captured length, wire length, timestamp units,
            // offset of the packet bytes in the body).
            let packet = match ty {
                BT_EPB if body.len() >= 20 => Some((
                    word(0),
                    word(12),
                    word(16),
                    join64(word(4), word(8)),
                    20usize,
                )),
                BT_PB if body.len() >= 20 => {
                    let if_id = u16_at(body, 0, be).unwrap_or_default();
                    Some((
                        u32::from(if_id),
                        word(12),
                        word(16),
                        join64(word(4), word(8)),
                        20,
                    ))
                }
                BT_SPB if body.len() >= 4 => {
                    // No captured length: the wire length cut to the snapshot length.
                    let wire = word(0);
                    let snap = interfaces.first().map_or(MAX_RECORD, |i| i.snaplen);
                    Some((0, wire.min(snap), wire, 0, 4))
                }
                BT_EPB | BT_PB | BT_SPB => {
                    stop = Some(too_short(ty));
                    break;
                }
                BT_IDB => {
                    match parse_idb(body, be) {
                        Ok(iface) => {
                            *max_block = (*max_block).max(max_blocksize(iface.linktype));
                            if interfaces.len() < 65_536 {
                                interfaces.push(iface);
                            }
                        }
                        Err(r) => {
                            stop = Some(r);
                            break;
                        }
                    }
                    None
                }
                BT_SHB => {
                    let magic = u32_at(body, 0, be);
                    let major = u16_at(body, 4, be);
                    if body.len() < 16 {
                        stop = Some(too_short(ty));
                        break;
                    }
                    if magic != Some(BYTE_ORDER_MAGIC) {
                        stop =
                            Some("the file has a section with a bad byte order magic field".into());
                        break;
                    }
                    if major != Some(1) {
                        let major = major.unwrap_or_default();
                        stop = Some(format!(
                            "unknown pcapng savefile major version number {major}"
                        ));
                        break;
                    }
                    // A new section: its own byte order and interfaces.
                    *big_endian = be;
                    interfaces.clear();
                    None
                }
                _ => None,
            };
            let next = at.saturating_add(len);
            if let Some((if_id, caplen, wire, units, fixed)) = packet {
                let Some(iface) = interfaces.get(if_id as usize).copied() else {
                    stop = Some(format!(
                        "a packet arrived on interface {if_id}, but there's no Interface Description Block for that interface"
                    ));
                    break;
                };
                if caplen > iface.snaplen {
                    stop = Some(format!(
                        "invalid packet capture length {caplen}, bigger than snaplen of {}",
                        iface.snaplen
                    ));
                    break;
                }
                if body.len().saturating_sub(fixed) < caplen as usize {
                    stop = Some(too_short(ty));
                    break;
                }
                self.frames = self.frames.saturating_add(1);
                records.push(Record {
                    off: at.saturating_add(8).saturating_add(fixed) as u32,
                    caplen,
                    wire_len: wire.max(caplen),
                    linktype: iface.linktype,
                    ts: units_to_ns(units, iface.resolution, iface.offset_s),
                    frame: self.frames,
                    shard: Record::UNSHARDED,
                });
                self.resume = base.saturating_add(next as u64);
            }
            at = next;
        }
        (at, stop.map(|r| self.damage(r)))
    }
}

fn units_to_ns(units: u64, resolution: u64, offset_s: i64) -> Nanos {
    let ns = u128::from(units)
        .saturating_mul(1_000_000_000)
        .checked_div(u128::from(resolution))
        .unwrap_or_default();
    let ns = i64::try_from(ns).unwrap_or(i64::MAX);
    ns.saturating_add(offset_s.saturating_mul(1_000_000_000))
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

    /// A file holding `bytes`, in a directory of its own that goes (with the file)
    /// when the value is dropped.
    struct TempFile {
        path: String,
        _dir: tempfile::TempDir,
    }

    impl std::ops::Deref for TempFile {
        type Target = str;
        fn deref(&self) -> &str {
            &self.path
        }
    }

    impl AsRef<std::path::Path> for TempFile {
        fn as_ref(&self) -> &std::path::Path {
            self.path.as_ref()
        }
    }

    fn temp(name: &str, bytes: &[u8]) -> TempFile {
        let dir = tempfile::Builder::new()
            .prefix("mdmaudit-reader-")
            .tempdir()
            .unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        TempFile {
            path: p.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// Every record (and its bytes) of a file, and how reading ended: read through
    /// mapped windows and through read(2), which must agree.
    /// How a test reads a regular file.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Way {
        /// Mapped windows.
        Mapped,
        /// Blocks with pread(2), read ahead by another thread.
        Blocks,
        /// read(2) in order, as standard input and pipes are read.
        Sequential,
    }

    /// Every record (and its bytes) of a file, and how reading ended: read through
    /// mapped windows, in blocks read ahead by another thread, and with read(2) in
    /// order, which must agree.
    fn read_all(path: &str) -> (Vec<Record>, Vec<Vec<u8>>, Fill) {
        let mapped = read_with(path, Way::Mapped);
        // Offsets are within each reader's own chunks; the bytes are compared below.
        let unplaced = |rs: &[Record]| -> Vec<Record> {
            rs.iter().map(|r| Record { off: 0, ..*r }).collect()
        };
        for way in [Way::Blocks, Way::Sequential] {
            let other = read_with(path, way);
            assert_eq!(
                unplaced(&mapped.0),
                unplaced(&other.0),
                "records, mapped vs {way:?}"
            );
            assert!(mapped.1 == other.1, "bytes, mapped vs {way:?}");
            assert_eq!(mapped.2, other.2, "end, mapped vs {way:?}");
        }
        let _ = std::fs::remove_file(path);
        mapped
    }

    fn read_with(path: &str, way: Way) -> (Vec<Record>, Vec<Vec<u8>>, Fill) {
        let mut r = FileReader::open_with(path, 0, way == Way::Mapped).unwrap();
        assert_eq!(r.map_owner().is_some(), way == Way::Mapped);
        assert_eq!(r.read_ahead().is_some(), way != Way::Mapped);
        if way == Way::Sequential {
            // `input` stands where the header reading left it.
            r.blocks = None;
        }
        // Another thread reads blocks ahead while this one frames.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let helper = r.read_ahead().map(|ra| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !ra.prefetch() {
                        std::thread::yield_now();
                    }
                }
            })
        });
        let mut chunk = Chunk::default();
        let (mut recs, mut bytes) = (Vec::new(), Vec::new());
        let out = loop {
            let fill = r.fill(&mut chunk);
            for rec in &chunk.records {
                recs.push(*rec);
                bytes.push(chunk.bytes(rec).to_vec());
            }
            if fill != Fill::More {
                break (recs, bytes, fill);
            }
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = helper {
            h.join().unwrap();
        }
        out
    }

    fn pcap_header(snaplen: u32, linktype: u32) -> Vec<u8> {
        let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        h
    }

    fn pcap_record(i: u32, len: usize) -> Vec<u8> {
        let mut r = Vec::new();
        for w in [i, 0, len as u32, len as u32] {
            r.extend_from_slice(&w.to_le_bytes());
        }
        r.extend((0..len).map(|k| (i as usize + k) as u8));
        r
    }

    fn block(ty: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let mut b = ty.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn shb() -> Vec<u8> {
        let mut body = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        block(BT_SHB, &body)
    }

    fn idb(linktype: u16, snaplen: u32, opts: &[u8]) -> Vec<u8> {
        let mut body = linktype.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&snaplen.to_le_bytes());
        body.extend_from_slice(opts);
        block(BT_IDB, &body)
    }

    fn epb(if_id: u32, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for w in [if_id, 0, 7, data.len() as u32, data.len() as u32] {
            body.extend_from_slice(&w.to_le_bytes());
        }
        body.extend_from_slice(data);
        body.resize(body.len().next_multiple_of(4), 0);
        block(BT_EPB, &body)
    }

    #[test]
    fn records_across_chunk_boundaries_are_framed_whole() {
        let mut f = pcap_header(65_535, 1);
        let lens: Vec<usize> = (0..3000).map(|i| 60 + (i * 37) % 1400).collect();
        for (i, &len) in lens.iter().enumerate() {
            f.extend(pcap_record(i as u32, len));
        }
        assert!(f.len() > 2 * CHUNK_BYTES);
        let (recs, bytes, end) = read_all(&temp("straddle.pcap", &f));
        assert_eq!(end, Fill::End);
        assert_eq!(recs.len(), lens.len());
        for (i, (r, b)) in recs.iter().zip(&bytes).enumerate() {
            assert_eq!(r.frame, i as u64 + 1);
            assert_eq!(r.caplen as usize, lens[i]);
            assert_eq!(r.ts, i as i64 * 1_000_000_000);
            assert!(
                b.iter().enumerate().all(|(k, &x)| x == (i + k) as u8),
                "record {i}"
            );
        }
    }

    #[test]
    fn a_cut_far_into_a_file_is_reported_with_libpcaps_numbers() {
        let mut f = pcap_header(65_535, 1);
        let mut starts = Vec::new();
        for i in 0..1000u32 {
            starts.push(f.len());
            f.extend(pcap_record(i, 1200));
        }
        f.truncate(starts[999] + 16 + 500);
        let (recs, _, end) = read_all(&temp("cut.pcap", &f));
        assert_eq!(recs.len(), 999);
        let Fill::Damaged(d) = end else {
            panic!("{end:?}")
        };
        assert_eq!(d.offset, Some(starts[999] as u64));
        assert_eq!(d.packets_read, 999);
        assert_eq!(
            d.reason,
            "truncated dump file; tried to read 1200 captured bytes, only got 500"
        );
    }

    #[test]
    fn records_longer_than_the_snaplen_keep_snaplen_bytes() {
        let mut f = pcap_header(64, 1);
        f.extend(pcap_record(0, 100));
        f.extend(pcap_record(1, 50));
        let (recs, bytes, end) = read_all(&temp("snaplen.pcap", &f));
        assert_eq!(end, Fill::End);
        assert_eq!((recs[0].caplen, recs[0].wire_len), (64, 100));
        assert_eq!(bytes[1].len(), 50);
        assert_eq!(bytes[1][0], 1);
    }

    #[test]
    fn snapshot_lengths_are_adjusted_as_libpcap_does() {
        assert_eq!(adjust_snaplen(1, 0), MAX_RECORD);
        assert_eq!(adjust_snaplen(1, 0x8000_0000), MAX_RECORD);
        assert_eq!(adjust_snaplen(1, u32::MAX), MAX_RECORD);
        assert_eq!(adjust_snaplen(1, 300_000), 300_000);
        assert_eq!(adjust_snaplen(1, 64), 64);
        assert_eq!(adjust_snaplen(231, 0), 128 * 1024 * 1024);
    }

    #[test]
    fn a_pcapng_block_larger_than_a_chunk_is_skipped_whole() {
        let mut f = shb();
        f.extend(idb(1, 0, &[]));
        f.extend(epb(0, &[1; 60]));
        f.extend(block(0x0BAD, &vec![0; 3 * CHUNK_BYTES]));
        f.extend(epb(0, &[2; 61]));
        let (recs, bytes, end) = read_all(&temp("bigblock.pcapng", &f));
        assert_eq!(end, Fill::End);
        assert_eq!(recs.len(), 2);
        assert_eq!(bytes[1], vec![2; 61]);
        assert_eq!(recs[1].frame, 2);
    }

    #[test]
    fn records_and_blocks_across_mapped_windows_are_framed_whole() {
        // pcap: records of every length up to the maximum, over several windows.
        let mut f = pcap_header(262_144, 1);
        let mut lens = Vec::new();
        let mut i = 0u32;
        while f.len() < 2 * WINDOW_BYTES + CHUNK_BYTES {
            let len = match i % 50 {
                0 => 262_144,
                k => 40 + (k as usize * 997) % 9000,
            };
            lens.push(len);
            f.extend(pcap_record(i, len));
            i += 1;
        }
        let (recs, bytes, end) = read_all(&temp("windows.pcap", &f));
        assert_eq!(end, Fill::End);
        assert_eq!(recs.len(), lens.len());
        for (k, b) in bytes.iter().enumerate() {
            assert_eq!(b.len(), lens[k]);
            assert_eq!(b.first().copied(), Some(k as u8), "record {k}");
        }
        // pcapng: a block nearly as long as a window, lying across a window's end.
        let mut f = shb();
        f.extend(idb(1, 0, &[]));
        while f.len() < WINDOW_BYTES - CHUNK_BYTES / 2 {
            f.extend(epb(0, &[3; 1000]));
        }
        let before = (f.len() - 48) / epb(0, &[3; 1000]).len();
        f.extend(block(0x0BAD, &vec![0; WINDOW_BYTES - 4096]));
        f.extend(epb(0, &[4; 99]));
        let (recs, bytes, end) = read_all(&temp("windows.pcapng", &f));
        assert_eq!(end, Fill::End);
        assert_eq!(recs.len(), before + 1);
        assert_eq!(bytes.last(), Some(&vec![4; 99]));
    }

    #[test]
    fn a_file_that_shrinks_under_its_mapping_is_damage_not_a_crash() {
        let mut f = pcap_header(65_535, 1);
        let mut n = 0u32;
        while f.len() < 6 * CHUNK_BYTES {
            f.extend(pcap_record(n, 1000));
            n += 1;
        }
        let path = temp("shrinks.pcap", &f);
        let mut r = FileReader::open(&path, 0).unwrap();
        let mut chunk = Chunk::default();
        assert_eq!(r.fill(&mut chunk), Fill::More);
        let mut seen = chunk.records.len();
        // The window now maps the whole file; another program cuts it to 2 MiB.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2 * CHUNK_BYTES as u64)
            .unwrap();
        let end = loop {
            let fill = r.fill(&mut chunk);
            for rec in &chunk.records {
                // What is kept is what the file held.
                assert_eq!(chunk.bytes(rec).first().copied(), Some(seen as u8));
                seen += 1;
            }
            if fill != Fill::More {
                break fill;
            }
        };
        let _ = std::fs::remove_file(&path);
        let Fill::Damaged(d) = end else {
            panic!("not reported: {end:?}");
        };
        assert!(d.reason.contains("changed while it was read"), "{}", d.reason);
        assert!(d.reason.contains("now has 2097152 bytes"), "{}", d.reason);
        let at = d.offset.unwrap();
        assert!(at >= 2 * CHUNK_BYTES as u64 && at < 3 * CHUNK_BYTES as u64, "{at}");
        // Every record wholly before the cut was read, none after it.
        let whole = (2 * CHUNK_BYTES - 24) / 1016;
        assert!(seen >= whole - 4 && seen <= whole, "{seen} of {whole}");
        assert_eq!(d.packets_read, seen as u64);
    }

    #[test]
    fn a_page_lost_under_another_thread_is_recorded_for_the_owner() {
        let path = temp("lost-page.bin", &vec![7u8; 4 * 4096]);
        let file = std::fs::File::open(&path).unwrap();
        let owner = mapped::new_owner();
        let w = Arc::new(Window::map(&file, 0, 4 * 4096, owner).unwrap());
        assert_eq!(mapped::first_fault(owner), None);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let w2 = Arc::clone(&w);
        let seen = std::thread::spawn(move || w2.bytes()[3 * 4096 + 5])
            .join()
            .unwrap();
        assert_eq!(seen, 0);
        assert_eq!(w.bytes()[5], 7);
        assert_eq!(mapped::first_fault(owner), Some(4096 * 3));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn pcapng_damage_is_reported_after_the_last_packet() {
        let mut f = shb();
        f.extend(idb(1, 0, &[]));
        f.extend(epb(0, &[1; 60]));
        let after = f.len() as u64;
        f.extend(block(0x0BAD, &[0; 8]));
        f.extend_from_slice(&epb(0, &[2; 60])[..30]);
        let (recs, _, end) = read_all(&temp("ngcut.pcapng", &f));
        assert_eq!(recs.len(), 1);
        let Fill::Damaged(d) = end else {
            panic!("{end:?}")
        };
        assert_eq!(d.offset, Some(after));
        assert_eq!(
            d.reason,
            "truncated pcapng dump file; tried to read 84 bytes, only got 22"
        );
    }

    #[test]
    fn interfaces_of_several_link_types_and_timestamp_options() {
        // if_tsresol 10^-9 and if_tsoffset 5 s on the second interface.
        let mut opts = vec![9, 0, 1, 0, 9, 0, 0, 0, 14, 0, 8, 0];
        opts.extend_from_slice(&5i64.to_le_bytes());
        opts.extend_from_slice(&[0, 0, 0, 0]);
        let mut f = shb();
        f.extend(idb(1, 0, &[]));
        f.extend(idb(101, 0, &opts));
        f.extend(epb(1, &[0x45; 20]));
        f.extend(epb(0, &[0; 14]));
        let path = temp("ifaces.pcapng", &f);
        assert_eq!(FileReader::open(&path, 0).unwrap().linktype(), Some(1));
        let (recs, _, end) = read_all(&path);
        assert_eq!(end, Fill::End);
        assert_eq!((recs[0].linktype, recs[0].ts), (101, 5_000_000_007));
        assert_eq!((recs[1].linktype, recs[1].ts), (1, 7_000));
    }

    #[test]
    fn interface_options_are_checked_as_libpcap_does() {
        let bad = |opts: &[u8]| {
            let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0];
            body.extend_from_slice(opts);
            parse_idb(&body, false).err().unwrap_or_default()
        };
        assert_eq!(
            bad(&[9, 0, 2, 0, 6, 6, 0, 0]),
            "Interface Description Block has if_tsresol option with length 2 != 1"
        );
        assert_eq!(
            bad(&[9, 0, 1, 0, 32, 0, 0, 0]),
            "Interface Description Block if_tsresol option resolution 10^-32 is too high"
        );
        assert_eq!(
            bad(&[9, 0, 1, 0, 0xc0, 0, 0, 0]),
            "Interface Description Block if_tsresol option resolution 2^-64 is too high"
        );
        assert_eq!(
            bad(&[0, 0, 4, 0, 1, 2, 3, 4]),
            "Interface Description Block has opt_endofopt option with length 4 != 0"
        );
        assert_eq!(
            bad(&[2, 0, 64, 0, 1, 2, 3, 4]),
            "block of type 1 in pcapng dump file is too short"
        );
        assert_eq!(
            bad(&[2, 0]),
            "block of type 1 in pcapng dump file is too short"
        );
        assert_eq!(
            bad(&[0, 0, 0, 0, 2, 0, 64, 0]),
            "",
            "nothing is read after opt_endofopt"
        );
        assert_eq!(
            parse_idb(&[1, 0, 0, 0], false).err().unwrap_or_default(),
            "block of type 1 in pcapng dump file is too short"
        );
        let i = parse_idb(&[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 0, 0x8a, 0, 0, 0], false).unwrap();
        assert_eq!((i.resolution, i.snaplen), (1024, MAX_RECORD));
    }
}
