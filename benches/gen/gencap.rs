//! gencap: writes a large, realistic, deterministic capture for the whole-run
//! benchmark (benches/compare.sh).
//!
//!   cargo run --release --example gencap -- --out FILE [--flows N] [--seed S]
//!       [--profile mixed|handshake|concurrent] [--target-bytes N[K|M|G]]
//!
//! Profiles:
//! * `mixed` (default): a branch office. ~70% TLS-over-TCP flows whose ClientHello
//!   (a real OpenSSL 3 template with the server_name rewritten) names MDM hosts
//!   (courier.push.apple.com, N-courier.push.apple.com, api.push.apple.com,
//!   mtalk.google.com, play.googleapis.com, login.microsoftonline.com, ...) or other
//!   domains, full TLS 1.3 handshakes, server data of a few KB to a few hundred KB in
//!   MSS-sized segments, FIN close; ~10% DNS query/response pairs (A/AAAA with CNAME
//!   chains) naming the flow that follows; ~5% QUIC v1 on UDP 443 with properly
//!   protected Initial packets (the SNI is readable after RFC 9001 decryption); ~10%
//!   SYN-only attempts with SYN retransmissions (mostly APNs 5223: the drop case);
//!   ~5% SYNs answered by RST. Some clients are dual-stack and use IPv6. Flows arrive
//!   as a Poisson process and overlap; timestamps only increase.
//! * `handshake`: short TLS flows only (handshake, one request, 1-2 data packets).
//! * `concurrent`: N flows all open at once (SYN, half answered by SYN-ACK), written
//!   streaming so that 10 million flows need no memory.
//!
//! Every flow has its own 5-tuple, so the flow count an analyser should find is the
//! generator's. At the end it prints packets, flows, bytes and the number of
//! ClientHellos carrying an SNI (TLS over TCP plus QUIC), and writes FILE.meta.json.

mod dns;
mod quic;
mod tlsmsg;

use clap::{Parser, ValueEnum};
use etherparse::{PacketBuilder, TcpHeader, TcpOptionElement};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Profile {
    Mixed,
    Handshake,
    Concurrent,
}

#[derive(Parser, Debug)]
#[command(
    name = "gencap",
    about = "Generate a realistic deterministic pcap for the mdmaudit benchmark"
)]
struct Args {
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// Number of flows (DNS exchanges count as flows). Default 100000 unless
    /// --target-bytes is given alone.
    #[arg(long)]
    flows: Option<u64>,
    /// Stop opening flows once the file reaches this size (K, M, G = 10^3, 10^6, 10^9;
    /// Ki, Mi, Gi = powers of 1024). Open flows are finished, so the file ends a little
    /// larger.
    #[arg(long, value_parser = parse_size)]
    target_bytes: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Profile::Mixed)]
    profile: Profile,
    /// Mean new flows per second of capture time (default 170 mixed, 600 handshake).
    #[arg(long)]
    rate: Option<f64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(p) = s.strip_suffix("Ki") {
        (p, 1u64 << 10)
    } else if let Some(p) = s.strip_suffix("Mi") {
        (p, 1 << 20)
    } else if let Some(p) = s.strip_suffix("Gi") {
        (p, 1 << 30)
    } else if let Some(p) = s.strip_suffix(['K', 'k']) {
        (p, 1_000)
    } else if let Some(p) = s.strip_suffix(['M', 'm']) {
        (p, 1_000_000)
    } else if let Some(p) = s.strip_suffix(['G', 'g']) {
        (p, 1_000_000_000)
    } else {
        (s, 1)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad size: {s}"))?;
    Ok((v * mult as f64) as u64)
}

// ---------------------------------------------------------------------------
// Time: nanoseconds since the Unix epoch. The capture starts 2024-03-12 09:00 UTC.

const T0: u64 = 1_710_234_000 * 1_000_000_000;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

// ---------------------------------------------------------------------------
// Addresses and names.

const GW_MAC: [u8; 6] = [0x00, 0x1b, 0x17, 0x00, 0x01, 0x01];
const N_CLIENTS: usize = 1800;
const RESOLVER4: [u8; 4] = [10, 20, 0, 53];

#[derive(Clone, Copy)]
enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn client_v4(i: usize) -> [u8; 4] {
    [10, 20, 1 + (i / 250) as u8, 2 + (i % 250) as u8]
}

/// One client in five is dual-stack.
fn client_v6(i: usize) -> Option<[u8; 16]> {
    (i % 5 == 0).then(|| {
        let mut a = [0u8; 16];
        a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x20]);
        a[6..8].copy_from_slice(&((1 + i / 250) as u16).to_be_bytes());
        a[8..10].copy_from_slice(&[0x02, 0x11]);
        a[14..16].copy_from_slice(&((2 + i % 250) as u16).to_be_bytes());
        a
    })
}

fn client_mac(i: usize) -> [u8; 6] {
    [0x02, 0x5e, 0x10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

enum Org {
    ApnsCourier,
    ApnsApi,
    Apple,
    Google,
    Microsoft,
    Other,
}

fn org_of(name: &str) -> Org {
    if name.ends_with("courier.push.apple.com") {
        Org::ApnsCourier
    } else if name.ends_with("push.apple.com") {
        Org::ApnsApi
    } else if name.ends_with("apple.com") {
        Org::Apple
    } else if ["google.com", "googleapis.com", "gstatic.com", "youtube.com"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Org::Google
    } else if ["microsoftonline.com", "microsoft.com", "windows.net"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Org::Microsoft
    } else {
        Org::Other
    }
}

const OTHER_PREFIXES: [[u8; 2]; 12] = [
    [104, 16],
    [104, 18],
    [151, 101],
    [13, 32],
    [52, 84],
    [34, 120],
    [185, 199],
    [23, 192],
    [93, 184],
    [199, 232],
    [18, 160],
    [3, 33],
];

fn server_v4(name: &str) -> [u8; 4] {
    let h = fnv(name);
    let b = (h >> 16) as u8;
    let c = 1 + ((h >> 24) % 253) as u8;
    match org_of(name) {
        Org::ApnsCourier => [17, 57, 144 + (h % 4) as u8, c],
        Org::ApnsApi => [17, 188, 128 + (h % 64) as u8, c],
        Org::Apple => [17, 253, b, c],
        Org::Google => [142, 250 + (h % 2) as u8, b, c],
        Org::Microsoft => {
            if h % 2 == 0 {
                [20, 190, 128 + (b % 64), c]
            } else {
                [40, 126, b % 64, c]
            }
        }
        Org::Other => {
            let p = OTHER_PREFIXES[(h % OTHER_PREFIXES.len() as u64) as usize];
            [p[0], p[1], b, c]
        }
    }
}

fn server_v6(name: &str) -> Option<[u8; 16]> {
    let h = fnv(name);
    let prefix: [u8; 6] = match org_of(name) {
        Org::ApnsCourier | Org::ApnsApi | Org::Apple => [0x26, 0x20, 0x01, 0x49, 0x0a, 0x44],
        Org::Google => [0x2a, 0x00, 0x14, 0x50, 0x40, 0x01],
        Org::Microsoft => [0x26, 0x03, 0x10, 0x36, 0x00, 0x05],
        Org::Other if h & 0x100 != 0 => [0x26, 0x06, 0x47, 0x00, 0x00, 0x30],
        Org::Other => return None,
    };
    let mut a = [0u8; 16];
    a[..6].copy_from_slice(&prefix);
    a[8..16].copy_from_slice(&(h | 1).to_be_bytes());
    a[8] = 0;
    Some(a)
}

/// The CNAME chain a resolver returns for the name.
fn cnames(name: &str) -> Vec<String> {
    let h = fnv(name);
    if name.ends_with("courier.push.apple.com") {
        let first = name.trim_end_matches(".push.apple.com");
        vec![format!("{first}.push-apple.com.akadns.net")]
    } else if name.ends_with("mtalk.google.com") {
        vec!["mobile-gtalk.l.google.com".into()]
    } else if name == "login.microsoftonline.com" {
        vec![
            "login.mso.msidentity.com".into(),
            "ak.privatelink.msidentity.com".into(),
            "www.tm.ak.prd.aadg.trafficmanager.net".into(),
        ]
    } else if name.ends_with("manage.microsoft.com") {
        vec!["manage.microsoft.com.trafficmanager.net".into()]
    } else if matches!(org_of(name), Org::Other) && h % 3 == 0 {
        vec![format!("{}.edgekey.net", name.replace('.', "-"))]
    } else {
        vec![]
    }
}

const WORDS: [&str; 48] = [
    "blue", "cloud", "data", "fast", "north", "pixel", "river", "stone", "metro", "alpha", "delta",
    "orbit", "prime", "quant", "solar", "urban", "vector", "zen", "atlas", "cedar", "ember",
    "falcon", "harbor", "ivory", "jade", "kite", "lumen", "maple", "nova", "opal", "pine",
    "quartz", "raven", "sierra", "tango", "umbra", "vista", "willow", "xeno", "yarrow", "zephyr",
    "amber", "birch", "coral", "dune", "echo", "fjord", "grove",
];
const TLDS: [&str; 8] = ["com", "net", "io", "org", "de", "co.uk", "fr", "app"];
const SUBS: [&str; 8] = ["www", "api", "cdn", "static", "img", "login", "assets", "m"];

fn other_domains(rng: &mut fastrand::Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let a = WORDS[rng.usize(..WORDS.len())];
            let b = WORDS[rng.usize(..WORDS.len())];
            let s = SUBS[rng.usize(..SUBS.len())];
            let t = TLDS[rng.usize(..TLDS.len())];
            format!("{s}.{a}{b}{}.{t}", i % 97)
        })
        .collect()
}

fn pick<'a>(rng: &mut fastrand::Rng, v: &'a [&'a str]) -> &'a str {
    v[rng.usize(..v.len())]
}

/// Name and port of a TLS-over-TCP flow: the MDM mix of a branch office.
fn tls_target(rng: &mut fastrand::Rng, others: &[String]) -> (String, u16) {
    let r = rng.u32(..100);
    match r {
        0..=5 => ("courier.push.apple.com".into(), 5223),
        6..=7 => ("courier.push.apple.com".into(), 443),
        8..=15 => (format!("{}-courier.push.apple.com", rng.u32(1..=50)), 5223),
        16..=17 => ("api.push.apple.com".into(), 443),
        18..=19 => {
            let n = pick(
                rng,
                &[
                    "gdmf.apple.com",
                    "deviceenrollment.apple.com",
                    "iprofiles.apple.com",
                    "mdmenrollment.apple.com",
                ],
            );
            (n.into(), 443)
        }
        20..=23 => ("mtalk.google.com".into(), 5228),
        24..=25 => (
            format!("alt{}-mtalk.google.com", rng.u32(1..=8)),
            5228 + rng.u16(0..=2),
        ),
        26 => ("mtalk.google.com".into(), 443),
        27..=29 => ("play.googleapis.com".into(), 443),
        30..=31 => {
            let n = pick(
                rng,
                &[
                    "android.googleapis.com",
                    "fcm.googleapis.com",
                    "android.clients.google.com",
                ],
            );
            (n.into(), 443)
        }
        32..=35 => ("login.microsoftonline.com".into(), 443),
        36..=37 => {
            let n = pick(
                rng,
                &[
                    "manage.microsoft.com",
                    "enterpriseregistration.windows.net",
                    "graph.microsoft.com",
                    "r.manage.microsoft.com",
                ],
            );
            (n.into(), 443)
        }
        _ => (others[rng.usize(..others.len())].clone(), 443),
    }
}

// ---------------------------------------------------------------------------
// Flows.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tls,
    Quic,
    SynOnly,
    Rst,
    Dns,
}

const KINDS: [Kind; 5] = [Kind::Tls, Kind::Quic, Kind::SynOnly, Kind::Rst, Kind::Dns];

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Tls => "tls_tcp",
        Kind::Quic => "quic",
        Kind::SynOnly => "syn_only",
        Kind::Rst => "syn_rst",
        Kind::Dns => "dns",
    }
}

const F_FIN: u8 = 1;
const F_SYN: u8 = 2;
const F_RST: u8 = 4;
const F_PSH: u8 = 8;
const F_ACK: u8 = 16;

#[derive(Clone, Copy, Debug)]
enum PK {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    },
    DnsQuery,
    DnsResponse,
    QuicClientInitial,
    QuicServerInitial,
    QuicHandshake {
        len: u16,
    },
    QuicShort {
        len: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Pkt {
    t: u64,
    /// true: client to server.
    c2s: bool,
    kind: PK,
}

enum Rec {
    Lit(Vec<u8>),
    /// An application_data record with a body of this many (random) bytes.
    App(usize),
}

/// One direction of a TLS byte stream, produced record by record as segments take it.
#[derive(Default)]
struct RecStream {
    recs: VecDeque<Rec>,
    cur: Vec<u8>,
    pos: usize,
    total: usize,
}

impl RecStream {
    fn push(&mut self, r: Rec) -> usize {
        let n = match &r {
            Rec::Lit(v) => v.len(),
            Rec::App(n) => n + 5,
        };
        self.recs.push_back(r);
        self.total += n;
        n
    }

    /// Application data records for `bytes` bytes of stream (headers included).
    fn push_app(&mut self, mut bytes: usize) -> usize {
        let mut n = 0;
        while bytes > 5 {
            let body = (bytes - 5).min(16_401);
            n += self.push(Rec::App(body));
            bytes -= body + 5;
        }
        n
    }

    fn take(&mut self, mut n: usize, pool: &[u8], rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
        while n > 0 {
            if self.pos == self.cur.len() {
                self.cur.clear();
                self.pos = 0;
                match self.recs.pop_front() {
                    Some(Rec::Lit(v)) => self.cur = v,
                    Some(Rec::App(len)) => {
                        self.cur.extend_from_slice(&[0x17, 0x03, 0x03]);
                        self.cur.extend_from_slice(&(len as u16).to_be_bytes());
                        let off = rng.usize(..pool.len() - 16_500);
                        self.cur.extend_from_slice(&pool[off..off + len]);
                    }
                    None => panic!("TLS stream exhausted"),
                }
            }
            let k = n.min(self.cur.len() - self.pos);
            out.extend_from_slice(&self.cur[self.pos..self.pos + k]);
            self.pos += k;
            n -= k;
        }
    }
}

struct Flow {
    uid: u64,
    rng: fastrand::Rng,
    client_mac: [u8; 6],
    cip: Ip,
    sip: Ip,
    cport: u16,
    sport: u16,
    udp: bool,
    ttl: u8,
    mss: u16,
    pkts: Vec<Pkt>,
    idx: usize,
    cs: RecStream,
    ss: RecStream,
    /// Prebuilt UDP payloads: DNS query/response or QUIC client/server Initial datagrams.
    udp_c: Vec<u8>,
    udp_s: Vec<u8>,
    /// QUIC connection IDs: client's and server's source CIDs.
    cid_c: [u8; 8],
    cid_s: [u8; 8],
}

/// Builds the packet list of a TCP flow.
struct TcpPlan {
    pkts: Vec<Pkt>,
    cseq: u32,
    sseq: u32,
    mss: usize,
}

impl TcpPlan {
    fn new(rng: &mut fastrand::Rng, mss: usize) -> TcpPlan {
        TcpPlan {
            pkts: Vec::with_capacity(32),
            cseq: rng.u32(..),
            sseq: rng.u32(..),
            mss,
        }
    }

    fn push(&mut self, t: u64, c2s: bool, flags: u8, len: usize) {
        let (seq, ack) = if c2s {
            (self.cseq, self.sseq)
        } else {
            (self.sseq, self.cseq)
        };
        let ack = if flags & F_ACK != 0 { ack } else { 0 };
        self.pkts.push(Pkt {
            t,
            c2s,
            kind: PK::Tcp {
                flags,
                seq,
                ack,
                len: len as u32,
            },
        });
        let adv = len as u32 + u32::from(flags & (F_SYN | F_FIN) != 0);
        if c2s {
            self.cseq = self.cseq.wrapping_add(adv);
        } else {
            self.sseq = self.sseq.wrapping_add(adv);
        }
    }

    /// A flight of `bytes` in one direction starting at `t0`: MSS segments in bursts
    /// paced at 100 Mbit/s, a congestion window doubling every RTT. Data towards the
    /// client is acknowledged by it every `ack_every` segments just after (the
    /// capture point is next to the clients); data towards the server is acknowledged
    /// by the server's next packet. Returns the time of the last packet.
    fn flight(
        &mut self,
        rng: &mut fastrand::Rng,
        t0: u64,
        c2s: bool,
        bytes: usize,
        rtt: u64,
        ack_every: usize,
    ) -> u64 {
        let nseg = bytes.div_ceil(self.mss);
        let mut left = bytes;
        let mut t = t0;
        let mut burst_start = t0;
        let mut cwnd = 10usize;
        let mut in_burst = 0usize;
        let mut last = t0;
        for i in 0..nseg {
            if in_burst == cwnd {
                burst_start = (burst_start + rtt).max(t);
                t = burst_start;
                in_burst = 0;
                cwnd = (cwnd * 2).min(256);
            }
            let len = left.min(self.mss);
            left -= len;
            let final_seg = i + 1 == nseg;
            let flags = F_ACK
                | if final_seg || len < self.mss {
                    F_PSH
                } else {
                    0
                };
            self.push(t, c2s, flags, len);
            last = last.max(t);
            if !c2s && ((i + 1) % ack_every == 0 || final_seg) {
                let ta = t + 60 * US + rng.u64(..200 * US);
                self.push(ta, true, F_ACK, 0);
                last = last.max(ta);
            }
            in_burst += 1;
            t += (len as u64 + 54) * 80; // 100 Mbit/s: 80 ns a byte
        }
        last
    }

    fn finish(mut self) -> Vec<Pkt> {
        self.pkts.sort_by_key(|p| p.t);
        self.pkts
    }
}

/// Server response size in bytes for the mixed profile: mostly small, with a
/// heavy tail up to a few hundred KB.
fn response_bytes(rng: &mut fastrand::Rng) -> usize {
    let r = rng.f64();
    let log_uniform = |rng: &mut fastrand::Rng, lo: f64, hi: f64| {
        (lo.ln() + rng.f64() * (hi.ln() - lo.ln())).exp() as usize
    };
    if r < 0.55 {
        log_uniform(rng, 300.0, 6_000.0)
    } else if r < 0.94 {
        log_uniform(rng, 6_000.0, 40_000.0)
    } else {
        log_uniform(rng, 40_000.0, 400_000.0)
    }
}

struct Ctx {
    profile: Profile,
    rng: fastrand::Rng,
    others: Vec<String>,
    next_port: Vec<u16>,
    next_uid: u64,
}

struct Spec {
    kind: Kind,
    client: usize,
    v6: bool,
    name: String,
    port: u16,
}

impl Ctx {
    fn port(&mut self, client: usize) -> u16 {
        let p = self.next_port[client];
        self.next_port[client] = if p == 65535 { 49152 } else { p + 1 };
        p
    }

    fn base_flow(&mut self, client: usize, cip: Ip, sip: Ip, sport: u16, udp: bool) -> Flow {
        let uid = self.next_uid;
        self.next_uid += 1;
        let cport = self.port(client);
        let mut rng = fastrand::Rng::with_seed(self.rng.u64(..));
        let v6 = matches!(cip, Ip::V6(_));
        Flow {
            uid,
            ttl: 44 + rng.u8(..20),
            rng,
            client_mac: client_mac(client),
            cip,
            sip,
            cport,
            sport,
            udp,
            mss: if v6 { 1440 } else { 1460 },
            pkts: Vec::new(),
            idx: 0,
            cs: RecStream::default(),
            ss: RecStream::default(),
            udp_c: Vec::new(),
            udp_s: Vec::new(),
            cid_c: [0; 8],
            cid_s: [0; 8],
        }
    }

    fn addrs(&self, s: &Spec) -> (Ip, Ip) {
        if s.v6 {
            (
                Ip::V6(client_v6(s.client).unwrap()),
                Ip::V6(server_v6(&s.name).unwrap()),
            )
        } else {
            (Ip::V4(client_v4(s.client)), Ip::V4(server_v4(&s.name)))
        }
    }

    /// The DNS exchange naming `s`, at `t`; returns the flow and the response time.
    fn dns_flow(&mut self, s: &Spec, t: u64) -> (Flow, u64) {
        let mut f = self.base_flow(
            s.client,
            Ip::V4(client_v4(s.client)),
            Ip::V4(RESOLVER4),
            53,
            true,
        );
        let id = f.rng.u16(..);
        let qtype = if s.v6 { dns::TYPE_AAAA } else { dns::TYPE_A };
        f.udp_c = dns::query(id, &s.name, qtype);
        let mut addrs: Vec<Vec<u8>> = if s.v6 {
            vec![server_v6(&s.name).unwrap().to_vec()]
        } else {
            vec![server_v4(&s.name).to_vec()]
        };
        if f.rng.bool() {
            // A second address of the same service, after the one used.
            let mut a = addrs[0].clone();
            let l = a.len() - 1;
            a[l] = a[l].wrapping_add(1 + f.rng.u8(..100));
            addrs.push(a);
        }
        f.udp_s = dns::response(
            id,
            &s.name,
            qtype,
            &cnames(&s.name),
            &addrs,
            30 + f.rng.u32(..3600),
        );
        let tr = t + 2 * MS + f.rng.u64(..40 * MS);
        f.pkts = vec![
            Pkt {
                t,
                c2s: true,
                kind: PK::DnsQuery,
            },
            Pkt {
                t: tr,
                c2s: false,
                kind: PK::DnsResponse,
            },
        ];
        (f, tr)
    }

    fn tls_flow(&mut self, s: &Spec, t: u64, sni: Option<&str>) -> Flow {
        let (cip, sip) = self.addrs(s);
        let mut f = self.base_flow(s.client, cip, sip, s.port, false);
        let rng = &mut f.rng;
        let rtt = match org_of(&s.name) {
            Org::ApnsCourier | Org::ApnsApi | Org::Apple => 18 * MS + rng.u64(..30 * MS),
            Org::Google => 8 * MS + rng.u64(..20 * MS),
            _ => 10 * MS + rng.u64(..140 * MS),
        };
        let handshake = self.profile == Profile::Handshake;
        let ack_every = if rng.u8(..10) < 3 { 1 } else { 2 };
        let mut p = TcpPlan::new(rng, f.mss as usize);
        let mut t = t;
        p.push(t, true, F_SYN, 0);
        t += rtt;
        p.push(t, false, F_SYN | F_ACK, 0);
        t += 80 * US + rng.u64(..100 * US);
        p.push(t, true, F_ACK, 0);
        t += 100 * US + rng.u64(..400 * US);
        // ClientHello
        let pad = rng.bool();
        let n =
            f.cs.push(Rec::Lit(tlsmsg::client_hello_record(rng, sni, pad)));
        t = p.flight(rng, t, true, n, rtt, ack_every);
        // ServerHello, ChangeCipherSpec, encrypted extensions + certificates + Finished
        t += rtt + 300 * US + rng.u64(..3 * MS);
        let mut n = f.ss.push(Rec::Lit(tlsmsg::server_hello_record(rng)));
        n +=
            f.ss.push(Rec::Lit(vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01]));
        n += f.ss.push(Rec::App(1_800 + rng.usize(..3_200)));
        t = p.flight(rng, t, false, n, rtt, ack_every);
        // ChangeCipherSpec, Finished, first request
        t += 500 * US + rng.u64(..4 * MS);
        let mut n =
            f.cs.push(Rec::Lit(vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01]));
        n += f.cs.push(Rec::App(53));
        n += f.cs.push(Rec::App(90 + rng.usize(..800)));
        t = p.flight(rng, t, true, n, rtt, ack_every);
        // Session tickets and the response.
        t += rtt + 200 * US + rng.u64(..if handshake { 5 * MS } else { 60 * MS });
        let resp = if handshake {
            150 + rng.usize(..2_600)
        } else {
            response_bytes(rng)
        };
        let mut n = f.ss.push(Rec::App(250 + rng.usize(..60)));
        n += f.ss.push_app(resp);
        t = p.flight(rng, t, false, n, rtt, ack_every);
        // Some connections are reused for a few more small exchanges.
        if !handshake && rng.u8(..10) < 4 {
            for _ in 0..1 + rng.usize(..4) {
                t += 5 * MS + rng.u64(..800 * MS);
                let n = f.cs.push(Rec::App(60 + rng.usize(..500)));
                t = p.flight(rng, t, true, n, rtt, ack_every);
                t += rtt + 200 * US + rng.u64(..30 * MS);
                let hi = if rng.bool() { 1_500 } else { 12_000 };
                let n = f.ss.push_app(60 + rng.usize(..hi));
                t = p.flight(rng, t, false, n, rtt, ack_every);
            }
        }
        // Close: usually the client, sometimes the server first.
        t += 2 * MS + rng.u64(..if handshake { 50 * MS } else { 2 * SEC });
        let client_first = rng.u8(..10) < 7;
        p.push(t, client_first, F_FIN | F_ACK, 0);
        t += if client_first { rtt } else { 200 * US };
        p.push(t, !client_first, F_FIN | F_ACK, 0);
        t += if client_first { 100 * US } else { rtt };
        p.push(t, client_first, F_ACK, 0);
        f.pkts = p.finish();
        f
    }

    fn syn_only_flow(&mut self, s: &Spec, t: u64) -> Flow {
        let (cip, sip) = self.addrs(s);
        let mut f = self.base_flow(s.client, cip, sip, s.port, false);
        let seq = f.rng.u32(..);
        let tries = 3 + f.rng.usize(..3); // the SYN and 2-4 retransmissions
        let mut t = t;
        let mut backoff = SEC;
        for _ in 0..tries {
            f.pkts.push(Pkt {
                t,
                c2s: true,
                kind: PK::Tcp {
                    flags: F_SYN,
                    seq,
                    ack: 0,
                    len: 0,
                },
            });
            t += backoff + f.rng.u64(..5 * MS);
            backoff *= 2;
        }
        f
    }

    fn rst_flow(&mut self, s: &Spec, t: u64) -> Flow {
        let (cip, sip) = self.addrs(s);
        let mut f = self.base_flow(s.client, cip, sip, s.port, false);
        let seq = f.rng.u32(..);
        let rtt = 5 * MS + f.rng.u64(..100 * MS);
        f.pkts.push(Pkt {
            t,
            c2s: true,
            kind: PK::Tcp {
                flags: F_SYN,
                seq,
                ack: 0,
                len: 0,
            },
        });
        f.pkts.push(Pkt {
            t: t + rtt,
            c2s: false,
            kind: PK::Tcp {
                flags: F_RST | F_ACK,
                seq: 0,
                ack: seq.wrapping_add(1),
                len: 0,
            },
        });
        f
    }

    fn quic_flow(&mut self, s: &Spec, t: u64) -> Flow {
        let (cip, sip) = self.addrs(s);
        let mut f = self.base_flow(s.client, cip, sip, 443, true);
        let rng = &mut f.rng;
        let mut dcid = [0u8; 8];
        rng.fill(&mut dcid);
        rng.fill(&mut f.cid_c);
        rng.fill(&mut f.cid_s);
        let ch = tlsmsg::quic_client_hello_msg(rng, &s.name, &f.cid_c);
        let mut frames = Vec::new();
        quic::crypto_frame(&mut frames, &ch);
        f.udp_c = quic::initial_packet(
            &quic::Keys::initial(&dcid, false),
            &dcid,
            &f.cid_c,
            0,
            &frames,
            1250,
        );
        let sh = tlsmsg::server_hello_msg(rng, &[], 0x1301);
        let mut frames = vec![0x02, 0x00, 0x00, 0x00, 0x00]; // ACK of packet 0
        quic::crypto_frame(&mut frames, &sh);
        let mut dgram = quic::initial_packet(
            &quic::Keys::initial(&dcid, true),
            &f.cid_c,
            &f.cid_s,
            0,
            &frames,
            200,
        );
        dgram.extend_from_slice(&quic::handshake_packet(
            rng,
            &f.cid_c,
            &f.cid_s,
            1200 - dgram.len(),
        ));
        f.udp_s = dgram;

        let rtt = 8 * MS + rng.u64(..60 * MS);
        let mut v = Vec::with_capacity(32);
        let mut t = t;
        v.push(Pkt {
            t,
            c2s: true,
            kind: PK::QuicClientInitial,
        });
        t += rtt;
        v.push(Pkt {
            t,
            c2s: false,
            kind: PK::QuicServerInitial,
        });
        t += 150 * US;
        v.push(Pkt {
            t,
            c2s: false,
            kind: PK::QuicHandshake {
                len: 900 + rng.u16(..300),
            },
        });
        t += 300 * US + rng.u64(..MS);
        v.push(Pkt {
            t,
            c2s: true,
            kind: PK::QuicHandshake {
                len: 80 + rng.u16(..40),
            },
        });
        t += 50 * US;
        v.push(Pkt {
            t,
            c2s: true,
            kind: PK::QuicShort {
                len: 80 + rng.u16(..400),
            },
        });
        t += rtt + rng.u64(..20 * MS);
        let mut left = response_bytes(rng) / 2 + 500;
        let mut i = 0;
        while left > 0 {
            let len = left.min(1_252 - 25);
            left -= len;
            v.push(Pkt {
                t,
                c2s: false,
                kind: PK::QuicShort {
                    len: (len + 25) as u16,
                },
            });
            i += 1;
            if i % 2 == 0 || left == 0 {
                v.push(Pkt {
                    t: t + 80 * US + rng.u64(..150 * US),
                    c2s: true,
                    kind: PK::QuicShort {
                        len: 40 + rng.u16(..12),
                    },
                });
            }
            t += 110 * US;
        }
        v.sort_by_key(|p| p.t);
        f.pkts = v;
        f
    }

    /// What the next session is: its kind, client, address family and target.
    fn spec(&mut self) -> Spec {
        let r = self.rng.u32(..90);
        let kind = if self.profile == Profile::Handshake {
            Kind::Tls
        } else {
            match r {
                0..=69 => Kind::Tls,
                70..=74 => Kind::Quic,
                75..=84 => Kind::SynOnly,
                _ => Kind::Rst,
            }
        };
        let client = self.rng.usize(..N_CLIENTS);
        let rng = &mut self.rng;
        let (name, port) = match kind {
            Kind::Tls => tls_target(rng, &self.others),
            Kind::Quic => {
                if rng.u8(..10) < 4 {
                    (
                        pick(
                            rng,
                            &[
                                "play.googleapis.com",
                                "www.google.com",
                                "www.youtube.com",
                                "fonts.gstatic.com",
                            ],
                        )
                        .to_string(),
                        443,
                    )
                } else {
                    (self.others[rng.usize(..self.others.len())].clone(), 443)
                }
            }
            Kind::SynOnly => match rng.u8(..20) {
                0..=11 => {
                    if rng.bool() {
                        ("courier.push.apple.com".into(), 5223)
                    } else {
                        (format!("{}-courier.push.apple.com", rng.u32(1..=50)), 5223)
                    }
                }
                12..=14 => ("mtalk.google.com".into(), 5228),
                _ => (self.others[rng.usize(..self.others.len())].clone(), 443),
            },
            _ => match rng.u8(..10) {
                0..=2 => (format!("{}-courier.push.apple.com", rng.u32(1..=50)), 5223),
                3 => ("mtalk.google.com".into(), 5229),
                _ => (
                    self.others[rng.usize(..self.others.len())].clone(),
                    *[443u16, 8443, 8080, 993, 5222].get(rng.usize(..5)).unwrap(),
                ),
            },
        };
        let v6 = client_v6(client).is_some() && server_v6(&name).is_some() && rng.u8(..10) < 4;
        Spec {
            kind,
            client,
            v6,
            name,
            port,
        }
    }

    /// The flows of one session starting at `t`: an optional DNS exchange naming the
    /// target, then the flow itself.
    fn session(&mut self, t: u64, budget: u64) -> (Vec<Flow>, Kind, bool) {
        let s = self.spec();
        let mut flows = Vec::with_capacity(2);
        let mut t = t;
        let with_dns = self.profile == Profile::Mixed && budget >= 2 && self.rng.u8(..9) == 0;
        if with_dns {
            let (f, tr) = self.dns_flow(&s, t);
            flows.push(f);
            t = tr + 300 * US + self.rng.u64(..5 * MS);
        }
        let mut has_sni = false;
        let f = match s.kind {
            Kind::Tls => {
                // A few clients connect by address, without SNI.
                let sni = if self.profile == Profile::Handshake || self.rng.u8(..100) != 0 {
                    has_sni = true;
                    Some(s.name.clone())
                } else {
                    None
                };
                self.tls_flow(&s, t, sni.as_deref())
            }
            Kind::Quic => {
                has_sni = true;
                self.quic_flow(&s, t)
            }
            Kind::SynOnly => self.syn_only_flow(&s, t),
            Kind::Rst => self.rst_flow(&s, t),
            Kind::Dns => unreachable!(),
        };
        flows.push(f);
        (flows, s.kind, has_sni)
    }
}

// ---------------------------------------------------------------------------
// Writing frames.

struct Out {
    w: PcapWriter<BufWriter<File>>,
    frame: Vec<u8>,
    payload: Vec<u8>,
    packets: u64,
    frame_bytes: u64,
}

impl Out {
    fn new(path: &PathBuf) -> Out {
        let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 65535,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let w = PcapWriter::with_header(BufWriter::with_capacity(4 << 20, file), header)
            .expect("pcap header");
        Out {
            w,
            frame: Vec::with_capacity(2048),
            payload: Vec::with_capacity(2048),
            packets: 0,
            frame_bytes: 0,
        }
    }

    fn file_bytes(&self) -> u64 {
        24 + 16 * self.packets + self.frame_bytes
    }

    fn write(&mut self, t: u64) {
        let pkt = PcapPacket::new(
            Duration::from_nanos(t),
            self.frame.len() as u32,
            &self.frame,
        );
        self.w.write_packet(&pkt).expect("write packet");
        self.packets += 1;
        self.frame_bytes += self.frame.len() as u64;
    }

    fn finish(self) {
        let mut bw = self.w.into_writer();
        bw.flush().expect("flush");
    }
}

fn tcp_header(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    mss: u16,
    syn_opts: bool,
) -> TcpHeader {
    let mut h = TcpHeader::new(
        sport,
        dport,
        seq,
        if flags & F_SYN != 0 { 64_240 } else { 2_053 },
    );
    h.fin = flags & F_FIN != 0;
    h.syn = flags & F_SYN != 0;
    h.rst = flags & F_RST != 0;
    h.psh = flags & F_PSH != 0;
    h.ack = flags & F_ACK != 0;
    h.acknowledgment_number = ack;
    if syn_opts && h.syn {
        h.set_options(&[
            TcpOptionElement::MaximumSegmentSize(mss),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
        ])
        .expect("tcp options");
    }
    h
}

#[allow(clippy::too_many_arguments)]
fn build(
    frame: &mut Vec<u8>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ip,
    dst: Ip,
    ttl: u8,
    tcp: Option<TcpHeader>,
    ports: (u16, u16),
    payload: &[u8],
) {
    frame.clear();
    let b = PacketBuilder::ethernet2(src_mac, dst_mac);
    let b = match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => b.ipv4(s, d, ttl),
        (Ip::V6(s), Ip::V6(d)) => b.ipv6(s, d, ttl),
        _ => unreachable!("mixed address families"),
    };
    let r = match tcp {
        Some(h) => b.tcp_header(h).write(frame, payload),
        None => b.udp(ports.0, ports.1).write(frame, payload),
    };
    r.expect("build frame");
}

/// Writes the flow's next packet; returns the time of the one after, if any.
fn emit(f: &mut Flow, out: &mut Out, pool: &[u8]) -> Option<u64> {
    let p = f.pkts[f.idx];
    f.idx += 1;
    out.payload.clear();
    let (src_mac, dst_mac, src, dst, sp, dp, ttl) = if p.c2s {
        (f.client_mac, GW_MAC, f.cip, f.sip, f.cport, f.sport, 64)
    } else {
        (GW_MAC, f.client_mac, f.sip, f.cip, f.sport, f.cport, f.ttl)
    };
    let mut tcp = None;
    match p.kind {
        PK::Tcp {
            flags,
            seq,
            ack,
            len,
        } => {
            if len > 0 {
                let s = if p.c2s { &mut f.cs } else { &mut f.ss };
                s.take(len as usize, pool, &mut f.rng, &mut out.payload);
            }
            tcp = Some(tcp_header(sp, dp, flags, seq, ack, f.mss, true));
        }
        PK::DnsQuery | PK::QuicClientInitial => out.payload.extend_from_slice(&f.udp_c),
        PK::DnsResponse | PK::QuicServerInitial => out.payload.extend_from_slice(&f.udp_s),
        PK::QuicHandshake { len } => {
            let (d, s) = if p.c2s {
                (f.cid_s, f.cid_c)
            } else {
                (f.cid_c, f.cid_s)
            };
            out.payload.extend_from_slice(&quic::handshake_packet(
                &mut f.rng,
                &d,
                &s,
                len as usize,
            ));
        }
        PK::QuicShort { len } => {
            out.payload.push(0x40 | (f.rng.u8(..) & 0x3f));
            out.payload
                .extend_from_slice(if p.c2s { &f.cid_s } else { &f.cid_c });
            let n = (len as usize).saturating_sub(9).max(20);
            let off = f.rng.usize(..pool.len() - 2_000);
            out.payload.extend_from_slice(&pool[off..off + n]);
        }
    }
    debug_assert!(f.udp || tcp.is_some());
    build(
        &mut out.frame,
        src_mac,
        dst_mac,
        src,
        dst,
        ttl,
        tcp,
        (sp, dp),
        &out.payload,
    );
    out.write(p.t);
    f.pkts.get(f.idx).map(|n| n.t)
}

// ---------------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    flows: u64,
    by_kind: [u64; 5],
    sni_tcp: u64,
    sni_quic: u64,
    ipv6_flows: u64,
    max_open: usize,
    first_ts: u64,
    last_ts: u64,
}

fn kind_idx(k: Kind) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap()
}

fn run_sessions(args: &Args, out: &mut Out, c: &mut Counts) {
    let mut master = fastrand::Rng::with_seed(args.seed);
    let mut pool = vec![0u8; 1 << 20];
    master.fill(&mut pool);
    let others = other_domains(&mut master, 3_000);
    let next_port = (0..N_CLIENTS)
        .map(|_| 49_152 + master.u16(..2_000))
        .collect();
    let mut ctx = Ctx {
        profile: args.profile,
        rng: fastrand::Rng::with_seed(master.u64(..)),
        others,
        next_port,
        next_uid: 0,
    };
    let rate = args.rate.unwrap_or(if args.profile == Profile::Handshake {
        600.0
    } else {
        170.0
    });
    let max_flows = args.flows.unwrap_or(if args.target_bytes.is_some() {
        u64::MAX
    } else {
        100_000
    });
    let max_bytes = args.target_bytes.unwrap_or(u64::MAX);

    let mut slots: Vec<Option<Flow>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut next_spawn = T0;
    let mut spawning = true;
    let mut open = 0usize;
    c.first_ts = T0;
    loop {
        if spawning && (c.flows >= max_flows || out.file_bytes() >= max_bytes) {
            spawning = false;
        }
        let spawn_now = spawning
            && heap
                .peek()
                .is_none_or(|Reverse((t, _, _))| next_spawn <= *t);
        if spawn_now {
            let (flows, kind, sni) = ctx.session(next_spawn, max_flows - c.flows);
            for f in flows {
                c.flows += 1;
                c.by_kind[kind_idx(if f.sport == 53 && f.udp {
                    Kind::Dns
                } else {
                    kind
                })] += 1;
                if matches!(f.cip, Ip::V6(_)) {
                    c.ipv6_flows += 1;
                }
                let t = f.pkts[0].t;
                let slot = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                heap.push(Reverse((t, f.uid, slot)));
                slots[slot] = Some(f);
                open += 1;
            }
            c.max_open = c.max_open.max(open);
            if sni {
                if kind == Kind::Quic {
                    c.sni_quic += 1;
                } else {
                    c.sni_tcp += 1;
                }
            }
            let gap = -(1.0 - ctx.rng.f64()).ln() / rate;
            next_spawn += (gap * SEC as f64) as u64 + 1;
            continue;
        }
        let Some(Reverse((t, uid, slot))) = heap.pop() else {
            break;
        };
        let f = slots[slot].as_mut().expect("live flow");
        c.last_ts = t;
        match emit(f, out, &pool) {
            Some(tn) => heap.push(Reverse((tn, uid, slot))),
            None => {
                slots[slot] = None;
                free.push(slot);
                open -= 1;
            }
        }
    }
}

/// `concurrent`: flow i is SYN from its own (client, port) to an APNs or FCM server;
/// every other one is answered by a SYN-ACK. Nothing is kept per flow. In the middle
/// of the flood one iPhone (10.20.1.2) tries APNs on TCP 5223 (three SYNs, dropped)
/// and falls back to TCP 443 with a full TLS session naming courier.push.apple.com:
/// the fallback a flood must not hide.
fn run_concurrent(args: &Args, out: &mut Out, c: &mut Counts) {
    let n = args.flows.unwrap_or(10_000_000);
    let mut rng = fastrand::Rng::with_seed(args.seed);
    c.first_ts = T0;
    let mut master = fastrand::Rng::with_seed(args.seed ^ 0xA995);
    let mut pool = vec![0u8; 1 << 20];
    master.fill(&mut pool);
    let mut ctx = Ctx {
        profile: Profile::Mixed,
        rng: fastrand::Rng::with_seed(master.u64(..)),
        others: Vec::new(),
        next_port: vec![49_200; N_CLIENTS],
        next_uid: 0,
    };
    let mid = T0 + (n / 2) * 4 * US;
    let spec = |port| Spec {
        kind: Kind::Tls,
        client: 0,
        v6: false,
        name: "courier.push.apple.com".to_string(),
        port,
    };
    let mut blocked = ctx.syn_only_flow(&spec(5223), mid);
    blocked.pkts.truncate(3);
    let fallback = ctx.tls_flow(&spec(443), mid + 8 * SEC, Some("courier.push.apple.com"));
    let mut extra: Vec<(u64, Flow)> =
        vec![(blocked.pkts[0].t, blocked), (fallback.pkts[0].t, fallback)];
    c.flows += 2;
    c.by_kind[kind_idx(Kind::SynOnly)] += 1;
    c.by_kind[kind_idx(Kind::Tls)] += 1;
    c.sni_tcp += 1;
    let mut emit_extra = |upto: u64, out: &mut Out, c: &mut Counts| {
        for (next, f) in extra.iter_mut() {
            while *next <= upto {
                c.last_ts = c.last_ts.max(*next);
                match emit(f, out, &pool) {
                    Some(t) => *next = t,
                    None => *next = u64::MAX,
                }
            }
        }
    };
    for i in 0..n {
        let ci = (i % 65_536) as usize;
        let cip = Ip::V4([10, 100, (ci >> 8) as u8, ci as u8]);
        let cport = 10_000 + (i / 65_536) as u16;
        let (sip, sport) = if i % 4 == 3 {
            (Ip::V4([142, 250, (i % 200) as u8, 188]), 5228)
        } else {
            (
                Ip::V4([17, 57, 144 + (i % 4) as u8, 1 + (i % 250) as u8]),
                5223,
            )
        };
        let mac = client_mac(ci);
        let t = T0 + i * 4 * US;
        emit_extra(t, out, c);
        let seq = rng.u32(..);
        let h = tcp_header(cport, sport, F_SYN, seq, 0, 1460, true);
        build(
            &mut out.frame,
            mac,
            GW_MAC,
            cip,
            sip,
            64,
            Some(h),
            (cport, sport),
            &[],
        );
        out.write(t);
        if i % 2 == 0 {
            let h = tcp_header(
                sport,
                cport,
                F_SYN | F_ACK,
                rng.u32(..),
                seq.wrapping_add(1),
                1460,
                true,
            );
            build(
                &mut out.frame,
                GW_MAC,
                mac,
                sip,
                cip,
                52,
                Some(h),
                (sport, cport),
                &[],
            );
            out.write(t + 2 * US);
        }
        c.flows += 1;
        c.by_kind[kind_idx(Kind::SynOnly)] += 1;
        c.last_ts = c.last_ts.max(t + 2 * US);
        if out.file_bytes() >= args.target_bytes.unwrap_or(u64::MAX) {
            break;
        }
    }
    // The episode's packets after the flood's last one.
    emit_extra(u64::MAX - 1, out, c);
    c.max_open = c.flows as usize;
}

fn main() {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let mut out = Out::new(&args.out);
    let mut c = Counts::default();
    match args.profile {
        Profile::Concurrent => run_concurrent(&args, &mut out, &mut c),
        _ => run_sessions(&args, &mut out, &mut c),
    }
    let packets = out.packets;
    let frame_bytes = out.frame_bytes;
    let file_bytes = out.file_bytes();
    out.finish();
    let sni = c.sni_tcp + c.sni_quic;
    let by_kind: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .map(|k| (kind_name(*k).to_string(), c.by_kind[kind_idx(*k)].into()))
        .collect();
    let meta = serde_json::json!({
        "generator": "gencap",
        "profile": format!("{:?}", args.profile).to_lowercase(),
        "seed": args.seed,
        "packets": packets,
        "flows": c.flows,
        "flows_by_kind": by_kind,
        "ipv6_flows": c.ipv6_flows,
        "bytes": file_bytes,
        "frame_bytes": frame_bytes,
        "client_hellos_with_sni": sni,
        "client_hellos_with_sni_tcp": c.sni_tcp,
        "client_hellos_with_sni_quic": c.sni_quic,
        "max_concurrent_flows": c.max_open,
        "first_ts": c.first_ts as f64 / 1e9,
        "last_ts": c.last_ts as f64 / 1e9,
        "duration_s": c.last_ts.saturating_sub(c.first_ts) as f64 / 1e9,
    });
    let mut meta_path = args.out.clone().into_os_string();
    meta_path.push(".meta.json");
    std::fs::write(
        &meta_path,
        serde_json::to_string_pretty(&meta).unwrap() + "\n",
    )
    .expect("write meta");
    println!(
        "{}: {packets} packets, {} flows, {file_bytes} bytes ({:.0} bytes/packet), {sni} ClientHellos with SNI ({} TLS/TCP + {} QUIC); capture spans {:.0} s; generated in {:.1} s",
        args.out.display(),
        c.flows,
        frame_bytes as f64 / packets.max(1) as f64,
        c.sni_tcp,
        c.sni_quic,
        c.last_ts.saturating_sub(c.first_ts) as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    println!(
        "flows by kind: {}",
        serde_json::Value::Object(by_kind_clone(&meta))
    );
}

fn by_kind_clone(meta: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    meta["flows_by_kind"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}
