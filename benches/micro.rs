//! Criterion micro-benchmarks of the hot paths, on real inputs:
//!
//! * `decode`: [`mdmaudit::decode::decode`] over the frames of a real capture (by
//!   default nDPI's `alexa-app.pcapng`, a phone app's traffic, 3,103 frames, from
//!   `../shared/pcaps/real/`; the bundled `pcaps/all-ok.pcap` when that is missing;
//!   `MDMAUDIT_BENCH_PCAP=FILE` to choose another pcap or pcapng file).
//! * `flow`: a fresh [`FlowTable`] fed the decoded frames of that capture, and the
//!   steady-state cost of an ACK of an existing flow in a table holding 100,000
//!   established TCP flows (and, for comparison, 1,000: a table that stays in cache).
//! * `tls`: the SNI of a real ClientHello (`tests/data/openssl_client_hello.rs`) by
//!   [`tls::sni_from_client_bytes`], [`tls::parse_handshake_client_hello`] (the QUIC
//!   path) and a [`HelloAssembler`] fed the hello in two segments.
//! * `classify`: [`Catalog::match_flow`] of the built-in catalog, as the audit calls it
//!   once per flow, on a mix of names and addresses.
//!
//! `cargo bench --bench micro` (about 1 minute on 2 cores); `cargo bench --bench micro
//! -- flow` runs the benchmarks whose name contains `flow`. See `benches/README.md`.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use etherparse::PacketBuilder;
use mdmaudit::catalog::Catalog;
use mdmaudit::decode::{decode, linktype, Decoded};
use mdmaudit::flow::{FlowConfig, FlowRecord, FlowTable, FrameRef, PacketCtx};
use mdmaudit::model::Transport;
use mdmaudit::tls::{self, HelloAssembler, HelloState};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A real ClientHello (OpenSSL 3, SNI courier.push.apple.com, ALPN h2,http/1.1), 346
/// bytes with its record header.
const OPENSSL_HELLO: &[u8] = include!("../tests/data/openssl_client_hello.rs");

/// At most this many frames are read from the capture.
const MAX_FRAMES: usize = 5_000;

/// Flows in the table of the steady-state benchmark: the size asked about, and a
/// small table that stays in cache, to tell the code's cost from the cache misses.
const TABLE_FLOWS: [u32; 2] = [100_000, 1_000];

/// ACK packets processed per iteration of the steady-state benchmark.
const ACK_BATCH: usize = 1_024;

/// One captured frame, owned.
struct Frame {
    linktype: u32,
    ts: i64,
    wire_len: u32,
    data: Vec<u8>,
}

struct Capture {
    /// File name, to label the benchmarks.
    name: String,
    frames: Vec<Frame>,
}

fn capture_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MDMAUDIT_BENCH_PCAP") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/pcaps/real/ndpi__alexa-app.pcapng");
    if shared.is_file() {
        shared
    } else {
        root.join("pcaps/all-ok.pcap")
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The first [`MAX_FRAMES`] frames of a pcap or pcapng file.
fn load_capture(path: &Path) -> Capture {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};

    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = path.file_name().map_or_else(
        || "capture".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut frames = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: not a pcapng file: {e}", path.display()));
        let mut linktypes: Vec<u32> = Vec::new();
        while let Some(block) = r.next_block() {
            let block = block.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            match block {
                Block::SectionHeader(_) => linktypes.clear(),
                Block::InterfaceDescription(idb) => linktypes.push(u32::from(idb.linktype)),
                Block::EnhancedPacket(epb) => {
                    let lt = usize::try_from(epb.interface_id)
                        .ok()
                        .and_then(|i| linktypes.get(i).copied())
                        .unwrap_or(linktype::ETHERNET);
                    frames.push(Frame {
                        linktype: lt,
                        ts: nanos(epb.timestamp),
                        wire_len: epb.original_len,
                        data: epb.data.into_owned(),
                    });
                }
                Block::SimplePacket(spb) => frames.push(Frame {
                    linktype: linktypes.first().copied().unwrap_or(linktype::ETHERNET),
                    ts: frames.last().map_or(0, |f: &Frame| f.ts),
                    wire_len: spb.original_len,
                    data: spb.data.into_owned(),
                }),
                _ => {}
            }
            if frames.len() >= MAX_FRAMES {
                break;
            }
        }
    } else {
        let mut r = PcapReader::new(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{}: not a pcap file: {e}", path.display()));
        let lt = u32::from(r.header().datalink);
        while let Some(p) = r.next_packet() {
            let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            frames.push(Frame {
                linktype: lt,
                ts: nanos(p.timestamp),
                wire_len: p.orig_len,
                data: p.data.into_owned(),
            });
            if frames.len() >= MAX_FRAMES {
                break;
            }
        }
    }
    assert!(!frames.is_empty(), "{}: no frames", path.display());
    Capture { name, frames }
}

/// The frames that decode, with the context the reader would give them.
fn decode_all(frames: &[Frame]) -> Vec<(PacketCtx, Decoded<'_>)> {
    frames
        .iter()
        .zip(1u64..)
        .filter_map(|(f, n)| {
            let d = decode(f.linktype, &f.data).ok()?;
            let ctx = PacketCtx {
                ts: f.ts,
                frame: FrameRef { file: 0, frame: n },
                wire_len: f.wire_len,
            };
            Some((ctx, d))
        })
        .collect()
}

fn bench_decode(c: &mut Criterion, cap: &Capture) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(cap.frames.len() as u64));
    g.bench_function(BenchmarkId::new("frames", &cap.name), |b| {
        b.iter(|| {
            for f in &cap.frames {
                let _ = black_box(decode(black_box(f.linktype), black_box(f.data.as_slice())));
            }
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Flow table
// ---------------------------------------------------------------------------------------

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const SYN: u8 = mdmaudit::decode::tcp_flags::SYN;
const ACK: u8 = mdmaudit::decode::tcp_flags::ACK;

/// An Ethernet + IPv4 + TCP frame without payload.
fn tcp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, ROUTER_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    let mut v = Vec::with_capacity(64);
    b.write(&mut v, &[]).expect("build tcp frame");
    v
}

/// Client and server endpoints of flow `i`: 200 devices in 10.20.0.0/16 with 500
/// connections each, to Apple push (5223) and Apple HTTPS (443) servers in 17.0.0.0/8.
fn endpoints(i: u32) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let device = i / 500;
    let client = Ipv4Addr::new(10, 20, (device >> 8) as u8, device as u8);
    let sport = 49_152 + (i % 500) as u16;
    let server = Ipv4Addr::new(17, 57, 146, (20 + i % 64) as u8);
    let dport = if i % 2 == 0 { 5223 } else { 443 };
    ((client, sport), (server, dport))
}

/// Frames of the steady-state benchmark: the three-way handshakes of
/// `flows` flows, and one client ACK of each flow, in shuffled order.
fn table_frames(flows: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut handshakes = Vec::with_capacity(3 * flows as usize);
    let mut acks = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let (c, s) = endpoints(i);
        let isn = i.wrapping_mul(2_654_435_761);
        let sisn = isn.rotate_left(13) ^ 0x5bd1_e995;
        handshakes.push(tcp_frame(c, s, SYN, isn, 0));
        handshakes.push(tcp_frame(s, c, SYN | ACK, sisn, isn.wrapping_add(1)));
        handshakes.push(tcp_frame(
            c,
            s,
            ACK,
            isn.wrapping_add(1),
            sisn.wrapping_add(1),
        ));
        acks.push(tcp_frame(
            c,
            s,
            ACK,
            isn.wrapping_add(1),
            sisn.wrapping_add(1),
        ));
    }
    fastrand::Rng::with_seed(7).shuffle(&mut acks);
    (handshakes, acks)
}

fn bench_flow(c: &mut Criterion, cap: &Capture) {
    let mut g = c.benchmark_group("flow");

    // A fresh table fed every decoded frame of the capture.
    let decoded = decode_all(&cap.frames);
    g.throughput(Throughput::Elements(decoded.len() as u64));
    g.bench_function(BenchmarkId::new("capture", &cap.name), |b| {
        b.iter_batched(
            || {
                (
                    FlowTable::new(FlowConfig::default()),
                    Vec::<FlowRecord>::new(),
                )
            },
            |(mut table, mut out)| {
                for (ctx, d) in &decoded {
                    table.process(ctx, black_box(d), &mut out);
                }
                (table, out)
            },
            BatchSize::SmallInput,
        )
    });

    for flows in TABLE_FLOWS {
        ack_existing(&mut g, flows);
    }
    g.finish();
}

/// Steady state: an ACK of one of `flows` established flows, in a table holding them.
fn ack_existing(g: &mut BenchmarkGroup<'_, WallTime>, flows: u32) {
    let (handshakes, acks) = table_frames(flows);
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    let mut ts: i64 = 1_700_000_000 * 1_000_000_000;
    for (frame, n) in handshakes.iter().zip(1u64..) {
        let d = decode(linktype::ETHERNET, frame).expect("handshake frame decodes");
        let ctx = PacketCtx {
            ts,
            frame: FrameRef { file: 0, frame: n },
            wire_len: frame.len() as u32,
        };
        table.process(&ctx, &d, &mut out);
        ts += 1_000; // 1 µs apart
    }
    assert_eq!(table.len(), flows as usize, "every flow is open");
    assert!(out.is_empty(), "no flow ended while filling the table");
    let acks: Vec<Decoded<'_>> = acks
        .iter()
        .map(|f| decode(linktype::ETHERNET, f).expect("ack frame decodes"))
        .collect();
    let wire_len = u32::try_from(handshakes[0].len()).unwrap_or(u32::MAX);
    let mut next = 0usize;
    let mut frame_no = handshakes.len() as u64;
    g.throughput(Throughput::Elements(ACK_BATCH as u64));
    g.bench_function(
        BenchmarkId::new("ack_existing", format!("{flows}_flows")),
        |b| {
            b.iter(|| {
                for _ in 0..ACK_BATCH {
                    let d = &acks[next];
                    next = if next + 1 == acks.len() { 0 } else { next + 1 };
                    ts += 1_000;
                    frame_no += 1;
                    let ctx = PacketCtx {
                        ts,
                        frame: FrameRef {
                            file: 0,
                            frame: frame_no,
                        },
                        wire_len,
                    };
                    table.process(&ctx, black_box(d), &mut out);
                }
                out.clear();
            })
        },
    );
    assert_eq!(table.len(), flows as usize, "no flow left the table");
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

fn sni_of(state: &HelloState) -> Option<&str> {
    match state {
        HelloState::Done(info) => info.sni.as_ref().map(|h| h.as_str()),
        _ => None,
    }
}

/// Feeds the hello in two segments (split in the middle) to a new assembler.
fn assemble_split(hello: &[u8], isn: u32) -> HelloState {
    let (first, second) = hello.split_at(hello.len() / 2);
    let mut a = HelloAssembler::new(Some(isn));
    let seq = isn.wrapping_add(1);
    let s = a.push(seq, first, false);
    debug_assert_eq!(s, HelloState::NeedMore);
    a.push(seq.wrapping_add(first.len() as u32), second, false)
}

fn bench_tls(c: &mut Criterion) {
    const SNI: &str = "courier.push.apple.com";
    let info = tls::sni_from_client_bytes(OPENSSL_HELLO)
        .expect("the hello parses")
        .expect("the hello is whole");
    assert_eq!(info.sni.as_ref().map(|h| h.as_str()), Some(SNI));
    assert_eq!(sni_of(&assemble_split(OPENSSL_HELLO, 1)), Some(SNI));
    let message = &OPENSSL_HELLO[5..]; // without the record header, as QUIC carries it
    assert!(matches!(
        tls::parse_handshake_client_hello(message),
        Ok(Some(_))
    ));

    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sni_from_client_bytes/openssl_hello", |b| {
        b.iter(|| tls::sni_from_client_bytes(black_box(OPENSSL_HELLO)))
    });
    g.bench_function("parse_handshake_client_hello/openssl_hello", |b| {
        b.iter(|| tls::parse_handshake_client_hello(black_box(message)))
    });
    g.bench_function("hello_assembler_2_segments/openssl_hello", |b| {
        b.iter(|| assemble_split(black_box(OPENSSL_HELLO), black_box(0x1234_5678)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------

struct Case {
    label: &'static str,
    name: Option<&'static str>,
    addr: IpAddr,
    port: u16,
    matches: bool,
}

fn bench_classify(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
    let cases = [
        Case {
            label: "courier.push.apple.com:5223",
            name: Some("courier.push.apple.com"),
            addr: ip("17.57.146.20"),
            port: 5223,
            matches: true,
        },
        Case {
            label: "mtalk.google.com:5228",
            name: Some("mtalk.google.com"),
            addr: ip("74.125.133.188"),
            port: 5228,
            matches: true,
        },
        Case {
            label: "unknown_name:443",
            name: Some("telemetry.example.net"),
            addr: ip("93.184.216.34"),
            port: 443,
            matches: false,
        },
        Case {
            label: "17.253.144.10:443_no_name",
            name: None,
            addr: ip("17.253.144.10"),
            port: 443,
            matches: true,
        },
        Case {
            label: "ipv6_2620:149:a44::10:443_no_name",
            name: None,
            addr: ip("2620:149:a44::10"),
            port: 443,
            matches: true,
        },
    ];
    for case in &cases {
        let found = catalog.match_flow(case.name, case.addr, Transport::Tcp, case.port);
        assert_eq!(!found.is_empty(), case.matches, "{}: {found:?}", case.label);
    }

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    for case in &cases {
        g.bench_with_input(
            BenchmarkId::new("match_flow", case.label),
            case,
            |b, case| {
                b.iter(|| {
                    catalog.match_flow(
                        black_box(case.name),
                        black_box(case.addr),
                        Transport::Tcp,
                        black_box(case.port),
                    )
                })
            },
        );
    }
    g.finish();
}

fn micro(c: &mut Criterion) {
    let cap = load_capture(&capture_path());
    bench_decode(c, &cap);
    bench_flow(c, &cap);
    bench_tls(c);
    bench_classify(c);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = micro
}
criterion_main!(benches);
