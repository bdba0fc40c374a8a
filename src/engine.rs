//! The offline run: inputs read in order, chunk by chunk; each frame decoded and
//! handed to the flow table shard that owns its flow; every frame and every problem
//! counted.
//!
//! Threads (SPEC section 8): with `threads > 1` the calling thread reads and hands
//! each chunk, whole and shared, to every worker over bounded channels (a slow worker
//! blocks the reader: back-pressure, nothing dropped). Every worker walks every frame
//! of the chunk in file order, decodes it, and keeps only the flows of its shard
//! (a symmetric hash of the flow key); DNS answers are learned by all workers, so
//! names do not depend on the number of threads. Handing over a chunk of about a
//! thousand frames costs one channel message instead of a thousand. With `threads ==
//! 1` there are no threads and no channels at all.
//!
//! This module owns the counters a reader needs to trust a report ("nothing is lost
//! silently"). It does not judge flows (`audit`) nor format anything (`report`).

use crate::capture::{linktype_name, Damage, FileSource, OpenError, PacketSource};
use crate::decode::{self, linktype, Skip};
use crate::flow::{self, FlowConfig, FlowRecord, FlowStats, FlowTable, FrameRef, PacketCtx};
use crate::model::Nanos;
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
}

/// What an offline run produced, before the audit.
#[derive(Debug)]
pub struct RunResult {
    pub inputs: Vec<InputSummary>,
    pub capture: CaptureStats,
    pub flow_stats: FlowStats,
    pub records: Vec<FlowRecord>,
}

impl RunResult {
    /// Whether every input was read to its end.
    pub fn complete(&self) -> bool {
        self.inputs.iter().all(|i| i.damage.is_none())
    }
}

/// How capture files are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderKind {
    /// Our chunked pcap/pcapng reader (the default for files).
    Fast,
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
            ReaderKind::Fast => FileReader::open(path, index).map(Input::Fast),
            ReaderKind::Libpcap => FileSource::open(path).map(|src| Input::Libpcap { src, index }),
        }
    }

    fn name(&self) -> &str {
        match self {
            Input::Fast(r) => r.name(),
            Input::Libpcap { src, .. } => src.name(),
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
                chunk.records.clear();
                chunk.data.clear();
                chunk.file = *index;
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
}

/// Progress callback: (input index, frames read so far in it).
pub type Progress<'a> = &'a mut dyn FnMut(usize, u64);

/// Decodes frames and keeps the flows of one shard.
struct Worker {
    index: usize,
    shards: usize,
    table: FlowTable,
    records: Vec<FlowRecord>,
    skipped: [u64; Skip::ALL.len()],
    unsupported: BTreeMap<u32, u64>,
    decoded: u64,
    tcp_payload_truncated: u64,
    ip_first_fragments: u64,
    tunnelled: u64,
}

impl Worker {
    fn new(index: usize, shards: usize, cfg: FlowConfig) -> Worker {
        Worker {
            index,
            shards,
            table: FlowTable::new(cfg),
            records: Vec::new(),
            skipped: [0; Skip::ALL.len()],
            unsupported: BTreeMap::new(),
            decoded: 0,
            tcp_payload_truncated: 0,
            ip_first_fragments: 0,
            tunnelled: 0,
        }
    }

    fn chunk(&mut self, chunk: &Chunk) {
        for r in chunk.records.iter() {
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
            let bytes = chunk.bytes(r);
            let d = match decode::decode(r.linktype, bytes) {
                Ok(d) => d,
                Err(s) => {
                    // Frames without a flow are counted by the first worker only.
                    if self.index == 0 {
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
                own.unwrap_or_else(|| self.shards == 1 || shard_of(&d, self.shards) == self.index);
            if !mine {
                if FlowTable::may_be_dns_response(&d) {
                    self.table.observe_dns(&ctx, &d);
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
            self.table.process(&ctx, &d, &mut self.records);
        }
    }

    fn finish(mut self) -> Worker {
        self.table.finish(&mut self.records);
        self
    }
}

/// The worker that owns a decoded frame's flow.
fn shard_of(d: &decode::Decoded<'_>, shards: usize) -> usize {
    (flow::shard_hash(d) % shards as u64) as usize
}

/// The reader's share of the work with several workers: decode each frame once to
/// tell which worker owns it, so that the others skip it without decoding. DNS
/// answers go to every worker; undecodable frames to the first, which counts them.
fn assign_shards(chunk: &mut Chunk, shards: usize) {
    let Chunk { data, records, .. } = chunk;
    for r in records.iter_mut() {
        let start = r.off as usize;
        let bytes = data
            .get(start..start.saturating_add(r.caplen as usize))
            .unwrap_or(&[]);
        r.shard = match decode::decode(r.linktype, bytes) {
            Ok(d) if FlowTable::may_be_dns_response(&d) => Record::ALL_SHARDS,
            Ok(d) => shard_of(&d, shards) as u16,
            Err(_) => Record::NO_FLOW,
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
pub fn run(inputs: Vec<Input>, cfg: EngineConfig, mut progress: Option<Progress<'_>>) -> RunResult {
    let threads = cfg.threads.max(1);
    let mut cap = CaptureStats::default();
    let mut summaries = Vec::new();
    let workers: Vec<Worker> = if threads == 1 {
        let mut w = Worker::new(0, 1, cfg.flow.clone());
        let mut chunk = Chunk::default();
        for (idx, mut input) in inputs.into_iter().enumerate() {
            let mut summary = new_summary(&input);
            let mut frames = 0u64;
            loop {
                let fill = input.fill(&mut chunk, &mut frames);
                account(&mut cap, &mut summary, &chunk);
                w.chunk(&chunk);
                if let Some(p) = progress.as_mut() {
                    p(idx, summary.packets);
                }
                match fill {
                    Fill::More => {}
                    Fill::End => break,
                    Fill::Damaged(d) => {
                        summary.damage = Some(d);
                        break;
                    }
                }
            }
            summaries.push(summary);
        }
        vec![w.finish()]
    } else {
        run_threaded(
            inputs,
            &cfg,
            threads,
            &mut cap,
            &mut summaries,
            &mut progress,
        )
    };

    let mut skipped = [0u64; Skip::ALL.len()];
    let mut flow_stats = FlowStats::default();
    let mut records = Vec::new();
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
        records.extend(w.records);
    }
    for s in Skip::ALL {
        cap.not_decoded
            .insert(s.as_str().to_string(), skipped[s.index()]);
    }
    RunResult {
        inputs: summaries,
        capture: cap,
        flow_stats,
        records,
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

fn run_threaded(
    inputs: Vec<Input>,
    cfg: &EngineConfig,
    threads: usize,
    cap: &mut CaptureStats,
    summaries: &mut Vec<InputSummary>,
    progress: &mut Option<Progress<'_>>,
) -> Vec<Worker> {
    let mut senders = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (tx, rx) = crossbeam_channel::bounded::<Arc<Chunk>>(CHANNEL_CHUNKS);
        senders.push(tx);
        // The flow cap is shared out between the shards.
        let mut fcfg = cfg.flow.clone();
        fcfg.max_flows = (fcfg.max_flows / threads).max(1);
        fcfg.max_dns_entries = fcfg.max_dns_entries.max(1);
        let h = std::thread::Builder::new()
            .name(format!("mdmaudit-worker-{i}"))
            .spawn(move || {
                let mut w = Worker::new(i, threads, fcfg);
                for chunk in rx.iter() {
                    w.chunk(&chunk);
                }
                w.finish()
            })
            .expect("spawn a worker thread");
        handles.push(h);
    }
    // Chunks come back for reuse once every worker has dropped them.
    let mut pool: std::collections::VecDeque<Arc<Chunk>> = std::collections::VecDeque::new();
    let pool_cap = threads * (CHANNEL_CHUNKS + 2) + 2;
    let next_chunk = |pool: &mut std::collections::VecDeque<Arc<Chunk>>| -> Chunk {
        if let Some(pos) = pool.iter().position(|c| Arc::strong_count(c) == 1) {
            if let Some(arc) = pool.remove(pos) {
                if let Ok(c) = Arc::try_unwrap(arc) {
                    return c;
                }
            }
        }
        Chunk::default()
    };
    'inputs: for (idx, mut input) in inputs.into_iter().enumerate() {
        let mut summary = new_summary(&input);
        let mut frames = 0u64;
        loop {
            let mut chunk = next_chunk(&mut pool);
            let fill = input.fill(&mut chunk, &mut frames);
            account(cap, &mut summary, &chunk);
            if let Some(p) = progress.as_mut() {
                p(idx, summary.packets);
            }
            if !chunk.records.is_empty() {
                assign_shards(&mut chunk, threads);
                let arc = Arc::new(chunk);
                for tx in senders.iter() {
                    if tx.send(Arc::clone(&arc)).is_err() {
                        // A worker died (it cannot panic on input; this is a bug).
                        summaries.push(summary);
                        break 'inputs;
                    }
                }
                if pool.len() < pool_cap {
                    pool.push_back(arc);
                }
            }
            match fill {
                Fill::More => {}
                Fill::End => break,
                Fill::Damaged(d) => {
                    summary.damage = Some(d);
                    break;
                }
            }
        }
        summaries.push(summary);
    }
    drop(senders);
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .collect()
}
