//! Hot-path discipline (pipeline issue, "Scope"): no allocation per packet in the
//! steady state. Once a flow exists and its first bytes have been read, its further
//! packets (data, acknowledgments, datagrams) must not allocate, neither in the flow
//! table nor anywhere on the file path (reader, framer, workers). A counting global
//! allocator measures it: exactly at the flow table, and for whole engine runs by
//! comparing a capture with ten times the steady packets of another (per-chunk and
//! per-flow allocations are allowed; per-packet ones show as a difference that grows
//! with the packets).
//!
//! One test function only: the engine runs are counted by a global counter, and
//! test functions run on threads of their own at the same time.

mod common;
mod common_packets;

use common::TempFile;
use common_packets::*;
use mdmaudit::decode::{decode, linktype};
use mdmaudit::engine::{run, EngineConfig, Input, ReaderKind};
use mdmaudit::flow::{FlowConfig, FrameRef, PacketCtx};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

/// Allocations by every thread (engine runs use worker threads).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Allocations by this thread (the flow-table check: nothing the test harness's
    /// own threads do can count against it).
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    // A thread being torn down may no longer have its thread-locals: not counted.
    let _ = THREAD_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; the counters
// have no effect on the memory handed out (and counting allocates nothing).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

const TCP_FLOWS: u32 = 300;
const UDP_FLOWS: u32 = 100;
/// Packet time between two rounds of steady packets: far below every idle timeout,
/// so that no flow ends while the rounds run (the clock still moves and the table
/// still sweeps).
const ROUND_NS: i64 = 20 * MS;

/// A capture's frames as (packet time, Ethernet frame).
type Frames = Vec<(i64, Vec<u8>)>;

fn tcp_client(i: u32) -> String {
    format!("10.20.{}.{}:{}", i / 200, 1 + i % 200, 50_000 + i)
}

fn tcp_server(i: u32) -> String {
    // Catalog destinations (APNs, an Apple name on 443) and unknown ones.
    match i % 3 {
        0 => format!("17.57.146.{}:5223", i % 250),
        1 => format!("17.253.{}.{}:443", i % 7, i % 250),
        _ => format!("203.0.113.{}:443", i % 250),
    }
}

fn udp_client(i: u32) -> String {
    format!("10.21.{}.{}:{}", i / 200, 1 + i % 200, 40_000 + i)
}

fn udp_server(i: u32) -> String {
    match i % 2 {
        // Datagrams to 443 that are not QUIC long-header packets (short-header
        // traffic of a connection whose Initial was not captured).
        0 => format!("142.250.{}.{}:443", i % 9, i % 250),
        _ => format!("198.51.100.{}:4500", i % 250),
    }
}

/// Every flow opened: TCP handshake, a ClientHello with a server name, the server's
/// first bytes; one datagram each way on every UDP flow.
fn opening(t: &mut i64) -> Frames {
    let mut v = Frames::new();
    for i in 0..TCP_FLOWS {
        let (c, s) = (tcp_client(i), tcp_server(i));
        let hello = hello_with_sni(&format!("host{i}.push.apple.com"));
        let h = hello.len() as u32;
        v.push((*t, tcp(&c, &s, SYN, 1_000, 0, &[])));
        v.push((*t + MS, tcp(&s, &c, SYN | ACK, 9_000, 1_001, &[])));
        v.push((*t + 2 * MS, tcp(&c, &s, ACK, 1_001, 9_001, &[])));
        v.push((*t + 3 * MS, tcp(&c, &s, PSH | ACK, 1_001, 9_001, &hello)));
        v.push((
            *t + 4 * MS,
            tcp(&s, &c, PSH | ACK, 9_001, 1_001 + h, &[0x16; 900]),
        ));
        *t += 50_000;
    }
    for i in 0..UDP_FLOWS {
        let (c, s) = (udp_client(i), udp_server(i));
        v.push((*t, udp(&c, &s, &[0x41; 120])));
        v.push((*t + MS, udp(&s, &c, &[0x42; 300])));
        *t += 50_000;
    }
    v
}

/// Round `r` of steady traffic (r from 0): on every TCP flow a client segment, the
/// server's acknowledgment, a server segment and the client's acknowledgment, with
/// the sequence numbers moving on; on every UDP flow a datagram each way.
fn round(r: u32, t: &mut i64) -> Frames {
    let mut v = Frames::new();
    for i in 0..TCP_FLOWS {
        let (c, s) = (tcp_client(i), tcp_server(i));
        let h = hello_with_sni(&format!("host{i}.push.apple.com")).len() as u32;
        let cseq = 1_001 + h + r * 100;
        let sseq = 9_901 + r * 1_000;
        v.push((*t, tcp(&c, &s, PSH | ACK, cseq, sseq, &[0xaa; 100])));
        v.push((*t + 1_000, tcp(&s, &c, ACK, sseq, cseq + 100, &[])));
        v.push((
            *t + 2_000,
            tcp(&s, &c, PSH | ACK, sseq, cseq + 100, &[0xbb; 1_000]),
        ));
        v.push((*t + 3_000, tcp(&c, &s, ACK, cseq + 100, sseq + 1_000, &[])));
        *t += 10_000;
    }
    for i in 0..UDP_FLOWS {
        let (c, s) = (udp_client(i), udp_server(i));
        v.push((*t, udp(&c, &s, &[0x41; 120])));
        v.push((*t + 1_000, udp(&s, &c, &[0x42; 300])));
        *t += 10_000;
    }
    v
}

/// A capture of the opening and `rounds` steady rounds, each round starting
/// [`ROUND_NS`] after the one before.
fn capture(rounds: u32) -> Frames {
    let mut t = 1_710_234_000 * SEC;
    let mut v = opening(&mut t);
    for r in 0..rounds {
        t = t.max(v.last().map_or(t, |f| f.0)) + ROUND_NS;
        v.extend(round(r, &mut t));
    }
    v
}

fn write_pcap(path: &std::path::Path, frames: &Frames) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::with_header(f, PcapHeader::default()).unwrap();
    for (ts, frame) in frames {
        let ts = Duration::from_nanos(*ts as u64);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
            .unwrap();
    }
}

/// Allocations made by a whole engine run over `path` (opening the input included).
fn engine_allocations(path: &std::path::Path, threads: usize) -> (u64, u64) {
    let before = allocations();
    let input = Input::open(path.to_str().unwrap(), 0, ReaderKind::Fast).expect("open");
    let cfg = EngineConfig {
        flow: FlowConfig::default(),
        threads,
        max_records: 250_000,
        pin: false,
    };
    let mut result = run(vec![input], cfg, None);
    let made = allocations() - before;
    let records = result.take_records();
    assert_eq!(records.len() as u32, TCP_FLOWS + UDP_FLOWS);
    (made, result.capture.packets)
}

#[test]
fn steady_packets_of_known_flows_do_not_allocate() {
    // The flow table alone: frames decoded and fed as a worker does.
    const WARM: u32 = 3;
    const STEADY: u32 = 20;
    let frames = capture(WARM + STEADY);
    let opening_len = (TCP_FLOWS * 5 + UDP_FLOWS * 2) as usize;
    let per_round = (TCP_FLOWS * 4 + UDP_FLOWS * 2) as usize;
    let steady_from = opening_len + WARM as usize * per_round;
    let mut table = mdmaudit::flow::FlowTable::new(FlowConfig::default());
    let mut out = Vec::with_capacity(16);
    let mut counted = 0u64;
    for (n, (ts, bytes)) in frames.iter().enumerate() {
        if n == steady_from {
            counted = thread_allocations();
        }
        let d = decode(linktype::ETHERNET, bytes).expect("built frames decode");
        let ctx = PacketCtx {
            ts: *ts,
            frame: FrameRef {
                file: 0,
                frame: n as u64 + 1,
            },
            wire_len: bytes.len() as u32,
        };
        table.process(&ctx, &d, &mut out);
    }
    let steady = thread_allocations() - counted;
    let packets = frames.len() - steady_from;
    assert!(out.is_empty(), "no flow may end during the steady rounds");
    assert_eq!(
        steady, 0,
        "the flow table allocated {steady} times over {packets} steady packets"
    );
    table.finish(&mut out);
    assert_eq!(out.len() as u32, TCP_FLOWS + UDP_FLOWS);
    assert!(out.iter().any(|r| r.name.is_some()), "the names were read");

    // Whole engine runs: ten times the steady rounds must not cost more allocations
    // per packet than the reading in chunks does (well under one per 1,000 packets).
    let short = TempFile::new("short.pcap");
    let long = TempFile::new("long.pcap");
    write_pcap(&short, &capture(20));
    write_pcap(&long, &capture(200));
    for threads in [1, 2] {
        let (a_short, p_short) = engine_allocations(&short, threads);
        let (a_long, p_long) = engine_allocations(&long, threads);
        let extra_packets = p_long - p_short;
        let extra = a_long.saturating_sub(a_short);
        assert!(
            extra * 1_000 < extra_packets,
            "{threads} thread(s): {extra} more allocations for {extra_packets} more \
             steady packets ({a_short} for {p_short} packets, {a_long} for {p_long})"
        );
    }
}
