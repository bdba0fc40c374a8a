//! Reports: the run's counters and the audit's conclusions rendered for people
//! (terminal text) and for programs (one JSON document, or NDJSON records whose field
//! names follow the Elastic Common Schema). Every field is documented in
//! `docs/fields.md`.
//!
//! Output goes through the [`Sink`] trait so that a new format is a new sink and tests
//! capture output in memory. Rendering is deterministic: the same input gives the same
//! bytes, whatever the number of threads that produced it. Nothing here judges flows.

use crate::audit::{Audit, AuditedFlow, Finding, Severity, Verdict};
use crate::engine::RunResult;
use crate::flow::FlowRecord;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::io::{self, Write};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Ndjson,
}

/// What a report is made of.
pub struct ReportInput<'a> {
    pub run: &'a RunResult,
    pub audit: &'a Audit,
    /// Where the catalog came from ("built-in" or the paths).
    pub catalog: String,
    pub catalog_requirements: usize,
    /// Text report: include the per-device view and every flow.
    pub show_devices: bool,
    pub show_flows: bool,
    pub color: bool,
    /// Threads that may format the flow list (JSON and NDJSON); the output is the
    /// same whatever the number.
    pub threads: usize,
}

/// Flows per formatted block, at least and at most. Within these bounds a report
/// is cut into about [`BLOCKS_PER_THREAD`] blocks per thread: a few blocks per
/// thread leave the writer waiting for the first block and the last formatter
/// alone at the end, while every block costs a hand-over and its buffer (a 2,048-flow
/// block is about 1.8 MB of JSON). Report phase, JSON to a file on ext4, 2 threads,
/// medians of 8-16 alternating runs (2026-12-05): main capture (100,000 flows)
/// 64.5 ms with 4,096-flow blocks, 51 ms with 2,048, 53.5 ms with 1,024; 200 MB
/// capture (9,551 flows) 10.5, 9 and 8 ms.
const FLOWS_PER_BLOCK_MIN: usize = 512;
const FLOWS_PER_BLOCK_MAX: usize = 2048;
const BLOCKS_PER_THREAD: usize = 8;

/// Findings per formatted block (a finding with its evidence is a few hundred bytes
/// to a few KB).
const FINDINGS_PER_BLOCK: usize = 256;

/// Flows `first..` of `block` as JSON objects, `sep(i)` before flow `i` (and `end`
/// after each), appended to `buf`.
fn flows_block(
    buf: &mut Vec<u8>,
    first: usize,
    block: &[AuditedFlow],
    files: &[String],
    sep: &(dyn Fn(usize) -> &'static [u8] + Sync),
    end: &'static [u8],
) {
    buf.reserve(block.len().saturating_mul(1024));
    for (k, f) in block.iter().enumerate() {
        // The name (also the SNI, when there is one) is a string elsewhere on the
        // heap: ask for it ahead.
        if let Some(next) = block.get(k.wrapping_add(4)) {
            let r = &next.record;
            crate::prefetch::prefetch(r.name.as_deref().map(str::as_bytes));
        }
        buf.extend_from_slice(sep(first.saturating_add(k)));
        write_flow_json(buf, f, files);
        buf.extend_from_slice(end);
    }
}

/// Findings `first..` of `block` as JSON objects, `sep(i)` before finding `i` (and
/// `end` after each), appended to `buf`.
fn findings_block(
    buf: &mut Vec<u8>,
    first: usize,
    block: &[Finding],
    r: &ReportInput<'_>,
    files: &[String],
    sep: &(dyn Fn(usize) -> &'static [u8] + Sync),
    end: &'static [u8],
) {
    for (k, f) in block.iter().enumerate() {
        buf.extend_from_slice(sep(first.saturating_add(k)));
        write_finding_json(buf, f, files, r.run.capture.first_ts);
        buf.extend_from_slice(end);
    }
}

/// Write `blocks` blocks of output in order, block `i` made by `format(i, buf)` into
/// an empty `buf`, formatting them on `threads` threads: this one and `threads - 1`
/// helpers.
///
/// Blocks are not dealt out in advance: each thread takes the next block nobody has
/// started, so a thread that is behind never holds up the others (dealt round-robin,
/// the writer waited for the one block a slow formatter had not finished while the
/// other formatter sat on full buffers). This thread writes the blocks in order
/// (writing, a copy into the page cache, costs about half as much as formatting)
/// and, rather than wait for the next one, formats one itself: with one helper per
/// other core no thread is ever runnable without a CPU.
///
/// Blocks are made at most `2 * threads + 1` past the last one written, and their
/// buffers are recycled: the run touches a few blocks' worth of fresh memory instead of
/// faulting in (and zeroing) a new buffer per block, and the block written next is
/// still in cache when the kernel copies it.
fn write_blocks(
    out: &mut dyn Write,
    blocks: usize,
    threads: usize,
    format: &(dyn Fn(usize, &mut Vec<u8>) -> io::Result<()> + Sync),
) -> io::Result<()> {
    let threads = threads.max(1).min(blocks);
    if threads <= 1 {
        let mut buf = Vec::new();
        for i in 0..blocks {
            buf.clear();
            format(i, &mut buf)?;
            out.write_all(&buf)?;
        }
        return Ok(());
    }
    let ahead = threads.saturating_mul(2).saturating_add(1);
    let shared = BlockQueue {
        state: std::sync::Mutex::new(Blocks {
            next: 0,
            written: 0,
            ready: std::collections::BTreeMap::new(),
            spare: Vec::new(),
            stop: false,
        }),
        cv: std::sync::Condvar::new(),
        blocks,
        ahead,
    };
    std::thread::scope(|sc| -> io::Result<()> {
        // Helpers stop (and the scope can end) however this thread leaves.
        let _stop = StopGuard(&shared, true);
        for _ in 1..threads {
            let shared = &shared;
            // A helper that cannot start leaves its share to the others.
            let _ = crate::threads::spawn_scoped(sc, "mdmaudit-report".into(), move || {
                let _stop = StopGuard(shared, false);
                while let Some((i, mut buf)) = shared.claim(true) {
                    let r = format(i, &mut buf).map(|()| buf);
                    shared.done(i, r);
                }
            });
        }
        for i in 0..blocks {
            let buf = loop {
                if let Some(r) = shared.take(i)? {
                    break r?;
                }
                // Block `i` is not ready: make one (perhaps `i` itself) meanwhile.
                if let Some((j, mut buf)) = shared.claim(false) {
                    let r = format(j, &mut buf).map(|()| buf);
                    shared.done(j, r);
                } else {
                    shared.wait_for(i)?;
                }
            };
            out.write_all(&buf)?;
            shared.written(i, buf);
        }
        Ok(())
    })
}

/// Blocks of a report between its formatting threads and its writer.
struct BlockQueue {
    state: std::sync::Mutex<Blocks>,
    cv: std::sync::Condvar,
    blocks: usize,
    /// Blocks made at most this many past the last one written.
    ahead: usize,
}

struct Blocks {
    /// The next block nobody has started.
    next: usize,
    /// Blocks written so far.
    written: usize,
    /// Made and not yet written.
    ready: std::collections::BTreeMap<usize, io::Result<Vec<u8>>>,
    /// Buffers of written blocks, for the next ones.
    spare: Vec<Vec<u8>>,
    /// The writer is gone (done, or a write failed), or a helper died: stop.
    stop: bool,
}

impl BlockQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next block to make and an empty buffer for it; None when every block is
    /// started (or on stop). A helper (`wait`) waits while the next block is too
    /// far ahead of the writer; the writer does not.
    fn claim(&self, wait: bool) -> Option<(usize, Vec<u8>)> {
        let mut g = self.lock();
        loop {
            if g.stop || g.next >= self.blocks {
                return None;
            }
            if g.next < g.written.saturating_add(self.ahead) {
                break;
            }
            if !wait {
                return None;
            }
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        let i = g.next;
        g.next = i.saturating_add(1);
        let mut buf = g.spare.pop().unwrap_or_default();
        drop(g);
        buf.clear();
        Some((i, buf))
    }

    /// Block `i` is made.
    fn done(&self, i: usize, r: io::Result<Vec<u8>>) {
        self.lock().ready.insert(i, r);
        self.cv.notify_all();
    }

    /// Block `i` if it is made.
    fn take(&self, i: usize) -> io::Result<Option<io::Result<Vec<u8>>>> {
        let mut g = self.lock();
        match g.ready.remove(&i) {
            Some(r) => Ok(Some(r)),
            None if g.stop => Err(io::Error::other("a formatting thread failed")),
            None => Ok(None),
        }
    }

    /// Wait until block `i` is made (another thread has started it).
    fn wait_for(&self, i: usize) -> io::Result<()> {
        let mut g = self.lock();
        while !g.ready.contains_key(&i) {
            if g.stop {
                return Err(io::Error::other("a formatting thread failed"));
            }
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Block `i` is written; its buffer can take another.
    fn written(&self, i: usize, buf: Vec<u8>) {
        let mut g = self.lock();
        g.written = i.saturating_add(1);
        g.spare.push(buf);
        drop(g);
        self.cv.notify_all();
    }
}

/// Stops a [`BlockQueue`] when dropped: the writer's, when it is done or a write
/// failed (helpers waiting for room stop waiting); a helper's, only if it unwinds
/// (the block it took would never come).
struct StopGuard<'a>(&'a BlockQueue, bool);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.1 || std::thread::panicking() {
            self.0.lock().stop = true;
            self.0.cv.notify_all();
        }
    }
}

/// The report's lists after its head: the flows and the findings, in `order`, as
/// blocks for [`write_blocks`]; `between(k)` is written after list k (not after
/// the last).
struct Lists<'a> {
    r: &'a ReportInput<'a>,
    files: &'a [String],
    sep: &'a (dyn Fn(usize) -> &'static [u8] + Sync),
    end: &'static [u8],
}

/// Which of the report's lists a block belongs to.
#[derive(Clone, Copy)]
enum List {
    Flows,
    Findings,
}

impl Lists<'_> {
    /// Flows per block of the flow list (see [`FLOWS_PER_BLOCK_MAX`]).
    fn flows_per_block(&self) -> usize {
        let rounds = self.r.threads.max(1).saturating_mul(BLOCKS_PER_THREAD);
        (self.r.audit.flows.len() / rounds).clamp(FLOWS_PER_BLOCK_MIN, FLOWS_PER_BLOCK_MAX)
    }

    fn blocks(&self, list: List) -> usize {
        match list {
            List::Flows => self.r.audit.flows.len().div_ceil(self.flows_per_block()),
            List::Findings => self.r.audit.findings.len().div_ceil(FINDINGS_PER_BLOCK),
        }
    }

    /// Block `i` of `list`, appended to `buf`.
    fn format(&self, list: List, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        match list {
            List::Flows => {
                let per_block = self.flows_per_block();
                let first = i.saturating_mul(per_block);
                let block = self.r.audit.flows.get(first..).unwrap_or_default();
                let block = block.get(..per_block).unwrap_or(block);
                flows_block(buf, first, block, self.files, self.sep, self.end);
            }
            List::Findings => {
                let first = i.saturating_mul(FINDINGS_PER_BLOCK);
                let block = self.r.audit.findings.get(first..).unwrap_or_default();
                let block = block.get(..FINDINGS_PER_BLOCK).unwrap_or(block);
                findings_block(buf, first, block, self.r, self.files, self.sep, self.end);
            }
        }
        Ok(())
    }

    /// Write `order`'s lists, `between[k]` after list k, formatting every block on
    /// the report's threads: the findings of a large capture format alongside its
    /// flows instead of before them. `head` and `tail`, when given, are made as the
    /// first and the last block, on those threads too: the report's summary (a
    /// few milliseconds of building and formatting for a large capture) is made
    /// while the first blocks of the lists are formatted, not before them.
    fn write(
        &self,
        out: &mut dyn Write,
        order: [List; 2],
        between: [&'static [u8]; 2],
        head: Option<&Piece<'_>>,
        tail: Option<&Piece<'_>>,
    ) -> io::Result<()> {
        let [a, b] = order;
        let (na, nb) = (self.blocks(a), self.blocks(b));
        let first = usize::from(head.is_some());
        // Blocks of the lists and the two separators, after the head.
        let middle = na.saturating_add(nb).saturating_add(2);
        let format = |i: usize, buf: &mut Vec<u8>| -> io::Result<()> {
            let Some(i) = i.checked_sub(first) else {
                return head.map_or(Ok(()), |h| h(buf));
            };
            if i < na {
                self.format(a, i, buf)
            } else if i == na {
                buf.extend_from_slice(between[0]);
                Ok(())
            } else if i <= na.saturating_add(nb) {
                self.format(b, i.saturating_sub(na).saturating_sub(1), buf)
            } else if i < middle {
                buf.extend_from_slice(between[1]);
                Ok(())
            } else {
                tail.map_or(Ok(()), |t| t(buf))
            }
        };
        write_blocks(
            out,
            first
                .saturating_add(middle)
                .saturating_add(usize::from(tail.is_some())),
            self.r.threads,
            &format,
        )
    }
}

/// A part of a report made into a buffer on any of the report's threads (its head
/// or its tail).
type Piece<'a> = dyn Fn(&mut Vec<u8>) -> io::Result<()> + Sync + 'a;

/// A report writer for one format.
pub trait Sink {
    fn write_report(&mut self, r: &ReportInput<'_>, out: &mut dyn Write) -> io::Result<()>;
}

pub fn sink_for(f: Format) -> Box<dyn Sink> {
    match f {
        Format::Text => Box::new(TextSink),
        Format::Json => Box::new(JsonSink),
        Format::Ndjson => Box::new(NdjsonSink),
    }
}

/// RFC 3339 UTC with nanoseconds; pre-1970 and far-future times included.
pub fn iso_time(ns: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| ns.to_string()),
        Err(_) => ns.to_string(),
    }
}

/// TCP flags seen, as letters in a fixed order (`SAPF`), without allocating.
fn flags_letters(f: u8) -> ([u8; 8], usize) {
    let mut buf = [0u8; 8];
    let mut n = 0;
    for (bit, c) in [
        (0x02u8, b'S'),
        (0x10, b'A'),
        (0x08, b'P'),
        (0x01, b'F'),
        (0x04, b'R'),
        (0x20, b'U'),
        (0x40, b'E'),
        (0x80, b'C'),
    ] {
        if f & bit != 0 {
            if let Some(slot) = buf.get_mut(n) {
                *slot = c;
            }
            n += 1;
        }
    }
    (buf, n)
}

fn flags_str(f: u8) -> String {
    let (buf, n) = flags_letters(f);
    buf.get(..n)
        .map(|b| b.iter().map(|&c| char::from(c)).collect())
        .unwrap_or_default()
}

/// Append the flags as a JSON string (the letters need no escaping).
fn flags_json(out: &mut Vec<u8>, f: u8) {
    let (buf, n) = flags_letters(f);
    out.push(b'"');
    out.extend_from_slice(buf.get(..n).unwrap_or_default());
    out.push(b'"');
}

fn event_outcome(r: &FlowRecord) -> &'static str {
    if r.attempt_failed() {
        "failure"
    } else if r.reached() {
        "success"
    } else {
        "unknown"
    }
}

/// RFC 3339 time serialized without building a JSON value.
struct Iso(i64);

impl serde::Serialize for Iso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&iso_time(self.0))
    }
}

/// A value serialized through `Display` (addresses, ranges) without a `String`.
struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(serde::Serialize)]
struct FlowEvent {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    ty: [&'static str; 1],
    start: Iso,
    end: Iso,
    duration: i64,
    outcome: &'static str,
}

#[derive(serde::Serialize)]
struct Endpoint<'a> {
    ip: Shown<std::net::IpAddr>,
    port: u16,
    packets: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct Network {
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    packets: u64,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct TlsClient<'a> {
    server_name: &'a str,
}

#[derive(serde::Serialize)]
struct Tls<'a> {
    client: TlsClient<'a>,
}

#[derive(serde::Serialize)]
struct RuleIds<'a> {
    id: Vec<&'a str>,
}

#[derive(serde::Serialize)]
struct TcpFlags {
    client: String,
    server: String,
}

#[derive(serde::Serialize)]
struct IcmpOut {
    #[serde(rename = "type")]
    ty: u8,
    code: u8,
    admin_prohibited: bool,
    frame: u64,
    reporter: Shown<std::net::IpAddr>,
}

#[derive(serde::Serialize)]
struct MatchOut<'a> {
    rule: &'a str,
    path: crate::catalog::PortPath,
    by: Shown<ByText<'a>>,
    verdict: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct FlowMeta<'a> {
    record: &'static str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog_vendor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog_range: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttfb_ms: Option<f64>,
    first_frame: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syn_retransmits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_hello: Option<crate::flow::HelloStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<IcmpOut>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    one_direction: bool,
    ended_by: crate::flow::EndReason,
    /// Other bare flows this record stands for (over `--max-records`).
    #[serde(skip_serializing_if = "is_zero")]
    folded: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    matches: Vec<MatchOut<'a>>,
}

/// One flow as an ECS-shaped record (field order is fixed, see docs/fields.md).
#[derive(serde::Serialize)]
pub struct FlowOut<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Iso,
    event: FlowEvent,
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    network: Network,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleIds<'a>>,
    mdmaudit: FlowMeta<'a>,
}

/// The bare pattern or range of a match (`*.push.apple.com`, `17.0.0.0/8`).
struct ByText<'a>(&'a crate::catalog::MatchBy);

impl std::fmt::Display for ByText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            crate::catalog::MatchBy::Host(p) => f.write_str(p),
            crate::catalog::MatchBy::Address(n) => write!(f, "{n}"),
            crate::catalog::MatchBy::SiteRole { role, net } => write!(f, "site:{role}={net}"),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One flow as an ECS-shaped record.
pub fn flow_out<'a>(f: &'a AuditedFlow, files: &'a [String]) -> FlowOut<'a> {
    let r: &FlowRecord = &f.record;
    let tcp = r.transport == crate::model::Transport::Tcp;
    FlowOut {
        timestamp: Iso(r.first_ts),
        event: FlowEvent {
            kind: "event",
            category: ["network"],
            ty: ["connection"],
            start: Iso(r.first_ts),
            end: Iso(r.last_ts),
            duration: r.last_ts.saturating_sub(r.first_ts),
            outcome: event_outcome(r),
        },
        source: Endpoint {
            ip: Shown(r.client.ip()),
            port: r.client.port(),
            packets: r.client_packets,
            bytes: r.client_bytes,
            domain: None,
        },
        destination: Endpoint {
            ip: Shown(r.server.ip()),
            port: r.server.port(),
            packets: r.server_packets,
            bytes: r.server_bytes,
            domain: r.name.as_deref(),
        },
        network: Network {
            transport: r.transport.as_str(),
            protocol: r.app.map(|a| a.as_str()),
            packets: r.client_packets.wrapping_add(r.server_packets),
            bytes: r.client_bytes.wrapping_add(r.server_bytes),
        },
        tls: r.sni().map(|sni| Tls {
            client: TlsClient { server_name: sni },
        }),
        rule: (!f.matches.is_empty()).then(|| RuleIds {
            id: f.matches.iter().map(|x| &*x.rule).collect(),
        }),
        mdmaudit: FlowMeta {
            record: "flow",
            outcome: r.outcome.as_str(),
            name_source: f.name_source().map(|s| s.as_str()),
            catalog_vendor: f.catalog_range.as_deref().map(|(v, _)| v.as_str()),
            catalog_range: f.catalog_range.as_deref().map(|(_, n)| n.as_str()),
            rtt_ms: r.rtt_ns.map(|rtt| rtt as f64 / 1e6),
            ttfb_ms: r.ttfb_ns.map(|t| t as f64 / 1e6),
            first_frame: r.first_frame.frame,
            capture_file: files.get(r.first_frame.file as usize).map(String::as_str),
            syn_retransmits: tcp.then_some(r.syn_retransmits),
            tcp_flags: tcp.then(|| TcpFlags {
                client: flags_str(r.client_flags),
                server: flags_str(r.server_flags),
            }),
            client_hello: r.hello,
            icmp: r.icmp.as_ref().map(|i| IcmpOut {
                ty: i.icmp_type,
                code: i.code,
                admin_prohibited: i.admin_prohibited,
                frame: i.frame.frame,
                reporter: Shown(i.reporter),
            }),
            one_direction: r.one_direction,
            ended_by: r.ended_by,
            folded: r.folded,
            matches: f
                .matches
                .iter()
                .map(|x| MatchOut {
                    rule: &x.rule,
                    path: x.path,
                    by: Shown(ByText(&x.by)),
                    verdict: x.verdict.map(|v| v.as_str()),
                })
                .collect(),
        },
    }
}

/// Append one flow as JSON: the same bytes as `serde_json::to_writer(flow_out(f,
/// files))`, without going through serde (the flow list is most of a report).
pub fn write_flow_json(out: &mut Vec<u8>, f: &AuditedFlow, files: &[String]) {
    use crate::jsonw::{float, int, ip, key, string, time};
    let r: &FlowRecord = &f.record;
    let tcp = r.transport == crate::model::Transport::Tcp;
    out.extend_from_slice(b"{\"@timestamp\":");
    let stamp = out.len();
    time(out, r.first_ts);
    let stamp = stamp..out.len();
    out.extend_from_slice(
        b",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\"type\":[\"connection\"],\"start\":",
    );
    // The start is the @timestamp: its text again.
    out.extend_from_within(stamp);
    out.extend_from_slice(b",\"end\":");
    time(out, r.last_ts);
    out.extend_from_slice(b",\"duration\":");
    int(out, r.last_ts.saturating_sub(r.first_ts));
    out.extend_from_slice(b",\"outcome\":");
    string(out, event_outcome(r));
    // An ECS endpoint's fields, after its opening `"ip":`.
    let endpoint = |out: &mut Vec<u8>, at: std::net::SocketAddr, packets: u64, bytes: u64| {
        ip(out, at.ip());
        out.extend_from_slice(b",\"port\":");
        int(out, at.port());
        out.extend_from_slice(b",\"packets\":");
        int(out, packets);
        out.extend_from_slice(b",\"bytes\":");
        int(out, bytes);
    };
    out.extend_from_slice(b"},\"source\":{\"ip\":");
    endpoint(out, r.client, r.client_packets, r.client_bytes);
    out.extend_from_slice(b"},\"destination\":{\"ip\":");
    endpoint(out, r.server, r.server_packets, r.server_bytes);
    if let Some(name) = r.name.as_deref() {
        out.extend_from_slice(b",\"domain\":");
        string(out, name);
    }
    out.extend_from_slice(b"},\"network\":{\"transport\":");
    string(out, r.transport.as_str());
    if let Some(a) = r.app {
        out.extend_from_slice(b",\"protocol\":");
        string(out, a.as_str());
    }
    out.extend_from_slice(b",\"packets\":");
    int(out, r.client_packets.wrapping_add(r.server_packets));
    out.extend_from_slice(b",\"bytes\":");
    int(out, r.client_bytes.wrapping_add(r.server_bytes));
    out.push(b'}');
    if let Some(sni) = r.sni() {
        out.extend_from_slice(b",\"tls\":{\"client\":{\"server_name\":");
        string(out, sni);
        out.extend_from_slice(b"}}");
    }
    if !f.matches.is_empty() {
        out.extend_from_slice(b",\"rule\":{\"id\":[");
        for (i, m) in f.matches.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, &m.rule);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b",\"mdmaudit\":{\"record\":\"flow\",\"outcome\":");
    string(out, r.outcome.as_str());
    if let Some(ns) = f.name_source() {
        out.push(b',');
        key(out, "name_source");
        string(out, ns.as_str());
    }
    if let Some((vendor, range)) = f.catalog_range.as_deref() {
        out.push(b',');
        key(out, "catalog_vendor");
        string(out, vendor);
        out.push(b',');
        key(out, "catalog_range");
        string(out, range);
    }
    if let Some(rtt) = r.rtt_ns {
        out.push(b',');
        key(out, "rtt_ms");
        float(out, rtt as f64 / 1e6);
    }
    if let Some(t) = r.ttfb_ns {
        out.push(b',');
        key(out, "ttfb_ms");
        float(out, t as f64 / 1e6);
    }
    out.push(b',');
    key(out, "first_frame");
    int(out, r.first_frame.frame);
    if let Some(file) = files.get(r.first_frame.file as usize) {
        out.push(b',');
        key(out, "capture_file");
        string(out, file);
    }
    if tcp {
        out.push(b',');
        key(out, "syn_retransmits");
        int(out, r.syn_retransmits);
        out.push(b',');
        key(out, "tcp_flags");
        out.extend_from_slice(b"{\"client\":");
        flags_json(out, r.client_flags);
        out.extend_from_slice(b",\"server\":");
        flags_json(out, r.server_flags);
        out.push(b'}');
    }
    if let Some(h) = r.hello {
        out.push(b',');
        key(out, "client_hello");
        string(out, h.as_str());
    }
    if let Some(i) = r.icmp.as_deref() {
        out.push(b',');
        key(out, "icmp");
        out.extend_from_slice(b"{\"type\":");
        int(out, i.icmp_type);
        out.extend_from_slice(b",\"code\":");
        int(out, i.code);
        out.extend_from_slice(if i.admin_prohibited {
            b",\"admin_prohibited\":true,\"frame\":"
        } else {
            b",\"admin_prohibited\":false,\"frame\":"
        });
        int(out, i.frame.frame);
        out.extend_from_slice(b",\"reporter\":");
        ip(out, i.reporter);
        out.push(b'}');
    }
    if r.one_direction {
        out.extend_from_slice(b",\"one_direction\":true");
    }
    out.push(b',');
    key(out, "ended_by");
    string(out, r.ended_by.as_str());
    if r.folded != 0 {
        out.push(b',');
        key(out, "folded");
        int(out, r.folded);
    }
    if !f.matches.is_empty() {
        out.push(b',');
        key(out, "matches");
        out.push(b'[');
        for (i, m) in f.matches.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"rule\":");
            string(out, &m.rule);
            out.extend_from_slice(b",\"path\":");
            string(out, m.path.as_str());
            out.extend_from_slice(b",\"by\":");
            match &m.by {
                crate::catalog::MatchBy::Host(p) => string(out, p),
                by => string(out, &ByText(by).to_string()),
            }
            out.extend_from_slice(b",\"verdict\":");
            match m.verdict {
                Some(v) => string(out, v.as_str()),
                None => out.extend_from_slice(b"null"),
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
}

/// One finding as an ECS-shaped alert.
pub fn finding_value(f: &Finding, files: &[String], capture_start: Option<i64>) -> Value {
    let ts = f.first_ts.or(capture_start).unwrap_or(0);
    let evidence: Vec<Value> = f
        .evidence
        .iter()
        .map(|e| {
            json!({
                "frame": e.frame.frame,
                "capture_file": files.get(e.frame.file as usize),
                "destination": e.destination,
                "transport": e.transport.as_str(),
                "port": e.port,
                "outcome": e.outcome.as_str(),
                "path": e.role,
                "flows": e.flows,
                "failed": e.failed,
                "syn_retransmits": e.syn_retransmits,
                "icmp_reporter": e.icmp_reporter.map(|a| a.to_string()),
                "admin_prohibited": e.admin_prohibited,
            })
        })
        .collect();
    let mut top = Map::new();
    top.insert("@timestamp".into(), json!(iso_time(ts)));
    top.insert(
        "event".into(),
        json!({
            "kind": "alert",
            "category": ["network"],
            "type": ["info"],
            "severity": f.severity.ecs(),
        }),
    );
    top.insert("rule".into(), json!({ "id": f.rule }));
    if let Some(d) = f.device {
        top.insert("source".into(), json!({ "ip": d.to_string() }));
    }
    top.insert("message".into(), json!(f.summary));
    let mut m = Map::new();
    m.insert("record".into(), json!("finding"));
    m.insert("verdict".into(), json!(f.verdict.as_str()));
    m.insert("severity".into(), json!(f.severity.as_str()));
    m.insert("flows".into(), json!(f.flows));
    m.insert("evidence".into(), Value::Array(evidence));
    if !f.remediation.is_empty() {
        m.insert("remediation".into(), json!(f.remediation.join("; ")));
    }
    top.insert("mdmaudit".into(), Value::Object(m));
    Value::Object(top)
}

/// [`finding_value`] written straight as compact JSON: the same bytes as
/// `serde_json::to_writer` of it (keys in the same sorted order), without building
/// the value (a tree of maps per finding).
pub fn write_finding_json(
    out: &mut Vec<u8>,
    f: &Finding,
    files: &[String],
    capture_start: Option<i64>,
) {
    use crate::jsonw::{int, ip, string, time};
    let ts = f.first_ts.or(capture_start).unwrap_or(0);
    out.extend_from_slice(b"{\"@timestamp\":");
    time(out, ts);
    out.extend_from_slice(
        b",\"event\":{\"category\":[\"network\"],\"kind\":\"alert\",\"severity\":",
    );
    int(out, f.severity.ecs());
    out.extend_from_slice(b",\"type\":[\"info\"]},\"mdmaudit\":{\"evidence\":[");
    for (i, e) in f.evidence.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(if e.admin_prohibited {
            b"{\"admin_prohibited\":true,\"capture_file\":"
        } else {
            b"{\"admin_prohibited\":false,\"capture_file\":"
        });
        match files.get(e.frame.file as usize) {
            Some(file) => string(out, file),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"destination\":");
        string(out, &e.destination);
        out.extend_from_slice(if e.failed {
            b",\"failed\":true,\"flows\":"
        } else {
            b",\"failed\":false,\"flows\":"
        });
        int(out, e.flows);
        out.extend_from_slice(b",\"frame\":");
        int(out, e.frame.frame);
        out.extend_from_slice(b",\"icmp_reporter\":");
        match e.icmp_reporter {
            Some(a) => ip(out, a),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"outcome\":");
        string(out, e.outcome.as_str());
        out.extend_from_slice(b",\"path\":");
        string(out, e.role);
        out.extend_from_slice(b",\"port\":");
        int(out, e.port);
        out.extend_from_slice(b",\"syn_retransmits\":");
        int(out, e.syn_retransmits);
        out.extend_from_slice(b",\"transport\":");
        string(out, e.transport.as_str());
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"flows\":");
    int(out, f.flows);
    out.extend_from_slice(b",\"record\":\"finding\"");
    if !f.remediation.is_empty() {
        out.extend_from_slice(b",\"remediation\":");
        string(out, &f.remediation.join("; "));
    }
    out.extend_from_slice(b",\"severity\":");
    string(out, f.severity.as_str());
    out.extend_from_slice(b",\"verdict\":");
    string(out, f.verdict.as_str());
    out.extend_from_slice(b"},\"message\":");
    string(out, &f.summary);
    out.extend_from_slice(b",\"rule\":{\"id\":");
    string(out, &f.rule);
    out.push(b'}');
    if let Some(d) = f.device {
        out.extend_from_slice(b",\"source\":{\"ip\":");
        ip(out, d);
        out.push(b'}');
    }
    out.push(b'}');
}

fn files(r: &ReportInput<'_>) -> Vec<String> {
    r.run.inputs.iter().map(|i| i.file.clone()).collect()
}

/// Capture-loss estimate in percent (ACKs above a gap / ACKs of new data).
fn loss_pct(r: &ReportInput<'_>) -> f64 {
    let s = &r.run.flow_stats;
    if s.acks_seen == 0 {
        0.0
    } else {
        100.0 * s.acks_above_gap as f64 / s.acks_seen as f64
    }
}

/// The report without its `findings` and `flows` arrays (small: counters, profiles,
/// requirement status, devices).
pub fn summary_value(r: &ReportInput<'_>) -> Value {
    let cap = &r.run.capture;
    let duration = match (cap.first_ts, cap.last_ts) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / 1e9,
        _ => 0.0,
    };
    let damage: Vec<Value> = r
        .run
        .inputs
        .iter()
        .filter_map(|i| i.damage.as_ref())
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    json!({
        "tool": {"name": "mdmaudit", "version": env!("CARGO_PKG_VERSION")},
        "complete": r.run.complete(),
        "damage": damage,
        "findings_present": !r.audit.findings.is_empty(),
        "inputs": r.run.inputs,
        "catalog": {"source": r.catalog, "requirements": r.catalog_requirements},
        "capture": {
            "start": cap.first_ts.map(iso_time),
            "end": cap.last_ts.map(iso_time),
            "duration_s": duration,
            "counters": cap,
            "capture_loss": {
                "acks_seen": r.run.flow_stats.acks_seen,
                "acks_above_gap": r.run.flow_stats.acks_above_gap,
                "gap_bytes": r.run.flow_stats.gap_bytes,
                "estimate_pct": loss_pct(r),
            },
            "direction": r.audit.direction,
        },
        "flow_counters": r.run.flow_stats,
        "summarized_flows": {
            "folded_flows": r.run.summarized.folded_flows(),
            "fold_records": r.run.summarized.fold_records(),
            "flows": r.run.summarized.summarized(),
            "rows": r.run.summarized.rows(),
        },
        "profiles": r.audit.profiles,
        "site": site_value(r.audit),
        "site_suggestions": r.audit.site_suggestions,
        "requirements": r.audit.requirements,
        "devices": r.audit.devices,
    })
}

/// The site file the audit used: `file`, `name`, `strict` (in effect), `profiles`,
/// `roles` (role -> addresses), `allow` (ids); null without one.
fn site_value(a: &Audit) -> Value {
    match &a.site {
        None => Value::Null,
        Some(site) => {
            let roles: Map<String, Value> = site
                .roles
                .iter()
                .map(|(k, v)| {
                    let list: Vec<String> = v.iter().map(crate::site::net_text).collect();
                    (k.clone(), json!(list))
                })
                .collect();
            let allow: Vec<&str> = site.allow.iter().map(|x| x.id.as_str()).collect();
            json!({
                "file": site.file,
                "name": site.name,
                "strict": a.strict,
                "profiles": site.profiles,
                "roles": roles,
                "allow": allow,
            })
        }
    }
}

/// Text lines about the site: the file used, or the roles the traffic suggests with
/// the site file that would confirm them.
fn site_text(a: &Audit, s: &mut String) {
    if let Some(site) = &a.site {
        let roles: Vec<String> = site
            .roles
            .iter()
            .map(|(k, v)| {
                let list: Vec<String> = v.iter().map(crate::site::net_text).collect();
                format!("{k} {}", list.join(","))
            })
            .collect();
        let _ = writeln!(
            s,
            "site     {}{}{}; roles: {}",
            site.file,
            site.name
                .as_ref()
                .map(|n| format!(" (\"{n}\")"))
                .unwrap_or_default(),
            if a.strict { ", strict" } else { "" },
            roles.join("; ")
        );
        return;
    }
    let Some(sg) = &a.site_suggestions else {
        return;
    };
    let _ = writeln!(
        s,
        "site     no site file given; the traffic suggests these roles:"
    );
    for r in &sg.reasons {
        let _ = writeln!(s, "           {} {}: {}", r.role, r.address, r.reason);
    }
    let _ = writeln!(
        s,
        "         site file that would confirm them (check it, save it, pass --site FILE):"
    );
    for line in sg.site_file.lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "           {line}");
        }
    }
}

/// One JSON document: the summary fields (pretty-printed), then `findings` and
/// `flows`, one compact record per line, streamed without building the whole
/// document in memory.
pub struct JsonSink;

impl Sink for JsonSink {
    fn write_report(&mut self, r: &ReportInput<'_>, out: &mut dyn Write) -> io::Result<()> {
        let files = files(r);
        let head = |buf: &mut Vec<u8>| -> io::Result<()> {
            let head = serde_json::to_string_pretty(&summary_value(r))?;
            // "{ ...fields... \n}" -> keep the fields, append the two arrays.
            let body = head
                .strip_suffix('}')
                .map(|h| h.trim_end())
                .unwrap_or(&head);
            buf.extend_from_slice(body.as_bytes());
            buf.extend_from_slice(b",\n  \"findings\": [");
            Ok(())
        };
        let sep = |i: usize| -> &'static [u8] {
            if i == 0 {
                b"\n    "
            } else {
                b",\n    "
            }
        };
        let lists = Lists {
            r,
            files: &files,
            sep: &sep,
            end: b"",
        };
        let findings_end: &[u8] = if r.audit.findings.is_empty() {
            b"],\n  \"flows\": ["
        } else {
            b"\n  ],\n  \"flows\": ["
        };
        let flows_end: &[u8] = if r.audit.flows.is_empty() {
            b"]\n}\n"
        } else {
            b"\n  ]\n}\n"
        };
        lists.write(
            out,
            [List::Findings, List::Flows],
            [findings_end, flows_end],
            Some(&head),
            None,
        )
    }
}

/// One record per line: every flow, then every finding, then a summary record.
pub struct NdjsonSink;

impl Sink for NdjsonSink {
    fn write_report(&mut self, r: &ReportInput<'_>, out: &mut dyn Write) -> io::Result<()> {
        let files = files(r);
        let none = |_: usize| -> &'static [u8] { b"" };
        let lists = Lists {
            r,
            files: &files,
            sep: &none,
            end: b"\n",
        };
        let summary = |buf: &mut Vec<u8>| -> io::Result<()> {
            let mut summary = summary_value(r);
            if let Value::Object(m) = &mut summary {
                m.insert(
                    "@timestamp".into(),
                    json!(iso_time(r.run.capture.first_ts.unwrap_or(0))),
                );
                m.insert(
                    "event".into(),
                    json!({"kind": "metric", "category": ["network"], "type": ["info"]}),
                );
                m.insert("mdmaudit".into(), json!({"record": "summary"}));
            }
            serde_json::to_writer(&mut *buf, &summary)?;
            buf.push(b'\n');
            Ok(())
        };
        lists.write(
            out,
            [List::Flows, List::Findings],
            [b"", b""],
            None,
            Some(&summary),
        )
    }
}

/// The terminal report.
pub struct TextSink;

struct Paint {
    on: bool,
}

impl Paint {
    fn sev(&self, s: Severity, text: &str) -> String {
        if !self.on {
            return text.to_string();
        }
        let code = match s {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
    fn status(&self, st: &str, text: &str) -> String {
        let sev = match st {
            "blocked" => Some(Severity::Error),
            "fallback" | "legacy" | "unexpected" | "missing" => Some(Severity::Warning),
            "ok" => None,
            _ => Some(Severity::Info),
        };
        match (self.on, sev) {
            (false, _) => text.to_string(),
            (true, None) => format!("\x1b[32m{text}\x1b[0m"),
            (true, Some(s)) => self.sev(s, text),
        }
    }
    fn bold(&self, text: &str) -> String {
        if self.on {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

impl Sink for TextSink {
    fn write_report(&mut self, r: &ReportInput<'_>, out: &mut dyn Write) -> io::Result<()> {
        let mut s = String::new();
        let p = Paint { on: r.color };
        let cap = &r.run.capture;
        let a = r.audit;
        let _ = writeln!(
            s,
            "{}",
            p.bold(&format!("mdmaudit {} report", env!("CARGO_PKG_VERSION")))
        );
        for i in r.run.inputs.iter() {
            let state = match &i.damage {
                None => "read completely".to_string(),
                Some(d) => format!(
                    "DAMAGED: reading stopped{} after {} packets: {}",
                    d.offset
                        .map(|o| format!(" at byte {o}"))
                        .unwrap_or_default(),
                    d.packets_read,
                    d.reason
                ),
            };
            let lt = if i.linktype_supported {
                i.linktype_name.clone()
            } else {
                format!(
                    "{} (link type {}, not decoded)",
                    i.linktype_name, i.linktype
                )
            };
            let _ = writeln!(
                s,
                "input    {}: {}, {} packets, {}; {}",
                i.file,
                lt,
                i.packets,
                human_bytes(i.bytes),
                state
            );
        }
        let duration = match (cap.first_ts, cap.last_ts) {
            (Some(x), Some(y)) => (y.saturating_sub(x)) as f64 / 1e9,
            _ => 0.0,
        };
        // Every flow: those kept, those folded into them, those counted only.
        let weight = |f: &crate::audit::AuditedFlow| f.record.folded.saturating_add(1);
        let tcp_rows: u64 = r
            .run
            .summarized
            .rows()
            .iter()
            .filter(|row| row.transport == crate::model::Transport::Tcp)
            .map(|row| row.flows)
            .sum();
        let tcp = a
            .flows
            .iter()
            .filter(|f| f.record.transport == crate::model::Transport::Tcp)
            .map(weight)
            .sum::<u64>()
            .saturating_add(tcp_rows);
        let all = a
            .flows
            .iter()
            .map(weight)
            .sum::<u64>()
            .saturating_add(r.run.summarized.summarized());
        let _ = writeln!(
            s,
            "capture  {} to {} ({:.1} s), {} packets, {}, {} flows ({} tcp, {} udp)",
            cap.first_ts.map(iso_time).unwrap_or_else(|| "-".into()),
            cap.last_ts.map(iso_time).unwrap_or_else(|| "-".into()),
            duration,
            cap.packets,
            human_bytes(cap.bytes),
            all,
            tcp,
            all.saturating_sub(tcp)
        );
        let not_decoded: u64 = cap.not_decoded.values().sum();
        let mut reasons: Vec<String> = cap
            .not_decoded
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        for (lt, n) in cap.unsupported_link_types.iter() {
            reasons.push(format!(
                "link type {} ({}) {}",
                lt,
                crate::capture::linktype_name(*lt),
                n
            ));
        }
        let _ = writeln!(
            s,
            "decode   {} decoded, {} not decoded{}; {} truncated by snaplen",
            cap.decoded,
            not_decoded,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            cap.truncated_by_snaplen
        );
        let fs = &r.run.flow_stats;
        let _ = writeln!(
            s,
            "flows    {} evicted idle, {} evicted at cap; ClientHellos {} complete, {} partial (snaplen), {} incomplete; capture loss {:.2}% ({} of {} ACKs above a gap)",
            fs.flows_evicted_idle,
            fs.flows_evicted_cap,
            fs.hello_complete,
            fs.hello_partial,
            fs.hello_incomplete,
            loss_pct(r),
            fs.acks_above_gap,
            fs.acks_seen
        );
        if fs.emergency_entered > 0 {
            let _ = writeln!(
                s,
                "note     the flow table reached 90% of --max-flows {} time(s): idle timeouts were cut tenfold until it was back under 70% (emergency mode); {} flows ended early that way, {} were evicted at the cap",
                fs.emergency_entered, fs.flows_evicted_emergency, fs.flows_evicted_cap
            );
        }
        let budget = &r.run.summarized;
        if budget.folded_flows() > 0 {
            let _ = writeln!(
                s,
                "note     over --max-records, {} bare flows (no name, no payload) were folded into {} records, one per device, transport, server port, server network and outcome: they count in the verdicts through them",
                budget.folded_flows(),
                budget.fold_records()
            );
        }
        let summarized = budget.summarized();
        if summarized > 0 {
            let rows: Vec<String> = r
                .run
                .summarized
                .rows()
                .iter()
                .take(5)
                .map(|row| {
                    format!(
                        "{}/{} {} {}",
                        row.transport.as_str(),
                        row.server_port,
                        row.outcome.as_str(),
                        row.flows
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "note     {} finished flows were counted, not kept (--max-records): no verdict or flow entry is drawn from them; most: {}",
                summarized,
                rows.join(", ")
            );
        }
        if cap.truncated_by_snaplen > 0 && cap.packets > 0 {
            let _ = writeln!(
                s,
                "note     {} of {} frames were cut by the snaplen: server names are read from what was captured, coverage may be degraded",
                cap.truncated_by_snaplen, cap.packets
            );
        }
        let _ = writeln!(
            s,
            "catalog  {} ({} requirements)",
            r.catalog, r.catalog_requirements
        );
        if a.profiles.is_empty() {
            let _ = writeln!(
                s,
                "profiles none (no catalog traffic seen; select with --profile)"
            );
        } else {
            let ps: Vec<String> = a
                .profiles
                .iter()
                .map(|pr| match &pr.evidence {
                    Some(e) => format!("{} ({}: {})", pr.name, pr.how, e),
                    None => format!("{} ({})", pr.name, pr.how),
                })
                .collect();
            let _ = writeln!(s, "profiles {}", ps.join("; "));
        }
        site_text(a, &mut s);
        if a.direction.one_direction {
            let _ = writeln!(
                s,
                "{}",
                p.sev(
                    Severity::Warning,
                    "WARNING  this capture shows only one direction of traffic: failed-looking attempts are not judged"
                )
            );
        }
        if !r.run.complete() {
            let _ = writeln!(
                s,
                "{}",
                p.sev(
                    Severity::Error,
                    "INCOMPLETE: an input is damaged; this report covers what could be read"
                )
            );
        }

        let _ = writeln!(s, "\n{}", p.bold("Requirements"));
        if a.requirements.is_empty() {
            let _ = writeln!(
                s,
                "  (no requirement of the catalog is concerned by this capture)"
            );
        }
        let shown: Vec<&crate::audit::RequirementStatus> = a
            .requirements
            .iter()
            .filter(|q| q.required || q.status != "not_seen")
            .collect();
        let hidden = a.requirements.len() - shown.len();
        let w = shown.iter().map(|q| q.rule.len()).max().unwrap_or(10);
        for q in shown {
            let devs: Vec<String> = q.devices.iter().map(|(v, n)| format!("{n} {v}")).collect();
            let st = format!("{:<10}", q.status);
            let _ = writeln!(
                s,
                "  {} {:<w$}  {} flows{}{}{}",
                p.status(&q.status, &st),
                q.rule,
                q.flows,
                if devs.is_empty() {
                    String::new()
                } else {
                    format!("; devices: {}", devs.join(", "))
                },
                match (&q.rtt_ms, &q.ttfb_ms) {
                    (Some(r), Some(t)) => format!(
                        "; rtt p50 {} ms p99 {} ms, ttfb p50 {} ms",
                        r.p50, r.p99, t.p50
                    ),
                    (Some(r), None) => format!("; rtt p50 {} ms p99 {} ms", r.p50, r.p99),
                    _ => String::new(),
                },
                if q.required { "" } else { " (optional)" },
            );
        }

        if hidden > 0 {
            let _ = writeln!(
                s,
                "  ({hidden} optional requirement{} of the active profiles not seen; all are in --format json)",
                if hidden == 1 { "" } else { "s" }
            );
        }
        let errors = a
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = a
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        let _ = writeln!(
            s,
            "\n{}",
            p.bold(&format!(
                "Findings ({} error{}, {} warning{})",
                errors,
                if errors == 1 { "" } else { "s" },
                warnings,
                if warnings == 1 { "" } else { "s" }
            ))
        );
        if a.findings.is_empty() {
            let _ = writeln!(s, "  none");
        }
        let files = files(r);
        for f in a.findings.iter() {
            let head = format!(
                "{:<7} {:<10}",
                f.severity.as_str().to_uppercase(),
                f.verdict.as_str()
            );
            let _ = writeln!(
                s,
                "  {} {}{}",
                p.sev(f.severity, &head),
                f.rule,
                f.device
                    .map(|d| format!("  device {d}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(s, "      {}", f.summary);
            if !f.evidence.is_empty() {
                let _ = writeln!(
                    s,
                    "      evidence ({} flow{}):",
                    f.flows,
                    if f.flows == 1 { "" } else { "s" }
                );
                for e in f.evidence.iter() {
                    let file = if files.len() > 1 {
                        format!(
                            "{}:",
                            files
                                .get(e.frame.file as usize)
                                .map(String::as_str)
                                .unwrap_or("?")
                        )
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        s,
                        "        {}frame {:<6} {}/{} to {} {}{}{}",
                        file,
                        e.frame.frame,
                        e.transport,
                        e.port,
                        e.destination,
                        e.outcome.as_str(),
                        if e.role.is_empty() {
                            String::new()
                        } else {
                            format!(" ({} path)", e.role)
                        },
                        if e.flows > 1 {
                            format!(
                                ", and {} more like it folded in (--max-records)",
                                e.flows - 1
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                let shown: usize = f.evidence.iter().map(|e| e.flows).sum();
                if f.flows > shown {
                    let _ = writeln!(s, "        ... and {} more", f.flows - shown);
                }
            }
            for line in f.remediation.iter() {
                let _ = writeln!(s, "      fix: {line}");
            }
        }

        if r.show_devices {
            let _ = writeln!(s, "\n{}", p.bold("Devices"));
            for d in a.devices.iter() {
                let items: Vec<String> = d
                    .requirements
                    .iter()
                    .map(|(k, v)| format!("{k} {}", v.as_str()))
                    .collect();
                let _ = writeln!(s, "  {:<39} {}", d.device.to_string(), items.join(", "));
            }
        }
        if r.show_flows {
            let _ = writeln!(s, "\n{}", p.bold("Flows"));
            for f in a.flows.iter() {
                let x = &f.record;
                let verdicts: Vec<String> = f
                    .matches
                    .iter()
                    .map(|m| {
                        format!(
                            "{}={}",
                            m.rule,
                            m.verdict.map(Verdict::as_str).unwrap_or("-")
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "  #{:<6} {} {} -> {} {:<11} {}{}{}",
                    x.first_frame.frame,
                    x.transport,
                    x.client,
                    x.server,
                    x.outcome.as_str(),
                    x.name.as_deref().unwrap_or("-"),
                    f.name_source()
                        .map(|n| format!(" [{}]", n.as_str()))
                        .unwrap_or_default(),
                    if verdicts.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", verdicts.join(" "))
                    }
                );
            }
        }
        out.write_all(s.as_bytes())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::write_blocks;
    use std::io::{self, Write};

    /// Block `i`: its number and a length that varies, so that blocks finish out of
    /// order on several threads.
    fn block(i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        if i % 7 == 3 {
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        for _ in 0..(i * 37) % 1000 + 1 {
            write!(buf, "{i},")?;
        }
        buf.push(b'\n');
        Ok(())
    }

    fn expected(blocks: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for i in 0..blocks {
            block(i, &mut all).unwrap();
        }
        all
    }

    #[test]
    fn blocks_come_out_in_order_on_any_number_of_threads() {
        for blocks in [0, 1, 2, 3, 10, 101] {
            for threads in [1, 2, 3, 5, 16] {
                let mut out = Vec::new();
                write_blocks(&mut out, blocks, threads, &block).unwrap();
                assert_eq!(out, expected(blocks), "{blocks} blocks, {threads} threads");
            }
        }
    }

    #[test]
    fn a_block_that_fails_fails_the_write_and_nothing_after_it_is_written() {
        for threads in [1, 2, 4] {
            let failing = |i: usize, buf: &mut Vec<u8>| -> io::Result<()> {
                if i == 17 {
                    return Err(io::Error::other("block 17"));
                }
                block(i, buf)
            };
            let mut out = Vec::new();
            let e = write_blocks(&mut out, 60, threads, &failing).unwrap_err();
            assert_eq!(e.to_string(), "block 17");
            assert_eq!(out, expected(17), "{threads} threads");
        }
    }

    /// Accepts `room` bytes, then fails every write.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A failed write ends the run with its error: the helpers, some of them
    /// waiting for room ahead of the writer, stop instead of waiting for ever.
    #[test]
    fn a_failed_write_stops_every_thread() {
        for threads in [2, 3, 8] {
            let mut out = Full { room: 5000 };
            let e = write_blocks(&mut out, 500, threads, &block).unwrap_err();
            assert_eq!(e.to_string(), "disk full");
        }
    }

    /// A helper that dies is an error for the writer, not a wait for its block.
    #[test]
    fn a_helper_that_panics_does_not_leave_the_writer_waiting() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| {
                let main = std::thread::current().id();
                let helper_took_one = std::sync::atomic::AtomicBool::new(false);
                let dies = |i: usize, buf: &mut Vec<u8>| -> io::Result<()> {
                    if std::thread::current().id() != main {
                        helper_took_one.store(true, std::sync::atomic::Ordering::SeqCst);
                        panic!("formatter {i} dies");
                    }
                    // The writer does not make every block before the helper has
                    // started (it might, on a loaded machine, and then nothing dies).
                    let start = std::time::Instant::now();
                    while !helper_took_one.load(std::sync::atomic::Ordering::SeqCst)
                        && start.elapsed() < std::time::Duration::from_secs(10)
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    block(i, buf)
                };
                let mut out = Vec::new();
                write_blocks(&mut out, 50, 2, &dies)
            });
            // The scope re-raises the helper's panic once the writer has returned.
            let _ = tx.send(r.is_err());
        });
        let panicked = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the writer returned");
        assert!(panicked);
    }
}
