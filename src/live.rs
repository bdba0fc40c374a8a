//! Live capture (`mdmaudit live -i IFACE ...`, SPEC section 7): one named capture
//! thread per interface feeds the same decode/flow workers as the offline run
//! ([`crate::engine::Pipeline`]); a status view on a terminal or NDJSON events as they
//! happen; drop accounting from libpcap and from our own queue; a ring of pcapng files;
//! and on SIGINT/SIGTERM (or `--duration`, `--packets`) the open flows are finished and
//! the final report is written in the formats of `audit`, with the same exit status
//! rules.
//!
//! Threads: a capture thread never waits on the pipeline. It hands chunks to the
//! aggregator (the calling thread) with `try_send` over a bounded channel and counts
//! what it had to drop. The aggregator numbers frames, writes the ring, pushes chunks
//! to the pipeline, and every `--status-interval` ticks the flow tables with wall time
//! (so a quiet link still expires flows) and re-judges the recent window.
//!
//! Memory is bounded by caps, each counted when hit: flows (`--max-flows`), DNS cache
//! (`--max-dns-entries`), finished flow records kept for the report (`--max-records`,
//! oldest dropped first), the capture queue (`QUEUE_CHUNKS`), the drop history (one
//! entry per interval inside `--window`). This module judges nothing itself (`audit`)
//! and formats reports only through `report`'s sinks.

use crate::audit::{self, Audit, AuditOptions, Severity};
use crate::capture::Damage;
use crate::catalog::Catalog;
use crate::cli::secs;
use crate::cli::{self, CatalogArgs, FormatArg};
use crate::engine::{EngineConfig, InterfaceCounters, LiveCounters, Pipeline, RunResult};
use crate::flow::{FlowRecord, FrameRef};
use crate::model::Nanos;
use crate::reader::{Chunk, Record};
use crate::report::{self, Format, ReportInput};
use clap::Args;
use pcap::{Active, Capture, Device, Precision};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Chunks waiting between the capture threads and the aggregator. Beyond it a capture
/// thread drops packets (counted as `queue_dropped`) instead of stalling libpcap.
pub const QUEUE_CHUNKS: usize = 256;
/// A capture thread hands over its chunk at this many packets...
const CHUNK_PACKETS: usize = 1024;
/// ... or this many bytes ...
const CHUNK_DATA: usize = 256 * 1024;
/// ... or when its first packet is this old.
const CHUNK_AGE: Duration = Duration::from_millis(50);
/// libpcap read timeout: a quiet link still returns to the loop this often.
const READ_TIMEOUT_MS: i32 = 100;

/// `mdmaudit live` flags.
#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on (repeatable; one capture thread each).
    #[arg(long = "interface", short = 'i', required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// BPF filter applied in the kernel (tcpdump syntax).
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,
    /// Bytes kept of each packet (SNI extraction needs the first ~600 bytes of a
    /// ClientHello; names degrade below that, and the report says so).
    #[arg(long, default_value_t = 65535, value_name = "BYTES")]
    pub snaplen: i32,
    /// Kernel capture buffer size in bytes (larger: fewer drops in bursts).
    #[arg(long, value_name = "BYTES")]
    pub buffer_size: Option<i32>,
    /// Do not put the interface into promiscuous mode.
    #[arg(long)]
    pub no_promisc: bool,
    /// Stop after this many seconds and write the report.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Stop after this many packets and write the report.
    #[arg(long, value_name = "N")]
    pub packets: Option<u64>,
    /// Keep what was captured in this pcapng file (or ring of files, see --ring-files)
    /// so the audit can be replayed offline.
    #[arg(long = "write", short = 'w', value_name = "FILE.pcapng")]
    pub write: Option<PathBuf>,
    /// With --write: keep a ring of this many files of --ring-size MB each
    /// (FILE.00001.pcapng, ...; the oldest is deleted). 1: one file, no size limit.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub ring_files: u32,
    /// With --ring-files > 1: size of each file in MB (rotation happens between
    /// chunks, so a file may exceed it by up to 256 KB).
    #[arg(long, default_value_t = 100, value_name = "MB")]
    pub ring_size: u64,
    /// Final report format; with ndjson, flow records and requirement state changes
    /// stream to standard output as they happen.
    #[arg(long, short = 'f', value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write the final report to this file (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Audit against these profiles only (repeatable).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    #[command(flatten)]
    pub report: crate::cli::ReportArgs,
    /// Seconds between status refreshes (and state-change evaluations).
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    pub status_interval: u64,
    /// The status view and the NDJSON state changes judge the flows that ended in
    /// the last SECS seconds (the final report judges every record kept).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub window: u64,
    /// Finished flow records kept for the final report; beyond it the oldest are
    /// dropped (counted in `capture.counters.live.records_dropped`).
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub max_records: usize,
    #[command(flatten)]
    pub flow: crate::cli::FlowArgs,
    /// Decode and flow worker threads (default: the cores available, at most 4).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Why a live capture could not start: the message is for the user, as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn wall_ns() -> Nanos {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Counters a capture thread shares with the aggregator.
#[derive(Default)]
struct IfaceShared {
    received: AtomicU64,
    dropped: AtomicU64,
    if_dropped: AtomicU64,
    queue_dropped: AtomicU64,
    delivered: AtomicU64,
    /// Set when reading stopped on an error (interface gone, ...).
    failure: Mutex<Option<String>>,
}

impl IfaceShared {
    fn counters(&self, name: &str) -> InterfaceCounters {
        InterfaceCounters {
            name: name.to_string(),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            if_dropped: self.if_dropped.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }
}

/// libpcap's counters are 32-bit and wrap; this keeps 64-bit totals.
#[derive(Default)]
struct Wrapping {
    last: [u32; 3],
    total: [u64; 3],
}

impl Wrapping {
    fn update(&mut self, s: &pcap::Stat, shared: &IfaceShared) {
        let now = [s.received, s.dropped, s.if_dropped];
        for ((total, last), n) in self.total.iter_mut().zip(self.last.iter()).zip(now) {
            *total += u64::from(n.wrapping_sub(*last));
        }
        self.last = now;
        shared.received.store(self.total[0], Ordering::Relaxed);
        shared.dropped.store(self.total[1], Ordering::Relaxed);
        shared.if_dropped.store(self.total[2], Ordering::Relaxed);
    }
}

/// An opened interface, before its thread starts.
pub struct OpenInterface {
    pub name: String,
    pub linktype: u32,
    pub snaplen: u32,
    cap: Capture<Active>,
}

/// Options of [`open_interface`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub snaplen: i32,
    pub buffer_size: Option<i32>,
    pub promisc: bool,
    pub filter: Option<String>,
}

/// The capture rights hint, naming this binary.
fn privilege_hint() -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "mdmaudit".into());
    format!(
        "run as root, or grant the binary capture rights: sudo setcap cap_net_raw,cap_net_admin=eip {exe}"
    )
}

/// The interfaces libpcap can see, for an error message.
fn available_interfaces() -> Vec<String> {
    Device::list()
        .map(|ds| ds.into_iter().map(|d| d.name).collect())
        .unwrap_or_default()
}

/// Open `name` for live capture, with a message that says what to do on failure.
pub fn open_interface(name: &str, o: &OpenOptions) -> Result<OpenInterface, StartError> {
    let known = available_interfaces();
    if !known.is_empty() && !known.iter().any(|k| k == name) {
        return Err(StartError(format!(
            "interface '{name}' not found; available interfaces: {}",
            known.join(", ")
        )));
    }
    let denied = |detail: &str| {
        StartError(format!(
            "cannot capture on interface '{name}': permission denied ({detail}); {}",
            privilege_hint()
        ))
    };
    let mut inactive = Capture::from_device(name)
        .map_err(|e| StartError(format!("cannot capture on interface '{name}': {e}")))?
        .snaplen(o.snaplen.max(64))
        .promisc(o.promisc)
        .immediate_mode(true)
        .timeout(READ_TIMEOUT_MS)
        .precision(Precision::Nano);
    if let Some(b) = o.buffer_size {
        inactive = inactive.buffer_size(b);
    }
    let open = inactive.open().or_else(|e| {
        // Some kernels refuse nanosecond stamps: retry with microseconds.
        if is_permission(&e.to_string()) {
            return Err(e);
        }
        let mut i = Capture::from_device(name)?
            .snaplen(o.snaplen.max(64))
            .promisc(o.promisc)
            .immediate_mode(true)
            .timeout(READ_TIMEOUT_MS);
        if let Some(b) = o.buffer_size {
            i = i.buffer_size(b);
        }
        i.open()
    });
    let mut cap = match open {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            if is_permission(&msg) {
                return Err(denied(msg.trim_start_matches("libpcap error: ")));
            }
            if msg.contains("No such device") || msg.contains("doesn't exist") {
                return Err(StartError(format!(
                    "interface '{name}' not found; available interfaces: {}",
                    known.join(", ")
                )));
            }
            return Err(StartError(format!(
                "cannot capture on interface '{name}': {}",
                msg.trim_start_matches("libpcap error: ")
            )));
        }
    };
    if let Some(f) = &o.filter {
        cap.filter(f, true).map_err(|e| {
            StartError(format!(
                "invalid --filter '{f}' on interface '{name}': {}",
                e.to_string().trim_start_matches("libpcap error: ")
            ))
        })?;
    }
    // Non-blocking reads and our own poll with a timeout: libpcap's read timeout
    // does not return on a quiet link with every kernel and ring version.
    let cap = cap.setnonblock().map_err(|e| {
        StartError(format!(
            "cannot capture on interface '{name}': {}",
            e.to_string().trim_start_matches("libpcap error: ")
        ))
    })?;
    let linktype = dlt_to_linktype(cap.get_datalink().0);
    Ok(OpenInterface {
        name: name.to_string(),
        linktype,
        snaplen: o.snaplen.max(64) as u32,
        cap,
    })
}

fn is_permission(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("permission") || m.contains("not permitted") || m.contains("eperm")
}

fn dlt_to_linktype(dlt: i32) -> u32 {
    match dlt {
        12 | 14 => 101,
        d => d as u32,
    }
}

/// A chunk of one interface's packets (`Chunk::file` holds the interface index).
type Batch = Chunk;

/// The capture loop of one interface: never blocks on the pipeline.
fn capture_loop(
    mut iface: OpenInterface,
    index: u32,
    tx: crossbeam_channel::Sender<Batch>,
    stop: Arc<AtomicBool>,
    shared: Arc<IfaceShared>,
) {
    let new_chunk = || Chunk {
        data: Vec::with_capacity(CHUNK_DATA + 65_536),
        records: Vec::with_capacity(CHUNK_PACKETS),
        file: index,
        window: None,
        start: 0,
    };
    let mut chunk = new_chunk();
    let mut started = Instant::now();
    let mut stats = Wrapping::default();
    let mut last_stats = Instant::now();
    let nano = true;
    let flush = |chunk: &mut Chunk| {
        if chunk.records.is_empty() {
            return;
        }
        let n = chunk.records.len() as u64;
        let full = std::mem::replace(chunk, new_chunk());
        match tx.try_send(full) {
            Ok(()) => {
                shared.delivered.fetch_add(n, Ordering::Relaxed);
            }
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                shared.queue_dropped.fetch_add(n, Ordering::Relaxed);
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {}
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match iface.cap.next_packet() {
            Ok(p) => {
                if chunk.records.is_empty() {
                    started = Instant::now();
                }
                #[allow(clippy::useless_conversion)]
                let sec = i64::from(p.header.ts.tv_sec);
                #[allow(clippy::useless_conversion)]
                let frac = i64::from(p.header.ts.tv_usec);
                let frac = if nano { frac } else { frac * 1000 };
                let off = chunk.data.len() as u32;
                chunk.data.extend_from_slice(p.data);
                chunk.records.push(Record {
                    off,
                    caplen: p.data.len() as u32,
                    wire_len: p.header.len,
                    linktype: iface.linktype,
                    ts: sec.saturating_mul(1_000_000_000).saturating_add(frac),
                    frame: 0,
                    shard: Record::UNSHARDED,
                });
                if chunk.records.len() >= CHUNK_PACKETS
                    || chunk.data.len() >= CHUNK_DATA
                    || started.elapsed() >= CHUNK_AGE
                {
                    flush(&mut chunk);
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                // Nothing to read: hand over what we have, then wait for the
                // descriptor (bounded, so a stop request is seen).
                flush(&mut chunk);
                wait_readable(&iface.cap, READ_TIMEOUT_MS);
            }
            Err(e) => {
                if let Ok(mut f) = shared.failure.lock() {
                    *f = Some(e.to_string().trim_start_matches("libpcap error: ").into());
                }
                break;
            }
        }
        if last_stats.elapsed() >= Duration::from_millis(500) {
            last_stats = Instant::now();
            if let Ok(s) = iface.cap.stats() {
                stats.update(&s, &shared);
            }
        }
    }
    flush(&mut chunk);
    if let Ok(s) = iface.cap.stats() {
        stats.update(&s, &shared);
    }
}

/// Wait until the capture descriptor is readable or `ms` milliseconds pass.
fn wait_readable(cap: &Capture<Active>, ms: i32) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, its count is 1; the descriptor lives
    // as long as `cap`.
    let r = unsafe { libc::poll(&mut fds, 1, ms) };
    if r < 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `--write` ring: pcapng files with one interface description per interface.
struct Ring {
    base: PathBuf,
    files: u32,
    max_bytes: u64,
    interfaces: Vec<(String, u32, u32)>,
    writer: Option<pcap_file::pcapng::PcapNgWriter<std::io::BufWriter<std::fs::File>>>,
    written: u64,
    /// Sequence number of the current file (0-based).
    seq: u32,
    /// Paths written, oldest first (only the last `files` exist).
    paths: VecDeque<PathBuf>,
    failed: Option<String>,
}

impl Ring {
    fn path_for(&self, seq: u32) -> PathBuf {
        if self.files <= 1 {
            return self.base.clone();
        }
        let stem = self
            .base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let ext = self
            .base
            .extension()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pcapng".into());
        self.base
            .with_file_name(format!("{stem}.{:05}.{ext}", seq + 1))
    }

    fn open(&mut self, seq: u32) -> Result<PathBuf, String> {
        use pcap_file::pcapng::blocks::interface_description::{
            InterfaceDescriptionBlock, InterfaceDescriptionOption,
        };
        let path = self.path_for(seq);
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut w = pcap_file::pcapng::PcapNgWriter::new(std::io::BufWriter::new(file))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        for (name, lt, snaplen) in self.interfaces.iter() {
            let idb = InterfaceDescriptionBlock {
                linktype: pcap_file::DataLink::from(*lt),
                snaplen: *snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(name.clone().into()),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        self.writer = Some(w);
        self.written = 0;
        self.seq = seq;
        self.paths.push_back(path.clone());
        while self.files > 1 && self.paths.len() > self.files as usize {
            if let Some(old) = self.paths.pop_front() {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }

    /// Whether the current file is full (rotation happens before the next chunk).
    fn full(&self) -> bool {
        self.files > 1 && self.written >= self.max_bytes
    }

    fn write(&mut self, iface: u32, chunk: &Chunk) {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        for r in chunk.records.iter() {
            let data = chunk.bytes(r);
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(u64::try_from(r.ts).unwrap_or(0)),
                original_len: r.wire_len,
                data: std::borrow::Cow::Borrowed(data),
                options: Vec::new(),
            };
            match w.write_pcapng_block(epb) {
                Ok(n) => self.written += n as u64,
                Err(e) => {
                    self.failed = Some(e.to_string());
                    self.writer = None;
                    return;
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(w) = self.writer.take() {
            let mut inner = w.into_inner();
            if let Err(e) = inner.flush() {
                self.failed = Some(e.to_string());
            }
        }
    }
}

/// Drop counts of one status interval.
#[derive(Clone, Copy, Default)]
struct IntervalDrops {
    end: Nanos,
    seen: u64,
    lost: u64,
}

/// The percentage of packets lost in the intervals kept, if any were lost.
fn drop_pct(history: &VecDeque<IntervalDrops>) -> Option<f64> {
    let (seen, lost) = history
        .iter()
        .fold((0u64, 0u64), |(s, l), d| (s + d.seen, l + d.lost));
    (lost > 0).then(|| 100.0 * lost as f64 / (seen.max(lost)) as f64)
}

/// Totals over all interfaces: (packets seen by libpcap or the queue, packets lost).
fn seen_lost(c: &[InterfaceCounters]) -> (u64, u64) {
    let mut seen = 0;
    let mut lost = 0;
    for i in c {
        let l = i.dropped + i.if_dropped + i.queue_dropped;
        lost += l;
        seen += i.received.max(i.delivered + i.queue_dropped) + i.if_dropped;
    }
    (seen, lost)
}

/// A requirement's state in the live window.
#[derive(Clone, Debug, PartialEq)]
struct RuleState {
    status: String,
    devices: BTreeMap<String, usize>,
    changed_at: Nanos,
}

/// Everything the aggregator keeps between intervals (all bounded).
struct LiveState {
    /// Finished flow records kept for the final report, oldest first, with whether
    /// they were already streamed as NDJSON.
    records: VecDeque<(FlowRecord, bool)>,
    max_records: usize,
    records_dropped: u64,
    dirty: bool,
    rules: BTreeMap<String, RuleState>,
    drops: VecDeque<IntervalDrops>,
    intervals_with_drops: u64,
    last_totals: (u64, u64),
}

impl LiveState {
    fn add(&mut self, recs: Vec<FlowRecord>) {
        if recs.is_empty() {
            return;
        }
        self.dirty = true;
        for r in recs {
            if self.records.len() >= self.max_records.max(1) {
                self.records.pop_front();
                self.records_dropped += 1;
            }
            self.records.push_back((r, false));
        }
    }
}

/// Run `mdmaudit live`; returns the exit status.
pub fn run(a: LiveArgs) -> i32 {
    let fail = |m: String| {
        eprintln!("mdmaudit: {m}");
        cli::EXIT_USAGE
    };
    let (catalog, catalog_desc) = match cli::load_catalog(&a.catalog) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    for p in a.profiles.iter() {
        if !catalog.profiles().iter().any(|x| &x.name == p) {
            return fail(format!("unknown profile '{p}'"));
        }
    }
    if a.ring_files == 0 {
        return fail("--ring-files must be at least 1".into());
    }
    if a.status_interval == 0 {
        return fail("--status-interval must be at least 1".into());
    }
    let threads = match a.threads {
        Some(0) => return fail("--threads must be at least 1".into()),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(1),
    };
    let mut seen_names = BTreeSet::new();
    for i in a.interfaces.iter() {
        if !seen_names.insert(i) {
            return fail(format!("interface '{i}' given twice"));
        }
    }
    let oo = OpenOptions {
        snaplen: a.snaplen,
        buffer_size: a.buffer_size,
        promisc: !a.no_promisc,
        filter: a.filter.clone(),
    };
    // Open every interface before capturing on any: one clear error and stop.
    let mut opened = Vec::new();
    for name in a.interfaces.iter() {
        match open_interface(name, &oo) {
            Ok(o) => opened.push(o),
            Err(e) => return fail(e.0),
        }
    }
    // Signals: the first SIGINT/SIGTERM asks for a clean stop, a second exits at once.
    let stop_req = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let r = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop_req))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop_req)));
        if let Err(e) = r {
            return fail(format!("cannot install signal handlers: {e}"));
        }
    }
    let fcfg = a.flow.flow_config(&catalog);
    let mut pipeline = match Pipeline::new(&EngineConfig {
        flow: fcfg,
        threads,
        max_records: usize::MAX,
        // Live workers are fed by the capture thread (`Pipeline`), never pinned.
        pin: false,
    }) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot start worker threads: {e}")),
    };
    let opts = AuditOptions {
        profiles: a.profiles.clone(),
        fallback_window: a.flow.fallback_window_ns(),
        max_evidence: a.flow.max_evidence,
        ..AuditOptions::default()
    };
    let mut ring = a.write.as_ref().map(|p| Ring {
        base: p.clone(),
        files: a.ring_files,
        max_bytes: a.ring_size.saturating_mul(1 << 20),
        interfaces: opened
            .iter()
            .map(|o| (o.name.clone(), o.linktype, o.snaplen))
            .collect(),
        writer: None,
        written: 0,
        seq: 0,
        paths: VecDeque::new(),
        failed: None,
    });
    let first_lt = opened.first().map(|o| o.linktype).unwrap_or(1);
    let live_name = format!("live:{}", a.interfaces.join("+"));
    match ring.as_mut() {
        Some(r) => match r.open(0) {
            Ok(path) => {
                pipeline.add_input(&path.display().to_string(), first_lt);
            }
            Err(e) => return fail(e),
        },
        None => {
            pipeline.add_input(&live_name, first_lt);
        }
    }

    // Capture threads.
    let stop_capture = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::bounded::<Batch>(QUEUE_CHUNKS);
    let mut handles = Vec::new();
    let mut shared = Vec::new();
    let names: Vec<String> = opened.iter().map(|o| o.name.clone()).collect();
    for (i, iface) in opened.into_iter().enumerate() {
        let sh = Arc::new(IfaceShared::default());
        shared.push(Arc::clone(&sh));
        let (tx, stop) = (tx.clone(), Arc::clone(&stop_capture));
        let name = iface.name.clone();
        let h = std::thread::Builder::new()
            .name(format!("mdmaudit-capture-{name}"))
            .spawn(move || capture_loop(iface, i as u32, tx, stop, sh));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop_capture.store(true, Ordering::Relaxed);
                return fail(format!("cannot start the capture thread for '{name}': {e}"));
            }
        }
    }
    drop(tx);

    let stdout_tty = std::io::stdout().is_terminal();
    let status_view = stdout_tty && a.format == FormatArg::Text;
    let streaming = a.format == FormatArg::Ndjson && a.output.is_none();
    if !status_view && std::io::stderr().is_terminal() {
        eprintln!(
            "mdmaudit: capturing on {}; Ctrl-C stops and writes the report",
            names.join(", ")
        );
    }
    let mut st = LiveState {
        records: VecDeque::new(),
        max_records: a.max_records,
        records_dropped: 0,
        dirty: false,
        rules: BTreeMap::new(),
        drops: VecDeque::new(),
        intervals_with_drops: 0,
        last_totals: (0, 0),
    };
    let started = Instant::now();
    let start_wall = wall_ns();
    let interval = Duration::from_secs(a.status_interval);
    let mut next_status = Instant::now() + interval;
    let mut frames_in_file = 0u64;
    let mut packets_total = 0u64;
    let mut out = std::io::stdout();
    let mut failures: Vec<(String, String)> = Vec::new();

    let handle_batch = |mut chunk: Chunk,
                        pipeline: &mut Pipeline,
                        ring: &mut Option<Ring>,
                        frames_in_file: &mut u64,
                        packets_total: &mut u64| {
        if let Some(limit) = a.packets {
            let room = limit.saturating_sub(*packets_total) as usize;
            chunk.records.truncate(room);
        }
        if chunk.records.is_empty() {
            return;
        }
        let iface = chunk.file;
        let mut file = 0u32;
        if let Some(r) = ring.as_mut() {
            if r.full() {
                r.close();
                match r.open(r.seq + 1) {
                    Ok(path) => {
                        let lt = r.interfaces.first().map(|i| i.1).unwrap_or(1);
                        pipeline.add_input(&path.display().to_string(), lt);
                        *frames_in_file = 0;
                    }
                    Err(e) => r.failed = Some(e),
                }
            }
            r.write(iface, &chunk);
            file = r.seq;
        }
        for rec in chunk.records.iter_mut() {
            *frames_in_file += 1;
            rec.frame = *frames_in_file;
        }
        *packets_total += chunk.records.len() as u64;
        chunk.file = file;
        pipeline.push(chunk);
    };

    loop {
        let stopping = stop_req.load(Ordering::Relaxed)
            || a.duration
                .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
            || a.packets.is_some_and(|n| packets_total >= n)
            || shared
                .iter()
                .all(|s| s.failure.lock().map(|f| f.is_some()).unwrap_or(false));
        if stopping {
            break;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => handle_batch(
                chunk,
                &mut pipeline,
                &mut ring,
                &mut frames_in_file,
                &mut packets_total,
            ),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        st.add(pipeline.poll_finished());
        if Instant::now() >= next_status {
            next_status = Instant::now() + interval;
            let now = wall_ns();
            pipeline.tick(now);
            // Let the workers answer the tick.
            std::thread::sleep(Duration::from_millis(5));
            st.add(pipeline.poll_finished());
            let counters: Vec<InterfaceCounters> = names
                .iter()
                .zip(shared.iter())
                .map(|(n, s)| s.counters(n))
                .collect();
            let (seen, lost) = seen_lost(&counters);
            let d = IntervalDrops {
                end: now,
                seen: seen.saturating_sub(st.last_totals.0),
                lost: lost.saturating_sub(st.last_totals.1),
            };
            st.last_totals = (seen, lost);
            if d.lost > 0 {
                st.intervals_with_drops += 1;
            }
            st.drops.push_back(d);
            let window = secs(a.window);
            while st
                .drops
                .front()
                .is_some_and(|x| now.saturating_sub(x.end) > window)
            {
                st.drops.pop_front();
            }
            let drop_note = drop_pct(&st.drops);
            if st.dirty || status_view {
                let win = evaluate(&catalog, &st, &opts, now, window);
                let changes = update_rules(&mut st, &win, now);
                if streaming {
                    let _ = stream(&mut out, &mut st, &win, &changes, drop_note, &live_name);
                }
                if status_view {
                    let (open, _) = pipeline.flow_state();
                    let _ = draw_status(
                        &mut out,
                        &StatusHead {
                            interfaces: &names,
                            elapsed: started.elapsed(),
                            packets: packets_total,
                            counters: &counters,
                            open_flows: open,
                            records: st.records.len(),
                            records_dropped: st.records_dropped,
                            drop_note,
                        },
                        &st,
                    );
                }
                st.dirty = false;
            }
        }
    }

    // Stop: capture threads end within one read timeout; drain what they queued.
    stop_capture.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    while let Ok(chunk) = rx.try_recv() {
        handle_batch(
            chunk,
            &mut pipeline,
            &mut ring,
            &mut frames_in_file,
            &mut packets_total,
        );
    }
    if let Some(r) = ring.as_mut() {
        r.close();
        if let Some(e) = &r.failed {
            eprintln!("mdmaudit: writing the capture stopped: {e}");
        }
    }
    for (n, s) in names.iter().zip(shared.iter()) {
        if let Ok(f) = s.failure.lock() {
            if let Some(reason) = f.as_ref() {
                failures.push((n.clone(), reason.clone()));
            }
        }
    }
    let counters: Vec<InterfaceCounters> = names
        .iter()
        .zip(shared.iter())
        .map(|(n, s)| s.counters(n))
        .collect();
    let (seen, lost) = seen_lost(&counters);
    if lost > st.last_totals.1 {
        st.intervals_with_drops += 1;
        st.drops.push_back(IntervalDrops {
            end: wall_ns(),
            seen: seen.saturating_sub(st.last_totals.0),
            lost: lost - st.last_totals.1,
        });
    }
    let mut run = pipeline.finish();
    let rest = run.take_records();
    st.add(rest);
    if let Some((iface, reason)) = failures.first() {
        if let Some(last) = run.inputs.last_mut() {
            last.damage = Some(Damage {
                file: format!("interface {iface}"),
                offset: None,
                packets_read: counters
                    .iter()
                    .find(|c| &c.name == iface)
                    .map(|c| c.delivered)
                    .unwrap_or(0),
                reason: reason.clone(),
            });
        }
    }
    run.capture.live = Some(LiveCounters {
        interfaces: counters,
        records_dropped: st.records_dropped,
        intervals_with_drops: st.intervals_with_drops,
    });
    if run.capture.first_ts.is_none() {
        run.capture.first_ts = Some(start_wall);
        run.capture.last_ts = Some(wall_ns());
    }
    let streamed: BTreeSet<FrameRef> = st
        .records
        .iter()
        .filter(|(_, s)| *s)
        .map(|(r, _)| r.first_frame)
        .collect();
    let records: Vec<FlowRecord> = st.records.drain(..).map(|(r, _)| r).collect();
    let span = match (run.capture.first_ts, run.capture.last_ts) {
        (Some(x), Some(y)) => Some((x, y)),
        _ => None,
    };
    let mut final_audit = audit::audit(&catalog, records, &opts, span);
    let status = write_final(
        &a,
        &run,
        &mut final_audit,
        &catalog,
        catalog_desc,
        streaming.then_some(&streamed),
        stdout_tty,
        drop_pct(&st.drops),
    );
    if status != cli::EXIT_OK && status != cli::EXIT_FINDINGS {
        return status;
    }
    for (iface, reason) in failures.iter() {
        eprintln!("mdmaudit: capture on interface {iface} stopped: {reason}; the report covers what was captured");
    }
    if !run.complete() {
        return cli::EXIT_DAMAGED;
    }
    status
}

/// Write the final report; returns the exit status of its findings (or 2 when it
/// cannot be written).
#[allow(clippy::too_many_arguments)]
fn write_final(
    a: &LiveArgs,
    run: &RunResult,
    final_audit: &mut Audit,
    catalog: &Catalog,
    catalog_desc: String,
    streamed: Option<&BTreeSet<FrameRef>>,
    stdout_tty: bool,
    drop_note: Option<f64>,
) -> i32 {
    let failing = a.report.fails(&final_audit.findings);
    // Flows already streamed are not repeated on the stream.
    if let Some(s) = streamed {
        final_audit
            .flows
            .retain(|f| !s.contains(&f.record.first_frame));
    }
    let color = a.report.colored(a.output.is_some(), stdout_tty);
    let input = ReportInput {
        run,
        audit: final_audit,
        catalog: catalog_desc,
        catalog_requirements: catalog.requirements().len(),
        show_devices: a.report.devices,
        show_flows: a.report.flows,
        threads: 1,
        color,
    };
    let format = match a.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Ndjson => Format::Ndjson,
    };
    let text = a.format == FormatArg::Text;
    let mut sink = report::sink_for(format);
    let mut write = |w: &mut dyn Write| -> std::io::Result<()> {
        sink.write_report(&input, w)?;
        if text {
            w.write_all(live_text(run, drop_note).as_bytes())?;
        }
        Ok(())
    };
    let written = match &a.output {
        Some(path) => cli::write_atomically(path, &mut write),
        None => cli::write_stdout(&mut write),
    };
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("mdmaudit: {}", cli::write_failed(a.output.as_deref(), &e));
            return cli::EXIT_USAGE;
        }
    }
    if failing {
        cli::EXIT_FINDINGS
    } else {
        cli::EXIT_OK
    }
}

/// The live-capture block appended to the text report.
fn live_text(run: &RunResult, drop_note: Option<f64>) -> String {
    let mut s = String::from("\nLive capture\n");
    if let Some(l) = &run.capture.live {
        for i in l.interfaces.iter() {
            s.push_str(&format!(
                "  {:<12} received {}  dropped {}  interface-dropped {}  queue-dropped {}\n",
                i.name, i.received, i.dropped, i.if_dropped, i.queue_dropped
            ));
        }
        if l.records_dropped > 0 {
            s.push_str(&format!(
                "  {} finished flow records were dropped from this report (--max-records)\n",
                l.records_dropped
            ));
        }
        if l.intervals_with_drops > 0 {
            s.push_str(&format!(
                "  packets were dropped in {} status interval(s); verdicts from those intervals rest on incomplete traffic\n",
                l.intervals_with_drops
            ));
        }
    }
    if let Some(p) = drop_note {
        s.push_str(&format!(
            "  {p:.1}% of packets were dropped during the last window\n"
        ));
    }
    s
}

/// The audit of the flows that ended inside the window.
fn evaluate(
    catalog: &Catalog,
    st: &LiveState,
    opts: &AuditOptions,
    now: Nanos,
    window: Nanos,
) -> Audit {
    let from = now.saturating_sub(window);
    let recs: Vec<FlowRecord> = st
        .records
        .iter()
        .filter(|(r, _)| r.last_ts >= from)
        .map(|(r, _)| r.clone())
        .collect();
    audit::audit(catalog, recs, opts, None)
}

/// Update the per-requirement states; returns the ids that changed (old status).
fn update_rules(st: &mut LiveState, win: &Audit, now: Nanos) -> Vec<(String, String)> {
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    for r in win.requirements.iter().filter(|r| r.flows > 0) {
        seen.insert(r.rule.clone());
        let prev = st.rules.get(&r.rule).map(|x| x.status.clone());
        if prev.as_deref() != Some(r.status.as_str()) {
            changes.push((r.rule.clone(), prev.unwrap_or_else(|| "not_seen".into())));
            st.rules.insert(
                r.rule.clone(),
                RuleState {
                    status: r.status.clone(),
                    devices: r.devices.clone(),
                    changed_at: now,
                },
            );
        } else if let Some(x) = st.rules.get_mut(&r.rule) {
            x.devices = r.devices.clone();
        }
    }
    // A requirement whose flows all left the window keeps its last state.
    let _ = seen;
    changes
}

/// NDJSON: new flows, then a record per requirement state change.
fn stream(
    out: &mut dyn Write,
    st: &mut LiveState,
    win: &Audit,
    changes: &[(String, String)],
    drop_note: Option<f64>,
    live_name: &str,
) -> std::io::Result<()> {
    let files = vec![live_name.to_string()];
    let fresh: BTreeSet<FrameRef> = st
        .records
        .iter()
        .filter(|(_, s)| !*s)
        .map(|(r, _)| r.first_frame)
        .collect();
    let mut buf = Vec::new();
    for f in win.flows.iter() {
        if fresh.contains(&f.record.first_frame) {
            buf.clear();
            report::write_flow_json(&mut buf, f, &files);
            buf.push(b'\n');
            out.write_all(&buf)?;
        }
    }
    for (_, s) in st.records.iter_mut() {
        *s = true;
    }
    for (rule, prev) in changes {
        let Some(state) = st.rules.get(rule) else {
            continue;
        };
        let findings: Vec<_> = win.findings.iter().filter(|f| &f.rule == rule).collect();
        let note = drop_note.map(|p| {
            format!(
                "{}, but {p:.1}% of packets were dropped during this interval",
                state.status
            )
        });
        if findings.is_empty() {
            let v = serde_json::json!({
                "@timestamp": report::iso_time(state.changed_at),
                "event": {"kind": "alert", "category": ["network"], "type": ["info"], "severity": Severity::Info.ecs()},
                "rule": {"id": rule},
                "message": note.clone().unwrap_or_else(|| format!("{rule}: {prev} -> {}", state.status)),
                "mdmaudit": {
                    "record": "state_change",
                    "verdict": state.status,
                    "previous": prev,
                    "devices": state.devices,
                    "capture_drop_pct": drop_note,
                },
            });
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")?;
        }
        for f in findings {
            let mut v = report::finding_value(f, &files, None);
            if let Some(m) = v.get_mut("mdmaudit").and_then(|m| m.as_object_mut()) {
                m.insert(
                    "state_change".into(),
                    serde_json::json!({"from": prev, "to": state.status}),
                );
                if let Some(p) = drop_note {
                    m.insert("capture_drop_pct".into(), serde_json::json!(p));
                }
            }
            if let (Some(n), Some(m)) = (&note, v.as_object_mut()) {
                let msg = m
                    .get("message")
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string();
                m.insert("message".into(), serde_json::json!(format!("{msg} ({n})")));
            }
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

struct StatusHead<'a> {
    interfaces: &'a [String],
    elapsed: Duration,
    packets: u64,
    counters: &'a [InterfaceCounters],
    open_flows: usize,
    records: usize,
    records_dropped: u64,
    drop_note: Option<f64>,
}

fn clock(ns: Nanos) -> String {
    let s = report::iso_time(ns);
    // 2024-01-02T03:04:05.123Z -> 03:04:05
    s.get(11..19).map(str::to_string).unwrap_or(s)
}

/// Redraw the terminal status view.
fn draw_status(out: &mut dyn Write, h: &StatusHead<'_>, st: &LiveState) -> std::io::Result<()> {
    let mut s = String::from("\x1b[H\x1b[2J");
    let secs = h.elapsed.as_secs();
    s.push_str(&format!(
        "mdmaudit live on {}   {:02}:{:02}:{:02}   {} packets   {} open flows   {} finished kept{}\n",
        h.interfaces.join(", "),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        h.packets,
        h.open_flows,
        h.records,
        if h.records_dropped > 0 {
            format!(" ({} dropped)", h.records_dropped)
        } else {
            String::new()
        }
    ));
    for c in h.counters {
        s.push_str(&format!(
            "  {}: received {}  dropped {}  if-dropped {}  queue-dropped {}\n",
            c.name, c.received, c.dropped, c.if_dropped, c.queue_dropped
        ));
    }
    s.push_str(&format!(
        "\n{:<34} {:<12} {:>5} {:>8} {:>9}  {}\n",
        "requirement", "status", "ok", "blocked", "fallback", "last change"
    ));
    for (rule, r) in st.rules.iter() {
        let n = |k: &str| r.devices.get(k).copied().unwrap_or(0);
        let mut status = r.status.clone();
        if let Some(p) = h.drop_note {
            if status != "ok" {
                status = format!("{status} (but {p:.1}% of packets dropped)");
            }
        }
        s.push_str(&format!(
            "{:<34} {:<12} {:>5} {:>8} {:>9}  {}\n",
            rule,
            status,
            n("ok"),
            n("blocked"),
            n("fallback"),
            clock(r.changed_at)
        ));
    }
    if st.rules.is_empty() {
        s.push_str("(no catalog traffic has finished yet; blocked attempts appear after --tcp-attempt-idle)\n");
    }
    s.push_str("\nCtrl-C: stop and write the report\n");
    out.write_all(s.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_percentage_over_window() {
        let mut h = VecDeque::new();
        assert_eq!(drop_pct(&h), None);
        h.push_back(IntervalDrops {
            end: 1,
            seen: 100,
            lost: 3,
        });
        assert_eq!(drop_pct(&h), Some(3.0));
    }

    #[test]
    fn wrapping_counters() {
        let sh = IfaceShared::default();
        let mut w = Wrapping::default();
        let mk = |r| pcap::Stat {
            received: r,
            dropped: 0,
            if_dropped: 0,
        };
        w.update(&mk(u32::MAX - 1), &sh);
        w.update(&mk(3), &sh);
        assert_eq!(sh.received.load(Ordering::Relaxed), u64::from(u32::MAX) + 4);
    }

    #[test]
    fn ring_names() {
        let r = Ring {
            base: PathBuf::from("/tmp/x/cap.pcapng"),
            files: 3,
            max_bytes: 1,
            interfaces: Vec::new(),
            writer: None,
            written: 0,
            seq: 0,
            paths: VecDeque::new(),
            failed: None,
        };
        assert_eq!(
            r.path_for(0),
            std::path::Path::new("/tmp/x/cap.00001.pcapng")
        );
    }
}
