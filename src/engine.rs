//! The offline run: inputs read in order, chunk by chunk; each frame decoded and
//! handed to the flow table shard that owns its flow; every frame and every problem
//! counted.
//!
//! Threads (SPEC section 8): `threads` workers each own a shard of the flow table
//! (a symmetric hash of the addresses and ports, `flow::sym_hash`, so both
//! directions of a flow meet in one shard). There is no reader thread: the inputs
//! are cut into chunks of about a thousand frames, and a worker that finds fewer than
//! a few chunks framed ahead of it frames the next one itself (one worker at a time,
//! in file order), marking each frame with the worker that owns its flow. Framing
//! thus goes to whichever worker is ahead, and the threads never outnumber the cores
//! asked for (a reader thread beside two workers was slower on two cores). Every
//! worker walks every chunk in file order, keeps the packet clock from all frames and
//! decodes only its own; DNS answers are learned by all workers, so names do not
//! depend on the number of threads. A worker more than a ring's depth of chunks
//! ahead of the slowest waits for it (back-pressure, nothing dropped). The calling
//! thread is worker 0; with `threads == 1` it is the only one.
//! A chunk owns the bytes read for it (about 1 MiB, recycled from chunk to chunk).
//! A regular file is read in fixed 1 MiB blocks with pread(2) ([`crate::readahead`]):
//! a block's offset does not depend on framing, so the workers copy blocks out of
//! the page cache ahead of the framer, when they are about to walk a chunk or would
//! wait, and that copy (the largest single cost of a run) is shared out instead of
//! falling to the framer. Standard input and pipes are read with read(2) by the
//! framer. With `--reader mapped` a chunk of a regular file is instead a stretch of a
//! mapped window of the file ([`crate::mapped`]), holding the window, not a copy. On the
//! 2-core VMs measured (2026-12-05) the copy was the cheaper of the two: the kernel's
//! page-table work for the mapping cost more than read(2)'s copy, and the bytes
//! read are still in cache when the workers decode them.
//!
//! This module owns the counters a reader needs to trust a report ("nothing is lost
//! silently"). It does not judge flows (`audit`) nor format anything (`report`).

use crate::budget::RecordBudget;
use crate::capture::{linktype_name, Damage, FileSource, OpenError, PacketSource};
use crate::decode::{self, linktype, Skip};
use crate::flow::{self, FlowConfig, FlowRecord, FlowStats, FlowTable, FrameRef, PacketCtx};
use crate::model::Nanos;
use crate::readahead::ReadAhead;
use crate::reader::{Chunk, FileReader, Fill, Record, CHUNK_BYTES};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-input summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputSummary {
    pub file: String,
    pub linktype: u32,
    pub linktype_name: String,
    pub linktype_supported: bool,
    pub packets: u64,
    pub bytes: u64,
    /// Set when reading stopped part-way.
    pub damage: Option<Damage>,
}

/// Counters over all inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CaptureStats {
    pub packets: u64,
    /// Bytes on the wire (pcap `len`).
    pub bytes: u64,
    /// Bytes present in the capture (pcap `caplen`).
    pub captured_bytes: u64,
    /// Frames decoded to a TCP/UDP segment or a quoting ICMP error.
    pub decoded: u64,
    /// Frames not decoded, by reason (see `decode::Skip`).
    pub not_decoded: BTreeMap<String, u64>,
    /// Frames whose captured length is shorter than their length on the wire.
    pub truncated_by_snaplen: u64,
    /// TCP segments whose payload the snaplen cut.
    pub tcp_payload_truncated: u64,
    /// First fragments of fragmented IP packets (later fragments are in `not_decoded`).
    pub ip_first_fragments: u64,
    /// Frames reached through a tunnel (IP-in-IP, GRE, GTP-U, CAPWAP).
    pub tunnelled: u64,
    /// Frames of link types we do not decode, by link type number.
    pub unsupported_link_types: BTreeMap<u32, u64>,
    pub first_ts: Option<Nanos>,
    pub last_ts: Option<Nanos>,
    /// Live capture only: libpcap's and the pipeline's own drop counters (absent
    /// from reports of capture files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveCounters>,
}

/// Drop accounting of a live capture (SPEC section 7).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveCounters {
    /// One entry per interface, in command-line order.
    pub interfaces: Vec<InterfaceCounters>,
    /// Finished flow records dropped from the report because the live run keeps at
    /// most `--max-records` of them (the oldest go first).
    pub records_dropped: u64,
    /// Intervals (status periods) in which any packet was dropped.
    pub intervals_with_drops: u64,
}

/// Counters of one live interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InterfaceCounters {
    pub name: String,
    /// libpcap `ps_recv`: packets the kernel handed to the capture.
    pub received: u64,
    /// libpcap `ps_drop`: packets dropped because the capture buffer was full.
    pub dropped: u64,
    /// libpcap `ps_ifdrop`: packets dropped by the interface or its driver.
    pub if_dropped: u64,
    /// Packets the capture thread had to drop because the pipeline queue was full
    /// (a live reader never stalls libpcap).
    pub queue_dropped: u64,
    /// Packets handed to the pipeline.
    pub delivered: u64,
}

/// What an offline run produced, before the audit.
#[derive(Debug)]
pub struct RunResult {
    pub inputs: Vec<InputSummary>,
    pub capture: CaptureStats,
    pub flow_stats: FlowStats,
    /// The flow records, in the workers' segments (the audit orders them by first
    /// frame: [`crate::audit::audit_parts`]); not copied into one vector, which cost
    /// the serial end of a run about 10 ms per 100,000 flows.
    pub record_parts: Vec<Vec<FlowRecord>>,
    /// Finished flows counted but not kept (over `--max-records`).
    pub summarized: RecordBudget,
}

impl RunResult {
    /// Take the flow records as one vector (the parts one after the other).
    pub fn take_records(&mut self) -> Vec<FlowRecord> {
        let mut parts = std::mem::take(&mut self.record_parts).into_iter();
        let mut all = parts.next().unwrap_or_default();
        for mut p in parts {
            all.append(&mut p);
        }
        all
    }

    /// Whether every input was read to its end.
    pub fn complete(&self) -> bool {
        self.inputs.iter().all(|i| i.damage.is_none())
    }
}

/// How capture files are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderKind {
    /// Our chunked pcap/pcapng reader (the default for files), copying the input:
    /// a regular file in blocks with pread(2) that any worker may read ahead
    /// ([`crate::readahead`]), other inputs with read(2).
    Fast,
    /// Our reader, regular files through mapped windows (other inputs through
    /// read(2)).
    Mapped,
    /// libpcap's `pcap_next_ex`, one packet at a time.
    Libpcap,
}

/// An opened input.
pub enum Input {
    Fast(FileReader),
    Libpcap { src: FileSource, index: u32 },
}

impl Input {
    /// Open `path` (`-` for stdin) as input number `index`.
    pub fn open(path: &str, index: u32, kind: ReaderKind) -> Result<Input, OpenError> {
        match kind {
            ReaderKind::Fast => FileReader::open_with(path, index, false).map(Input::Fast),
            ReaderKind::Mapped => FileReader::open(path, index).map(Input::Fast),
            ReaderKind::Libpcap => FileSource::open(path).map(|src| Input::Libpcap { src, index }),
        }
    }

    fn name(&self) -> &str {
        match self {
            Input::Fast(r) => r.name(),
            Input::Libpcap { src, .. } => src.name(),
        }
    }

    /// The owner id of the input's mapped windows ([`crate::mapped`]), if any.
    fn map_owner(&self) -> Option<u64> {
        match self {
            Input::Fast(r) => r.map_owner(),
            Input::Libpcap { .. } => None,
        }
    }

    /// The blocks of the input that any worker may read ahead, if it is read so.
    fn read_ahead(&self) -> Option<Arc<ReadAhead>> {
        match self {
            Input::Fast(r) => r.read_ahead(),
            Input::Libpcap { .. } => None,
        }
    }

    fn linktype(&self) -> Option<u32> {
        match self {
            Input::Fast(r) => r.linktype(),
            Input::Libpcap { src, .. } => Some(src.linktype()),
        }
    }

    fn fill(&mut self, chunk: &mut Chunk, frames: &mut u64) -> Fill {
        match self {
            Input::Fast(r) => r.fill(chunk),
            Input::Libpcap { src, index } => {
                chunk.reset(*index);
                let lt = src.linktype();
                while chunk.data.len() < CHUNK_BYTES {
                    match src.next_packet() {
                        Ok(Some(p)) => {
                            *frames += 1;
                            let off = chunk.data.len() as u32;
                            chunk.data.extend_from_slice(p.data);
                            chunk.records.push(Record {
                                off,
                                caplen: p.data.len() as u32,
                                wire_len: p.wire_len,
                                linktype: lt,
                                ts: p.ts,
                                frame: *frames,
                                shard: Record::UNSHARDED,
                            });
                        }
                        Ok(None) => return Fill::End,
                        Err(d) => return Fill::Damaged(d),
                    }
                }
                Fill::More
            }
        }
    }
}

/// Run parameters.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub flow: FlowConfig,
    /// Worker threads (1: everything on the calling thread).
    pub threads: usize,
    /// Finished flow records kept in full (shared out between the workers); see
    /// [`RecordBudget`].
    pub max_records: usize,
    /// Offline runs: pin each worker to a CPU of its own while reading, when the
    /// workers are as many as the CPUs ([`crate::threads::pin_worker`]).
    pub pin: bool,
}

/// Progress callback: (input index, frames read so far in it).
pub type Progress<'a> = &'a mut dyn FnMut(usize, u64);

/// Decodes frames and keeps the flows of one shard.
struct Worker {
    index: usize,
    shards: usize,
    table: FlowTable,
    /// Records finished since the last full segment ([`RECORD_SEGMENT`]).
    records: Vec<FlowRecord>,
    /// Full segments of records, in the order they finished, and how many they hold.
    /// Records are kept in segments rather than one growing vector: doubling a vector
    /// of tens of thousands of records copied it every time into fresh memory
    /// (reserving the whole vector up front made the packets phase of the main
    /// capture about 5% faster, but needs the size in advance; segments do not).
    sealed: Vec<Vec<FlowRecord>>,
    sealed_len: usize,
    budget: RecordBudget,
    skipped: [u64; Skip::ALL.len()],
    unsupported: BTreeMap<u32, u64>,
    decoded: u64,
    tcp_payload_truncated: u64,
    ip_first_fragments: u64,
    tunnelled: u64,
}

impl Worker {
    fn new(index: usize, shards: usize, cfg: FlowConfig, max_records: usize) -> Worker {
        Worker {
            index,
            shards,
            table: FlowTable::new(cfg),
            records: new_segment(),
            sealed: Vec::new(),
            sealed_len: 0,
            budget: RecordBudget::new(max_records),
            skipped: [0; Skip::ALL.len()],
            unsupported: BTreeMap::new(),
            decoded: 0,
            tcp_payload_truncated: 0,
            ip_first_fragments: 0,
            tunnelled: 0,
        }
    }

    fn chunk(&mut self, chunk: &Chunk) {
        let from = self.records.len();
        self.chunk_frames(chunk);
        self.budget
            .apply_after(&mut self.records, from, self.sealed_len);
        if self.records.len().saturating_add(SEGMENT_HEADROOM) > RECORD_SEGMENT {
            self.seal();
        }
    }

    /// Put the current records aside as a full segment and start the next one.
    fn seal(&mut self) {
        let full = std::mem::replace(&mut self.records, new_segment());
        self.sealed_len = self.sealed_len.saturating_add(full.len());
        self.sealed.push(full);
    }

    /// Whether records have finished since they were last taken.
    fn has_records(&self) -> bool {
        !self.records.is_empty() || !self.sealed.is_empty()
    }

    /// The records finished since they were last taken, in order (live runs take
    /// them after every chunk).
    fn take_records(&mut self) -> Vec<FlowRecord> {
        let mut all = std::mem::take(&mut self.records);
        if !self.sealed.is_empty() {
            let mut joined: Vec<FlowRecord> = self.sealed.drain(..).flatten().collect();
            joined.append(&mut all);
            all = joined;
        }
        self.sealed_len = 0;
        all
    }

    fn chunk_frames(&mut self, chunk: &Chunk) {
        let buf = chunk.buf();
        for (i, r) in chunk.records.iter().enumerate() {
            // The headers of a frame a few ahead: the reader last touched them on
            // another core, and the wait for them was most of decoding's cost.
            if let Some(ahead) = chunk.records.get(i.wrapping_add(PREFETCH_AHEAD)) {
                crate::prefetch::prefetch(buf.get(ahead.off as usize..));
            }
            // Every worker keeps the capture's clock, so flows expire at the same
            // packet time whatever the number of shards.
            self.table.advance(r.ts, &mut self.records);
            // Frames the reader already assigned to another worker are skipped
            // without decoding them a second time.
            let own = match r.shard {
                Record::UNSHARDED | Record::ALL_SHARDS => None,
                Record::NO_FLOW if self.index == 0 => None,
                Record::NO_FLOW => continue,
                s if usize::from(s) == self.index => Some(true),
                _ => continue,
            };
            let bytes = r.bytes_in(buf);
            // Matched by reference: moving the decoded frame out of the result
            // copied it once more, right after the decoder's own stores.
            let decoded = decode::decode(r.linktype, bytes);
            let d = match &decoded {
                Ok(d) => d,
                Err(s) => {
                    let s = *s;
                    // A frame without a flow is counted once: by the worker the reader
                    // gave it to, or else by the first worker.
                    if own == Some(true) || (own.is_none() && self.index == 0) {
                        self.skipped[s.index()] += 1;
                        if s == Skip::UnsupportedLinkType {
                            *self.unsupported.entry(r.linktype).or_default() += 1;
                        }
                    }
                    continue;
                }
            };
            let ctx = PacketCtx {
                ts: r.ts,
                frame: FrameRef {
                    file: chunk.file,
                    frame: r.frame,
                },
                wire_len: r.wire_len,
            };
            let mine =
                own.unwrap_or_else(|| self.shards == 1 || shard_of(d, self.shards) == self.index);
            if !mine {
                if FlowTable::may_be_dns_response(d) {
                    self.table.observe_dns(&ctx, d);
                }
                continue;
            }
            self.decoded += 1;
            if d.fragment {
                self.ip_first_fragments += 1;
            }
            if d.tunnels > 0 {
                self.tunnelled += 1;
            }
            if let decode::L4::Tcp(t) = &d.l4 {
                if t.truncated() {
                    self.tcp_payload_truncated += 1;
                }
            }
            self.table.process(&ctx, d, &mut self.records);
        }
    }

    fn finish(mut self) -> Worker {
        // A part at a time, so that the open flows of a full table do not all become
        // records before the budget sees them.
        loop {
            // Each part fits in the segment (see `SEGMENT_HEADROOM`).
            if self.records.len() >= RECORD_SEGMENT {
                self.seal();
            }
            let from = self.records.len();
            let room = RECORD_SEGMENT.saturating_sub(from).clamp(1, 65_536);
            let done = self.table.finish_some(room, &mut self.records);
            self.budget
                .apply_after(&mut self.records, from, self.sealed_len);
            if done {
                break;
            }
        }
        self.budget.finish(&mut self.records);
        self.table.release();
        self
    }
}

/// Frames ahead of the current one whose headers a worker asks the cache for.
const PREFETCH_AHEAD: usize = 8;

/// Records per segment of a worker's records (about 3.8 MB).
const RECORD_SEGMENT: usize = 16_384;

/// Room a segment keeps for the records of one more chunk: a segment is sealed once
/// less is left. A segment that outgrew its reserved size was copied into a vector
/// twice as large, most of it fresh memory (a sweep for idle flows finishes many
/// at once): in the main bench capture, a tenth of the packets phase's page faults
/// and a copy of each segment. A chunk that finishes more still only grows one.
const SEGMENT_HEADROOM: usize = 2_048;

/// An empty segment of records, its memory reserved (pages are touched as records
/// arrive). Not with transparent huge pages: on the VMs measured, asking for them
/// made whole runs slower and far more variable (benches/README.md).
fn new_segment() -> Vec<FlowRecord> {
    Vec::with_capacity(RECORD_SEGMENT)
}

/// The worker that owns a decoded frame's flow.
fn shard_of(d: &decode::Decoded<'_>, shards: usize) -> usize {
    flow::shard_index(flow::shard_hash(d), shards)
}

/// The reader's share of the work with several workers: tell which worker owns each
/// frame (from its headers for the common frames, else by decoding it), so that the
/// others skip it without decoding. DNS answers go to every worker; frames without
/// a flow to the one the quick look chose, or else to the first, which count them.
/// Our pcap reader already gave most frames their worker as it framed them
/// ([`FileReader::set_shards`]); those are left as they are.
fn assign_shards(chunk: &mut Chunk, shards: usize) {
    let (data, records) = chunk.split();
    for r in records.iter_mut().filter(|r| r.shard == Record::UNSHARDED) {
        let bytes = r.bytes_in(data);
        // Most frames: a look at the headers; the others are decoded.
        r.shard = match flow::quick_shard(r.linktype, bytes, shards) {
            Some(s) => s as u16,
            None => match decode::decode(r.linktype, bytes) {
                Ok(d) if FlowTable::may_be_dns_response(&d) => Record::ALL_SHARDS,
                Ok(d) => shard_of(&d, shards) as u16,
                Err(_) => Record::NO_FLOW,
            },
        };
    }
}

/// Counts what the reader sees of every frame.
fn account(cap: &mut CaptureStats, summary: &mut InputSummary, chunk: &Chunk) {
    for r in chunk.records.iter() {
        summary.packets += 1;
        summary.bytes += u64::from(r.wire_len);
        cap.packets += 1;
        cap.bytes += u64::from(r.wire_len);
        cap.captured_bytes += u64::from(r.caplen);
        if r.caplen < r.wire_len {
            cap.truncated_by_snaplen += 1;
        }
        cap.first_ts = Some(cap.first_ts.map_or(r.ts, |t| t.min(r.ts)));
        cap.last_ts = Some(cap.last_ts.map_or(r.ts, |t| t.max(r.ts)));
    }
}

/// Read every input in order; flows continue across files.
pub fn run(inputs: Vec<Input>, cfg: EngineConfig, progress: Option<Progress<'_>>) -> RunResult {
    let threads = cfg.threads.max(1);
    let owners: Vec<Option<u64>> = inputs.iter().map(Input::map_owner).collect();
    let (workers, cap, mut summaries) = run_workers(inputs, &cfg, threads, progress);
    late_faults(&mut summaries, &owners);
    merge(workers, cap, summaries)
}

/// The reading side of an offline run: the inputs in order, the one being read, and
/// what the reader counted of them. Whichever worker frames the next chunk holds it.
struct Feed {
    inputs: std::vec::IntoIter<Input>,
    /// The input being read, its summary so far and its frames read.
    current: Option<(Input, InputSummary, u64)>,
    cap: CaptureStats,
    summaries: Vec<InputSummary>,
    shards: usize,
}

impl Feed {
    /// Fill `chunk` with the next records of the inputs (never an empty chunk);
    /// false once every input has ended.
    fn next(&mut self, chunk: &mut Chunk) -> bool {
        loop {
            let Some((input, summary, frames)) = self.current.as_mut() else {
                let Some(input) = self.inputs.next() else {
                    return false;
                };
                let summary = new_summary(&input);
                self.current = Some((input, summary, 0));
                continue;
            };
            let fill = input.fill(chunk, frames);
            account(&mut self.cap, summary, chunk);
            let ended = match fill {
                Fill::More => false,
                Fill::End => true,
                Fill::Damaged(d) => {
                    summary.damage = Some(d);
                    true
                }
            };
            if ended {
                if let Some((_, summary, _)) = self.current.take() {
                    self.summaries.push(summary);
                }
            }
            if !chunk.records.is_empty() {
                if self.shards > 1 {
                    assign_shards(chunk, self.shards);
                }
                return true;
            }
        }
    }
}

/// Chunks framed and not yet passed by every worker, shared by the workers of an
/// offline run. There is no reader thread: a worker that finds too few chunks ahead
/// of it frames the next one itself (one at a time, in file order), so the framing
/// goes to whichever worker is ahead and the threads are never more than the cores
/// asked for. Every worker then walks every chunk in order (see [`Worker::chunk`]).
struct Ring {
    /// Published chunks, the oldest first; `first` is the number of the oldest.
    chunks: std::collections::VecDeque<Arc<Chunk>>,
    first: u64,
    /// Per worker: the number of the next chunk it will walk.
    pos: Vec<u64>,
    /// A worker is framing a chunk now.
    framing: bool,
    /// Every input has ended (no chunk will be published any more).
    ended: bool,
    /// A worker died (a bug: input cannot make one panic); the others stop.
    failed: bool,
    /// Workers waiting on the condition variable.
    waiting: usize,
    /// Retired chunks, kept for their buffers' capacity.
    spare: Vec<Chunk>,
    /// The blocks of the input being framed, which the workers read ahead of the
    /// framer when they have a moment ([`ReadAhead::prefetch`]).
    read_ahead: Option<Arc<ReadAhead>>,
}

impl Ring {
    fn end(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    fn slowest(&self) -> u64 {
        self.pos.iter().copied().min().unwrap_or(0)
    }
}

/// Test hook: with `MDMAUDIT_TEST_READ_AHEAD_PAUSE_MS` set, a worker that read ahead
/// because it had nothing to walk pauses that long before it looks at the ring
/// again, which lets the other workers post chunks and the end meanwhile
/// (tests/robustness.rs checks that no worker then waits for ever).
fn read_ahead_pause() -> Option<std::time::Duration> {
    static PAUSE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("MDMAUDIT_TEST_READ_AHEAD_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis)
    })
}

/// Chunks a worker frames ahead of the one it walks next.
const FRAME_AHEAD: u64 = 3;

/// Marks the ring failed if a worker thread unwinds, so that the others do not wait
/// for it for ever.
struct FailGuard<'a> {
    ring: &'a std::sync::Mutex<Ring>,
    cv: &'a std::sync::Condvar,
}

impl Drop for FailGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut g = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            g.failed = true;
            drop(g);
            self.cv.notify_all();
        }
    }
}

/// Run `threads` workers over the inputs: the calling thread is worker 0 (and the
/// only one with `threads == 1`); the others are scoped threads.
fn run_workers(
    mut inputs: Vec<Input>,
    cfg: &EngineConfig,
    threads: usize,
    mut progress: Option<Progress<'_>>,
) -> (Vec<Worker>, CaptureStats, Vec<InputSummary>) {
    if threads > 1 {
        for input in inputs.iter_mut() {
            if let Input::Fast(r) = input {
                r.set_shards(threads);
            }
        }
    }
    let feed = std::sync::Mutex::new(Feed {
        inputs: inputs.into_iter(),
        current: None,
        cap: CaptureStats::default(),
        summaries: Vec::new(),
        shards: threads,
    });
    let ring = std::sync::Mutex::new(Ring {
        chunks: std::collections::VecDeque::new(),
        first: 0,
        pos: vec![0; threads],
        framing: false,
        ended: false,
        failed: false,
        waiting: 0,
        spare: Vec::new(),
        read_ahead: None,
    });
    let cv = std::sync::Condvar::new();
    let depth = (threads * CHANNEL_CHUNKS + 2) as u64;
    let ahead = if threads == 1 { 1 } else { FRAME_AHEAD };
    let new_worker = |i: usize| {
        let mut fcfg = cfg.flow.clone();
        if threads > 1 {
            // The flow cap is shared out between the shards.
            fcfg.max_flows = (fcfg.max_flows / threads).max(1);
            fcfg.max_hello_bytes /= threads;
            fcfg.max_dns_entries = fcfg.max_dns_entries.max(1);
        }
        Worker::new(i, threads, fcfg, (cfg.max_records / threads).max(1))
    };
    let drive = |me: usize, w: &mut Worker, progress: &mut Option<Progress<'_>>| {
        let lock = || ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut want = 0u64;
        // A read-ahead found nothing to read since this worker last waited.
        let mut read_nothing = false;
        let mut g = lock();
        loop {
            if g.failed {
                break;
            }
            let end = g.end();
            if !g.framing && !g.ended && end < want + ahead && end < g.slowest() + depth {
                g.framing = true;
                let mut chunk = g.spare.pop().unwrap_or_default();
                drop(g);
                let (more, read_ahead) = {
                    let mut f = feed.lock().unwrap_or_else(|e| e.into_inner());
                    let more = f.next(&mut chunk);
                    let ra = match &f.current {
                        Some((input, _, _)) if threads > 1 => input.read_ahead(),
                        _ => None,
                    };
                    (more, ra)
                };
                g = lock();
                g.framing = false;
                g.read_ahead = read_ahead;
                if more {
                    g.chunks.push_back(Arc::new(chunk));
                } else {
                    g.ended = true;
                }
                if g.waiting > 0 {
                    cv.notify_all();
                }
                continue;
            }
            if want < end {
                let Some(c) = g.chunks.get((want - g.first) as usize).map(Arc::clone) else {
                    break;
                };
                let ra = g.read_ahead.clone();
                drop(g);
                // Copy a block of the file for the framer first (at most one: the
                // walk should not wait long for it).
                if let Some(ra) = ra {
                    ra.prefetch();
                }
                w.chunk(&c);
                if let Some(p) = progress.as_mut() {
                    p(c.file as usize, c.records.last().map_or(0, |r| r.frame));
                }
                drop(c);
                g = lock();
                want += 1;
                if let Some(p) = g.pos.get_mut(me) {
                    *p = want;
                }
                // Retire the chunks every worker has walked.
                let slowest = g.slowest();
                let mut retired = false;
                while g.first < slowest {
                    let Some(arc) = g.chunks.pop_front() else {
                        break;
                    };
                    g.first += 1;
                    retired = true;
                    if let Ok(mut c) = Arc::try_unwrap(arc) {
                        c.recycle(0);
                        g.spare.push(c);
                    }
                }
                if retired && g.waiting > 0 {
                    cv.notify_all();
                }
                continue;
            }
            if g.ended {
                break;
            }
            // Nothing to walk and another worker frames: read ahead for it. The lock
            // is let go meanwhile, so whatever the read-ahead did, everything is
            // checked again before waiting: a worker that waited straight after an
            // empty read-ahead could miss the last chunk or the end being posted
            // while it read (nobody waited then, so nobody was woken), and wait
            // for ever.
            if !read_nothing {
                if let Some(ra) = g.read_ahead.clone() {
                    drop(g);
                    read_nothing = !ra.prefetch();
                    if let Some(pause) = read_ahead_pause() {
                        std::thread::sleep(pause);
                    }
                    g = lock();
                    continue;
                }
            }
            read_nothing = false;
            g.waiting += 1;
            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            g.waiting -= 1;
        }
    };
    let mut workers = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|i| {
                let (drive, new_worker, ring, cv) = (&drive, &new_worker, &ring, &cv);
                crate::threads::spawn_scoped(s, format!("mdmaudit-worker-{i}"), move || {
                    let _guard = FailGuard { ring, cv };
                    let pin = cfg.pin.then(|| crate::threads::pin_worker(i, threads));
                    let mut w = new_worker(i);
                    drive(i, &mut w, &mut None);
                    let w = w.finish();
                    drop(pin);
                    w
                })
                .expect("spawn a worker thread")
            })
            .collect();
        // Pinned while reading only: helpers spawned later (the audit's, the report's)
        // inherit this thread's affinity.
        let pin = cfg.pin.then(|| crate::threads::pin_worker(0, threads));
        let mut w0 = new_worker(0);
        {
            let _guard = FailGuard {
                ring: &ring,
                cv: &cv,
            };
            drive(0, &mut w0, &mut progress);
        }
        drop(pin);
        let mut all = vec![w0.finish()];
        all.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread")),
        );
        all
    });
    workers.sort_by_key(|w| w.index);
    let feed = feed.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut summaries = feed.summaries;
    if let Some((_, summary, _)) = feed.current {
        // Reading stopped early (a worker died): what was read is still reported.
        summaries.push(summary);
    }
    (workers, feed.cap, summaries)
}

/// A page of a mapped input that went missing under a worker only (after the reader
/// had framed it: the file shrank late in the run) is damage too.
fn late_faults(summaries: &mut [InputSummary], owners: &[Option<u64>]) {
    for (s, owner) in summaries.iter_mut().zip(owners) {
        let Some(at) = owner.and_then(crate::mapped::first_fault) else {
            continue;
        };
        if s.damage.is_none() {
            let now = std::fs::metadata(&s.file).map_or(0, |m| m.len());
            s.damage = Some(Damage {
                file: s.file.clone(),
                offset: Some(at),
                packets_read: s.packets,
                reason: crate::mapped::changed_reason(at, now),
            });
        }
    }
}

/// Sum the workers' counters into `cap` and collect their records.
fn merge(workers: Vec<Worker>, mut cap: CaptureStats, summaries: Vec<InputSummary>) -> RunResult {
    let mut skipped = [0u64; Skip::ALL.len()];
    let mut flow_stats = FlowStats::default();
    let mut record_parts = Vec::with_capacity(workers.len());
    let mut summarized = RecordBudget::new(1);
    for w in workers {
        for (i, n) in w.skipped.iter().enumerate() {
            skipped[i] += n;
        }
        for (lt, n) in w.unsupported {
            *cap.unsupported_link_types.entry(lt).or_default() += n;
        }
        cap.decoded += w.decoded;
        cap.tcp_payload_truncated += w.tcp_payload_truncated;
        cap.ip_first_fragments += w.ip_first_fragments;
        cap.tunnelled += w.tunnelled;
        flow_stats.add(w.table.stats());
        record_parts.extend(w.sealed);
        record_parts.push(w.records);
        summarized.merge(w.budget);
    }
    for s in Skip::ALL {
        cap.not_decoded
            .insert(s.as_str().to_string(), skipped[s.index()]);
    }
    RunResult {
        inputs: summaries,
        capture: cap,
        flow_stats,
        record_parts,
        summarized,
    }
}

fn new_summary(input: &Input) -> InputSummary {
    let lt = input.linktype().unwrap_or(u32::MAX);
    InputSummary {
        file: input.name().to_string(),
        linktype: lt,
        linktype_name: if lt == u32::MAX {
            "none".to_string()
        } else {
            linktype_name(lt)
        },
        linktype_supported: linktype::is_supported(lt),
        packets: 0,
        bytes: 0,
        damage: None,
    }
}

/// Chunks in flight per worker before the reader blocks.
const CHANNEL_CHUNKS: usize = 4;

/// A message to a worker of a [`Pipeline`].
enum WorkerMsg {
    Chunk(Arc<Chunk>),
    /// Move the flow table's clock to this time (a quiet live link still expires
    /// flows) and report the open flows and the table's counters.
    Tick(Nanos),
}

/// What a worker of a [`Pipeline`] sends back.
struct WorkerNews {
    index: usize,
    records: Vec<FlowRecord>,
    /// After a tick: open flows and the table's counters.
    state: Option<(usize, FlowStats)>,
}

/// The incremental form of [`run`], for live capture: chunks are pushed as they
/// arrive, finished flow records are polled as they leave the flow tables, and
/// [`Pipeline::finish`] ends the open flows. The same `Worker`s and sharding as
/// `run`, always on worker threads (one at least), so the caller's thread never
/// decodes.
///
/// `push` blocks when a worker's queue is full: the caller (the live aggregator) sits
/// behind its own bounded queue, which is where a live capture counts its drops.
pub struct Pipeline {
    senders: Vec<crossbeam_channel::Sender<WorkerMsg>>,
    handles: Vec<std::thread::JoinHandle<Worker>>,
    news: crossbeam_channel::Receiver<WorkerNews>,
    cap: CaptureStats,
    summaries: Vec<InputSummary>,
    /// Latest (open flows, counters) per worker.
    state: Vec<(usize, FlowStats)>,
    finished: Vec<FlowRecord>,
}

impl Pipeline {
    /// Start `cfg.threads` workers (at least one).
    pub fn new(cfg: &EngineConfig) -> std::io::Result<Pipeline> {
        let threads = cfg.threads.max(1);
        let (news_tx, news) = crossbeam_channel::unbounded::<WorkerNews>();
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded::<WorkerMsg>(CHANNEL_CHUNKS);
            senders.push(tx);
            let mut fcfg = cfg.flow.clone();
            fcfg.max_flows = (fcfg.max_flows / threads).max(1);
            fcfg.max_hello_bytes /= threads;
            fcfg.max_dns_entries = fcfg.max_dns_entries.max(1);
            let news_tx = news_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("mdmaudit-worker-{i}"))
                .spawn(move || {
                    // Live runs take the records as they finish and bound them
                    // with their own `--max-records`.
                    let mut w = Worker::new(i, threads, fcfg, usize::MAX);
                    for msg in rx.iter() {
                        let state = match msg {
                            WorkerMsg::Chunk(c) => {
                                w.chunk(&c);
                                None
                            }
                            WorkerMsg::Tick(ts) => {
                                w.table.advance(ts, &mut w.records);
                                Some((w.table.len(), w.table.stats().clone()))
                            }
                        };
                        if w.has_records() || state.is_some() {
                            let records = w.take_records();
                            // The pipeline may be gone (it is being dropped): ignore.
                            let _ = news_tx.send(WorkerNews {
                                index: i,
                                records,
                                state,
                            });
                        }
                    }
                    w.finish()
                })?;
            handles.push(h);
        }
        Ok(Pipeline {
            senders,
            handles,
            news,
            cap: CaptureStats::default(),
            summaries: Vec::new(),
            state: vec![(0, FlowStats::default()); threads],
            finished: Vec::new(),
        })
    }

    /// Declare input number `summaries.len()` (a live interface or a ring file);
    /// chunks name it in [`Chunk::file`]. Returns its index.
    pub fn add_input(&mut self, name: &str, linktype: u32) -> u32 {
        self.summaries.push(InputSummary {
            file: name.to_string(),
            linktype,
            linktype_name: linktype_name(linktype),
            linktype_supported: linktype::is_supported(linktype),
            packets: 0,
            bytes: 0,
            damage: None,
        });
        (self.summaries.len() - 1) as u32
    }

    /// Count and hand `chunk` to every worker (blocks while a worker queue is full).
    /// A chunk naming an undeclared input is counted under a placeholder input.
    pub fn push(&mut self, chunk: Chunk) {
        if chunk.records.is_empty() {
            return;
        }
        while self.summaries.len() <= chunk.file as usize {
            self.add_input("(undeclared input)", u32::MAX);
        }
        if let Some(summary) = self.summaries.get_mut(chunk.file as usize) {
            account(&mut self.cap, summary, &chunk);
        }
        let arc = Arc::new(chunk);
        for tx in self.senders.iter() {
            // A worker that died cannot take more (it cannot panic on input).
            let _ = tx.send(WorkerMsg::Chunk(Arc::clone(&arc)));
        }
        self.collect();
    }

    /// Move every flow table's clock to `now` (live: wall time on a quiet link) and
    /// ask for the open-flow counts; idle flows are finished.
    pub fn tick(&mut self, now: Nanos) {
        for tx in self.senders.iter() {
            let _ = tx.send(WorkerMsg::Tick(now));
        }
        self.collect();
    }

    fn collect(&mut self) {
        while let Ok(n) = self.news.try_recv() {
            self.finished.extend(n.records);
            if let (Some(st), Some(slot)) = (n.state, self.state.get_mut(n.index)) {
                *slot = st;
            }
        }
    }

    /// Flow records finished since the last call (idle, evicted, port reuse).
    pub fn poll_finished(&mut self) -> Vec<FlowRecord> {
        self.collect();
        std::mem::take(&mut self.finished)
    }

    /// Packets and bytes counted so far, and the inputs.
    pub fn capture(&self) -> &CaptureStats {
        &self.cap
    }

    /// Open flows and summed flow counters, as of the workers' last tick.
    pub fn flow_state(&self) -> (usize, FlowStats) {
        let mut stats = FlowStats::default();
        let mut open = 0;
        for (n, s) in self.state.iter() {
            open += n;
            stats.add(s);
        }
        (open, stats)
    }

    /// End of input: the open flows are finished. The result's records are those
    /// not yet returned by [`Pipeline::poll_finished`]; `live` is left for the caller.
    pub fn finish(mut self) -> RunResult {
        let senders = std::mem::take(&mut self.senders);
        drop(senders);
        let handles = std::mem::take(&mut self.handles);
        let workers: Vec<Worker> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        self.collect();
        let mut res = merge(
            workers,
            std::mem::take(&mut self.cap),
            std::mem::take(&mut self.summaries),
        );
        let pending = std::mem::take(&mut self.finished);
        res.record_parts.insert(0, pending);
        res
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.senders.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
