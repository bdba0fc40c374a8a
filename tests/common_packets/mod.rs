//! Packet builders and a flow-table driver shared by the flow-table integration
//! tests: frames are built with `etherparse::PacketBuilder`, decoded with the crate's
//! own decoder and fed to a [`FlowTable`] exactly as the capture reader does.
#![allow(dead_code)]

use etherparse::{PacketBuilder, PacketBuilderStep};
use mdmaudit::decode::{decode, linktype, tcp_flags};
use mdmaudit::flow::{FlowConfig, FlowRecord, FlowStats, FlowTable, FrameRef, PacketCtx};
use std::net::{IpAddr, SocketAddr};

pub const SEC: i64 = 1_000_000_000;
pub const MS: i64 = 1_000_000;

pub const FIN: u8 = tcp_flags::FIN;
pub const SYN: u8 = tcp_flags::SYN;
pub const RST: u8 = tcp_flags::RST;
pub const PSH: u8 = tcp_flags::PSH;
pub const ACK: u8 = tcp_flags::ACK;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

pub fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad socket address {s}: {e}"))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address {s}: {e}"))
}

/// Ethernet + IPv4/IPv6 up to the IP layer, for `src` -> `dst` (same family).
fn ip_step(src: IpAddr, dst: IpAddr) -> PacketBuilderStep<etherparse::IpHeaders> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, ROUTER_MAC);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families {src} -> {dst}"),
    }
}

/// An Ethernet frame holding one TCP segment with the given flags (ACK sets the
/// acknowledgment number `ack`; without ACK it is ignored).
pub fn tcp(src: &str, dst: &str, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (sa(src), sa(dst));
    let mut b = ip_step(src.ip(), dst.ip()).tcp(src.port(), dst.port(), seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build tcp frame");
    v
}

/// An Ethernet frame holding one UDP datagram.
pub fn udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (sa(src), sa(dst));
    let b = ip_step(src.ip(), dst.ip()).udp(src.port(), dst.port());
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build udp frame");
    v
}

/// The part of `frame` an ICMP error quotes: the IP header and the first 8 bytes of
/// the transport header (RFC 792; RFC 4443 quotes more, 8 are enough to match).
pub fn quote(frame: &[u8]) -> Vec<u8> {
    let ip = &frame[14..];
    let ip_header_len = if ip[0] >> 4 == 4 {
        usize::from(ip[0] & 0x0f) * 4
    } else {
        40
    };
    ip[..ip_header_len + 8].to_vec()
}

/// An ICMPv4 destination unreachable (type 3) with `code`, sent by `reporter` to
/// `to`, quoting `offending` (a frame built by [`tcp`] or [`udp`]).
pub fn icmp4_unreachable(reporter: &str, to: &str, code: u8, offending: &[u8]) -> Vec<u8> {
    let (r, t) = match (ip(reporter), ip(to)) {
        (IpAddr::V4(r), IpAddr::V4(t)) => (r, t),
        _ => panic!("icmp4 needs IPv4 addresses"),
    };
    let b = PacketBuilder::ethernet2(ROUTER_MAC, CLIENT_MAC)
        .ipv4(r.octets(), t.octets(), 64)
        .icmpv4_raw(3, code, [0; 4]);
    let mut v = Vec::new();
    b.write(&mut v, &quote(offending))
        .expect("build icmp frame");
    v
}

/// An ICMPv6 destination unreachable (type 1) with `code`, sent by `reporter` to
/// `to`, quoting `offending`.
pub fn icmp6_unreachable(reporter: &str, to: &str, code: u8, offending: &[u8]) -> Vec<u8> {
    let (r, t) = match (ip(reporter), ip(to)) {
        (IpAddr::V6(r), IpAddr::V6(t)) => (r, t),
        _ => panic!("icmp6 needs IPv6 addresses"),
    };
    let b = PacketBuilder::ethernet2(ROUTER_MAC, CLIENT_MAC)
        .ipv6(r.octets(), t.octets(), 64)
        .icmpv6_raw(1, code, [0; 4]);
    let mut v = Vec::new();
    b.write(&mut v, &quote(offending))
        .expect("build icmpv6 frame");
    v
}

/// Feeds frames to a [`FlowTable`] the way the capture reader does: decoded as
/// Ethernet, frames numbered from 1 in file 0, the frame length as `wire_len`.
pub struct Driver {
    pub table: FlowTable,
    /// Records the table pushed while processing (idle, evicted, port reuse).
    pub out: Vec<FlowRecord>,
    frame: u64,
}

impl Default for Driver {
    fn default() -> Self {
        Self::new(FlowConfig::default())
    }
}

impl Driver {
    pub fn new(cfg: FlowConfig) -> Self {
        Driver {
            table: FlowTable::new(cfg),
            out: Vec::new(),
            frame: 0,
        }
    }

    /// Process one frame at packet time `ts`; returns its frame reference.
    pub fn feed(&mut self, ts: i64, bytes: &[u8]) -> FrameRef {
        self.frame += 1;
        let frame = FrameRef {
            file: 0,
            frame: self.frame,
        };
        let d = decode(linktype::ETHERNET, bytes)
            .unwrap_or_else(|e| panic!("frame {} does not decode: {e:?}", self.frame));
        let ctx = PacketCtx {
            ts,
            frame,
            wire_len: bytes.len() as u32,
        };
        self.table.process(&ctx, &d, &mut self.out);
        frame
    }

    /// End of capture: every record (pushed earlier and at the end) and the counters.
    pub fn finish(mut self) -> (Vec<FlowRecord>, FlowStats) {
        self.table.finish(&mut self.out);
        let stats = self.table.stats().clone();
        (self.out, stats)
    }
}

/// The only record whose server is `server`; panics if there is not exactly one.
pub fn one_to<'a>(records: &'a [FlowRecord], server: &str) -> &'a FlowRecord {
    let server = sa(server);
    let v: Vec<&FlowRecord> = records.iter().filter(|r| r.server == server).collect();
    assert_eq!(v.len(), 1, "records to {server}: {v:#?}");
    v[0]
}

/// A real ClientHello: `openssl s_client -connect 127.0.0.1:14433 -servername
/// courier.push.apple.com -alpn h2,http/1.1` (OpenSSL 3, loopback, tcpdump), 346
/// bytes, one TLS record; the same bytes as the unit tests of `src/tls.rs`.
pub const OPENSSL_HELLO: &[u8] = include!("../data/openssl_client_hello.rs");

/// A DNS response as a resolver sends it: `courier.push.apple.com A?` answered with
/// a CNAME to Akamai and the A record at the end of the chain (name compression as
/// real resolvers use it). 103 bytes.
#[rustfmt::skip]
pub const DNS_COURIER_RESPONSE: &[u8] = &[
    // header (0..12)
    0x1a, 0x2b,             // id
    0x81, 0x80,             // flags: response, RD, RA, NOERROR
    0x00, 0x01,             // QDCOUNT 1
    0x00, 0x02,             // ANCOUNT 2
    0x00, 0x00,             // NSCOUNT 0
    0x00, 0x00,             // ARCOUNT 0
    // question (12..40): courier.push.apple.com (offset 12), type A, class IN
    0x07, b'c', b'o', b'u', b'r', b'i', b'e', b'r',
    0x04, b'p', b'u', b's', b'h',
    0x05, b'a', b'p', b'p', b'l', b'e',
    0x03, b'c', b'o', b'm',
    0x00,
    0x00, 0x01,             // QTYPE A
    0x00, 0x01,             // QCLASS IN
    // answer 1 (40..87): courier.push.apple.com CNAME courier-push-apple.com.akadns.net
    0xc0, 0x0c,             // name: pointer to offset 12
    0x00, 0x05,             // TYPE CNAME
    0x00, 0x01,             // CLASS IN
    0x00, 0x00, 0x0e, 0x10, // TTL 3600
    0x00, 0x23,             // RDLENGTH 35
    // rdata (offset 52): courier-push-apple.com.akadns.net
    0x12, b'c', b'o', b'u', b'r', b'i', b'e', b'r', b'-', b'p', b'u', b's', b'h', b'-',
          b'a', b'p', b'p', b'l', b'e',
    0x03, b'c', b'o', b'm',
    0x06, b'a', b'k', b'a', b'd', b'n', b's',
    0x03, b'n', b'e', b't',
    0x00,
    // answer 2 (87..103): courier-push-apple.com.akadns.net A 17.57.146.20
    0xc0, 0x34,             // name: pointer to offset 52
    0x00, 0x01,             // TYPE A
    0x00, 0x01,             // CLASS IN
    0x00, 0x00, 0x00, 0x3c, // TTL 60
    0x00, 0x04,             // RDLENGTH 4
    17, 57, 146, 20,        // 17.57.146.20
];

/// The query that [`DNS_COURIER_RESPONSE`] answers.
#[rustfmt::skip]
pub const DNS_COURIER_QUERY: &[u8] = &[
    0x1a, 0x2b,             // id
    0x01, 0x00,             // flags: query, RD
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // QDCOUNT 1
    0x07, b'c', b'o', b'u', b'r', b'i', b'e', b'r',
    0x04, b'p', b'u', b's', b'h',
    0x05, b'a', b'p', b'p', b'l', b'e',
    0x03, b'c', b'o', b'm',
    0x00,
    0x00, 0x01,             // QTYPE A
    0x00, 0x01,             // QCLASS IN
];

/// A ClientHello handshake record (TLS 1.3 style, one cipher suite) whose only
/// extension is server_name = `name`.
pub fn hello_with_sni(name: &str) -> Vec<u8> {
    let name = name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&0u16.to_be_bytes()); // extension type: server_name
    sni.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes()); // extension length
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes()); // list length
    sni.push(0x00); // host_name
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes()); // name length
    sni.extend_from_slice(name);
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0x00); // session id length 0
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // cipher suites: TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes()); // extensions length
    body.extend_from_slice(&sni);
    let mut msg = vec![0x01]; // ClientHello
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]); // 24-bit length
    msg.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes()); // record length
    rec.extend_from_slice(&msg);
    rec
}
