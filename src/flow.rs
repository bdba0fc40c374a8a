//! Flow table: bidirectional 5-tuple flows built from decoded frames, their TCP
//! handshake outcome, counters each way, and the server name with where it came from.
//!
//! A [`FlowTable`] is self-contained so that a pipeline can give each worker its own
//! shard: both directions of a flow map to one [`FlowKey`], and to one worker by
//! [`sym_hash`], which is symmetric. Time is packet time only (never wall time), so a
//! replay gives the same answer. This module knows nothing of the MDM catalog: the audit layer hands
//! it a set of service ports (to orient mid-stream flows) and reads back
//! [`FlowRecord`]s. Every cap (flows, buffered hello bytes, DNS cache) is counted
//! when hit; nothing is dropped silently.

use crate::decode::{tcp_flags, Decoded, IcmpError, TcpSegment, UdpDatagram, L4};
use crate::model::{Nanos, Transport};
use crate::{dns, http, quic, tls};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};

/// Where a packet sits in the input, so a user can jump to it in Wireshark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FrameRef {
    /// Index of the input file in the run (0-based, in command-line order).
    pub file: u32,
    /// 1-based frame number inside that file, as Wireshark numbers it.
    pub frame: u64,
}

/// The per-packet context the reader supplies beside the decoded frame.
#[derive(Clone, Copy, Debug)]
pub struct PacketCtx {
    pub ts: Nanos,
    pub frame: FrameRef,
    /// Length of the frame on the wire (pcap `len`), counted as the flow's bytes.
    pub wire_len: u32,
}

/// Canonical, direction-free flow key: endpoint `a` sorts before endpoint `b`.
/// Compact (40 bytes, addresses as 16 bytes, IPv4 mapped) so that hashing and
/// comparing it is cheap on the per-packet path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    a: [u8; 16],
    b: [u8; 16],
    a_port: u16,
    b_port: u16,
    transport: Transport,
    v4: bool,
}

impl Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.a));
        state.write_u128(u128::from_ne_bytes(self.b));
        state.write_u64(
            (u64::from(self.a_port) << 32)
                | (u64::from(self.b_port) << 16)
                | (u64::from(self.transport == Transport::Udp) << 1)
                | u64::from(self.v4),
        );
    }
}

/// An address as one number (IPv4 mapped into IPv6): its big-endian value, so that
/// numbers order as the address bytes do. Built arithmetically: the bytes written one
/// at a time and then read as words stalled every key on store forwarding.
fn ip_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (0xffff_0000_0000 | u128::from(u32::from(v4)), true),
        IpAddr::V6(v6) => (u128::from(v6), false),
    }
}

fn ip_from(bytes: [u8; 16], v4: bool) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bytes);
    match (v4, v6.to_ipv4_mapped()) {
        (true, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and whether `src` is endpoint `a`.
    pub fn of(transport: Transport, src: SocketAddr, dst: SocketAddr) -> (FlowKey, bool) {
        let (sb, sv4) = ip_bits(src.ip());
        let (db, _) = ip_bits(dst.ip());
        let src_first = (sb, src.port()) <= (db, dst.port());
        let key = if src_first {
            FlowKey {
                a: sb.to_be_bytes(),
                b: db.to_be_bytes(),
                a_port: src.port(),
                b_port: dst.port(),
                transport,
                v4: sv4,
            }
        } else {
            FlowKey {
                a: db.to_be_bytes(),
                b: sb.to_be_bytes(),
                a_port: dst.port(),
                b_port: src.port(),
                transport,
                v4: sv4,
            }
        };
        (key, src_first)
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Endpoint `a` (the lower address and port).
    pub fn a(&self) -> SocketAddr {
        SocketAddr::new(ip_from(self.a, self.v4), self.a_port)
    }

    /// Endpoint `b`.
    pub fn b(&self) -> SocketAddr {
        SocketAddr::new(ip_from(self.b, self.v4), self.b_port)
    }
}

/// A frame's flow key, which endpoint sent it, and the key's hash in one
/// [`FlowTable`] (hashes are keyed per table: never use one table's with another).
#[derive(Clone, Copy, Debug)]
struct Prepared {
    key: FlowKey,
    src_is_a: bool,
    hash: u64,
}

fn fold128(x: u128) -> u64 {
    (x >> 64) as u64 ^ x as u64
}

fn fold_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => fold128(u128::from(v6)),
    }
}

/// A hash equal for both directions of a flow (addresses folded to 64 bits and
/// combined by xor, ports likewise), the same in every run, to pick the worker that
/// owns the flow. Cheap on purpose: the reader computes it for every frame. The
/// finalizer (splitmix64's) spreads the xor over every bit.
pub fn sym_hash(t: Transport, a: u64, a_port: u16, b: u64, b_port: u16) -> u64 {
    let ports = u64::from(a_port ^ b_port);
    let proto = match t {
        Transport::Tcp => 6u64,
        Transport::Udp => 17,
    };
    let mut z = (a ^ b)
        .wrapping_add(ports.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(proto << 56);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The worker (of `shards`) that owns a flow of shard hash `h`: the high part of
/// `h * shards` (the hash's finalizer mixes every bit up there). A multiplication
/// instead of `h % shards`, whose 64-bit division was a fifth of the samples of
/// the reader's pass that gives each frame its worker.
pub fn shard_index(h: u64, shards: usize) -> usize {
    (u128::from(h).wrapping_mul(shards as u128) >> 64) as usize
}

/// The worker (of `shards`) that owns a frame's flow, from a quick look at its
/// headers ([`quick_shard_hash`]); `None` when the frame must be decoded to tell.
/// The reader and the engine both place frames with this, so they always agree.
pub fn quick_shard(linktype: u32, frame: &[u8], shards: usize) -> Option<usize> {
    quick_shard_hash(linktype, frame).map(|h| shard_index(h, shards))
}

/// The shard hash of a decoded frame's flow (for an ICMP error, the flow it quotes).
pub fn shard_hash(d: &Decoded<'_>) -> u64 {
    match &d.l4 {
        L4::Tcp(t) => sym_hash(
            Transport::Tcp,
            fold_ip(d.src),
            t.sport,
            fold_ip(d.dst),
            t.dport,
        ),
        L4::Udp(u) => sym_hash(
            Transport::Udp,
            fold_ip(d.src),
            u.sport,
            fold_ip(d.dst),
            u.dport,
        ),
        L4::IcmpError(e) => sym_hash(
            e.transport,
            fold_ip(e.quoted_src),
            e.quoted_sport,
            fold_ip(e.quoted_dst),
            e.quoted_dport,
        ),
    }
}

/// The shard hash of a frame's flow read straight from its headers, for the common
/// frames: Ethernet with at most two VLAN tags, or raw IP; IPv4 not fragmented, or
/// IPv6 without extension headers; TCP or UDP on ports that are neither DNS (whose
/// answers every shard reads) nor a tunnel that `decode` unwraps. `None` for any
/// other frame: the caller decodes it in full.
///
/// Where it answers and `decode` finds a flow, both read the same addresses and ports
/// and so give the same [`sym_hash`]; where `decode` finds none, the frame goes to one
/// shard, which decodes it and counts why it was skipped.
pub fn quick_shard_hash(linktype: u32, frame: &[u8]) -> Option<u64> {
    use crate::decode::be16;
    let ip = crate::decode::plain_ip_packet(linktype, frame)?;
    let first = *ip.first()?;
    let (proto, src, dst, l4) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f).checked_mul(4)?;
            // More-fragments flag or a fragment offset: decode's business.
            if ihl < 20 || be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                *ip.get(9)?,
                u64::from(u32::from_be_bytes(a)),
                u64::from(u32::from_be_bytes(b)),
                ip.get(ihl..)?,
            )
        }
        6 => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                *ip.get(6)?,
                fold128(u128::from_be_bytes(a)),
                fold128(u128::from_be_bytes(b)),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let transport = match proto {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        _ => return None,
    };
    let (sport, dport) = (be16(l4, 0)?, be16(l4, 2)?);
    if sport == 53 || dport == 53 {
        return None;
    }
    if transport == Transport::Udp && [sport, dport].iter().any(|p| matches!(p, 2152 | 5247)) {
        return None;
    }
    Some(sym_hash(transport, src, sport, dst, dport))
}

/// How a flow's server name was learned, in decreasing order of trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// TLS ClientHello server_name extension.
    Sni,
    /// SNI of a QUIC Initial packet.
    Quic,
    /// HTTP/1.x `Host` header.
    Http,
    /// A DNS answer seen earlier in the capture for the server address.
    Dns,
    /// The catalog's address ranges (set by the audit layer, never here).
    Catalog,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Sni => "sni",
            NameSource::Quic => "quic",
            NameSource::Http => "http",
            NameSource::Dns => "dns",
            NameSource::Catalog => "catalog",
        }
    }
}

/// Outcome of a flow (compare Zeek's `conn_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// SYN answered by SYN-ACK.
    Established,
    /// SYN answered by RST.
    Refused,
    /// SYNs and nothing back (by end of capture or idle timeout).
    Unanswered,
    /// An ICMP destination-unreachable quoted the SYN (or the UDP datagram).
    Unreachable,
    /// Established, then reset.
    Reset,
    /// No SYN seen: the capture started mid-stream.
    Midstream,
    /// UDP: packets both ways.
    Answered,
    /// UDP: one way only. (TCP uses `Unanswered`.)
    #[serde(rename = "unanswered")]
    UdpUnanswered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Refused => "refused",
            Outcome::Unanswered | Outcome::UdpUnanswered => "unanswered",
            Outcome::Unreachable => "unreachable",
            Outcome::Reset => "reset",
            Outcome::Midstream => "midstream",
            Outcome::Answered => "answered",
        }
    }

    /// The destination was reached (a handshake, or traffic both ways).
    pub fn reached(self) -> bool {
        matches!(
            self,
            Outcome::Established | Outcome::Reset | Outcome::Midstream | Outcome::Answered
        )
    }

    /// An attempt that failed: what a firewall drop or reject looks like. (A flow
    /// reset before the server sent any data also failed: see
    /// [`FlowRecord::attempt_failed`].)
    pub fn failed(self) -> bool {
        matches!(
            self,
            Outcome::Refused | Outcome::Unanswered | Outcome::Unreachable
        )
    }
}

/// Application protocol recognised on the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProto {
    Tls,
    Quic,
    Dns,
    Http,
}

impl AppProto {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProto::Tls => "tls",
            AppProto::Quic => "quic",
            AppProto::Dns => "dns",
            AppProto::Http => "http",
        }
    }
}

/// What became of the client's ClientHello, if one started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HelloStatus {
    /// Parsed whole.
    Complete,
    /// Cut by the capture (snaplen) but the server name was inside the captured bytes.
    Partial,
    /// Started but never completed (missing segments, capture ended).
    Incomplete,
    /// Exceeded the per-flow reassembly cap.
    Overflow,
    /// Started like TLS but did not parse.
    Malformed,
}

impl HelloStatus {
    /// The name in reports (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            HelloStatus::Complete => "complete",
            HelloStatus::Partial => "partial",
            HelloStatus::Incomplete => "incomplete",
            HelloStatus::Overflow => "overflow",
            HelloStatus::Malformed => "malformed",
        }
    }
}

/// The ICMP error that made a flow unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpInfo {
    pub icmp_type: u8,
    pub code: u8,
    pub admin_prohibited: bool,
    pub frame: FrameRef,
    /// Address of the router or host that sent the error.
    pub reporter: IpAddr,
}

/// A finished flow, oriented client (initiator) to server (responder). This is all
/// the audit layer ever sees of packets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRecord {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_ts: Nanos,
    pub last_ts: Nanos,
    pub client_packets: u64,
    pub client_bytes: u64,
    pub server_packets: u64,
    pub server_bytes: u64,
    /// Transport payload bytes each side sent, as announced by the IP headers
    /// (retransmissions included).
    pub client_payload: u64,
    pub server_payload: u64,
    pub outcome: Outcome,
    /// SYN to SYN-ACK (last SYN sent before the SYN-ACK), nanoseconds.
    pub rtt_ns: Option<i64>,
    /// Time to first byte: from the client's first payload to the server's first
    /// payload after it, nanoseconds.
    pub ttfb_ns: Option<i64>,
    /// SYNs the client sent beyond the first.
    pub syn_retransmits: u32,
    /// OR of the TCP flags each side sent.
    pub client_flags: u8,
    pub server_flags: u8,
    pub name: Option<String>,
    pub name_source: Option<NameSource>,
    /// `name` is the SNI exactly as read from a ClientHello (TLS over TCP or QUIC):
    /// see [`FlowRecord::sni`]. (The name is kept once: a ClientHello's name is the
    /// most trusted, so a flow that has one is named by it.)
    pub name_from_hello: bool,
    pub app: Option<AppProto>,
    pub hello: Option<HelloStatus>,
    pub first_frame: FrameRef,
    pub icmp: Option<Box<IcmpInfo>>,
    /// The client kept talking after its SYN although no answer was ever captured:
    /// the server's side is missing from the capture, not from the network.
    pub one_direction: bool,
    /// The flow left the table because it was idle (false: end of capture) ...
    pub ended_by: EndReason,
    /// Other flows of the same device, transport, server port, server network and
    /// outcome that this record stands for: bare flows over `--max-records` are
    /// folded (see [`crate::budget`]); 0 otherwise.
    pub folded: u64,
}

impl FlowRecord {
    /// The connection attempt failed: refused, unanswered, unreachable, or reset
    /// before the server sent a single byte (a filter that lets the handshake through
    /// and resets the connection when it sees the ClientHello).
    pub fn attempt_failed(&self) -> bool {
        self.outcome.failed() || (self.outcome == Outcome::Reset && self.server_payload == 0)
    }

    /// The service answered: a handshake and, if it was reset, data from the server.
    pub fn reached(&self) -> bool {
        self.outcome.reached() && !self.attempt_failed()
    }

    /// The SNI exactly as read from a ClientHello (TLS over TCP or QUIC), if the flow
    /// had one: what `tls.client.server_name` reports.
    pub fn sni(&self) -> Option<&str> {
        if self.name_from_hello {
            self.name.as_deref()
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    EndOfCapture,
    /// Closed (FIN both ways, or RST) and quiet for `tcp_closed_idle`.
    Closed,
    IdleTimeout,
    /// Idle for a tenth of its timeout while the table was near its cap.
    EmergencyTimeout,
    Evicted,
    PortReused,
}

impl EndReason {
    /// The name in reports (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::EndOfCapture => "end_of_capture",
            EndReason::Closed => "closed",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::EmergencyTimeout => "emergency_timeout",
            EndReason::Evicted => "evicted",
            EndReason::PortReused => "port_reused",
        }
    }
}

/// Limits and timeouts of a flow table. Every cap is counted when hit.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// At most this many flows at once; beyond, the least recently active are evicted.
    pub max_flows: usize,
    /// Idle timeout of TCP flows that were established, packet time.
    pub tcp_idle: Nanos,
    /// Idle timeout of TCP flows never established (SYN only, refused).
    pub tcp_attempt_idle: Nanos,
    /// Idle timeout of UDP flows.
    pub udp_idle: Nanos,
    /// How long a TCP flow closed by FINs both ways or a RST stays in the table for
    /// its last ACKs and retransmissions (Zeek's `tcp_close_delay`).
    pub tcp_closed_idle: Nanos,
    /// DNS answers kept for naming later flows.
    pub max_dns_entries: usize,
    /// Ports on which a service listens (catalog ports plus well-known ones): the side
    /// using one is taken as the responder of a flow seen mid-stream.
    pub service_ports: PortSet,
    /// Client data segments examined for a ClientHello or HTTP request before giving up.
    pub max_hello_segments: u16,
    /// ClientHello reassembly buffers of all the table's flows together, bytes; a
    /// flow whose buffer would pass it gives up on its hello (`hello_budget`).
    pub max_hello_bytes: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_idle: 300 * 1_000_000_000,
            tcp_attempt_idle: 180 * 1_000_000_000,
            udp_idle: 60 * 1_000_000_000,
            tcp_closed_idle: 5 * 1_000_000_000,
            max_dns_entries: 100_000,
            service_ports: PortSet::well_known(),
            max_hello_segments: 32,
            max_hello_bytes: 64 << 20,
        }
    }
}

/// A set of ports as a 65536-bit map.
#[derive(Clone)]
pub struct PortSet(Box<[u64; 1024]>);

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PortSet({} ports)",
            self.0.iter().map(|w| w.count_ones()).sum::<u32>()
        )
    }
}

impl PortSet {
    pub fn empty() -> Self {
        PortSet(Box::new([0; 1024]))
    }
    /// Ports below 1024 plus common service ports above it.
    pub fn well_known() -> Self {
        let mut s = Self::empty();
        for p in 1..1024 {
            s.insert(p);
        }
        for p in [
            1194, 1433, 1494, 1812, 2598, 3128, 3268, 3269, 3306, 3389, 4443, 5222, 5223, 5228,
            5229, 5230, 5353, 5432, 5671, 8000, 8080, 8081, 8443, 8888, 9080, 9443,
        ] {
            s.insert(p);
        }
        s
    }
    // `p >> 6` is at most 1023: the lookups below never miss (and compile to none).
    pub fn insert(&mut self, p: u16) {
        if let Some(w) = self.0.get_mut(usize::from(p >> 6)) {
            *w |= 1u64 << (p & 63);
        }
    }
    pub fn contains(&self, p: u16) -> bool {
        self.0
            .get(usize::from(p >> 6))
            .is_some_and(|w| w & (1u64 << (p & 63)) != 0)
    }
}

/// Counters of a flow table (summed across shards by the report).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    pub flows_created: u64,
    /// TCP flows that closed and left the table after `tcp_closed_idle`.
    pub flows_closed: u64,
    /// Packets of connections that had already closed and left the table (FIN
    /// retransmissions, late ACKs): counted here, not as new flows.
    pub packets_after_close: u64,
    pub flows_evicted_idle: u64,
    pub flows_evicted_cap: u64,
    /// Times the table filled to 90% of its cap and entered emergency mode (idle
    /// timeouts a tenth of the configured ones until it is back under 70%).
    pub emergency_entered: u64,
    /// Flows ended by an emergency sweep before their normal idle timeout.
    pub flows_evicted_emergency: u64,
    pub flows_port_reused: u64,
    pub hello_complete: u64,
    pub hello_partial: u64,
    pub hello_incomplete: u64,
    pub hello_overflow: u64,
    pub hello_malformed: u64,
    /// ClientHellos given up because the table's reassembly buffers were full
    /// (`--max-hello-bytes`); judged on what they had buffered.
    pub hello_budget: u64,
    /// QUIC Initials that could not be read (unsupported version, decryption
    /// failure, incomplete or oversized CRYPTO data).
    pub quic_failed: u64,
    pub dns_responses: u64,
    pub dns_malformed: u64,
    pub dns_answers: u64,
    pub dns_cache_evictions: u64,
    pub icmp_errors_matched: u64,
    pub icmp_errors_unmatched: u64,
    /// ACKs that acknowledged data never seen in the capture (Zeek capture-loss).
    pub acks_above_gap: u64,
    /// ACKs that acknowledged new data (the denominator of the loss estimate).
    pub acks_seen: u64,
    /// Bytes acknowledged but never captured.
    pub gap_bytes: u64,
}

impl FlowStats {
    pub fn add(&mut self, o: &FlowStats) {
        self.flows_created = self.flows_created.saturating_add(o.flows_created);
        self.flows_closed = self.flows_closed.saturating_add(o.flows_closed);
        self.packets_after_close = self
            .packets_after_close
            .saturating_add(o.packets_after_close);
        self.flows_evicted_idle = self.flows_evicted_idle.saturating_add(o.flows_evicted_idle);
        self.flows_evicted_cap = self.flows_evicted_cap.saturating_add(o.flows_evicted_cap);
        self.emergency_entered = self.emergency_entered.saturating_add(o.emergency_entered);
        self.flows_evicted_emergency = self
            .flows_evicted_emergency
            .saturating_add(o.flows_evicted_emergency);
        self.flows_port_reused = self.flows_port_reused.saturating_add(o.flows_port_reused);
        self.hello_complete = self.hello_complete.saturating_add(o.hello_complete);
        self.hello_partial = self.hello_partial.saturating_add(o.hello_partial);
        self.hello_incomplete = self.hello_incomplete.saturating_add(o.hello_incomplete);
        self.hello_overflow = self.hello_overflow.saturating_add(o.hello_overflow);
        self.hello_malformed = self.hello_malformed.saturating_add(o.hello_malformed);
        self.hello_budget = self.hello_budget.saturating_add(o.hello_budget);
        self.quic_failed = self.quic_failed.saturating_add(o.quic_failed);
        self.dns_responses = self.dns_responses.saturating_add(o.dns_responses);
        self.dns_malformed = self.dns_malformed.saturating_add(o.dns_malformed);
        self.dns_answers = self.dns_answers.saturating_add(o.dns_answers);
        self.dns_cache_evictions = self
            .dns_cache_evictions
            .saturating_add(o.dns_cache_evictions);
        self.icmp_errors_matched = self
            .icmp_errors_matched
            .saturating_add(o.icmp_errors_matched);
        self.icmp_errors_unmatched = self
            .icmp_errors_unmatched
            .saturating_add(o.icmp_errors_unmatched);
        self.acks_above_gap = self.acks_above_gap.saturating_add(o.acks_above_gap);
        self.acks_seen = self.acks_seen.saturating_add(o.acks_seen);
        self.gap_bytes = self.gap_bytes.saturating_add(o.gap_bytes);
    }
}

/// Client byte-stream inspection state.
enum ClientStream {
    /// No client payload yet.
    Fresh,
    /// A ClientHello is being reassembled.
    Hello(Box<tls::HelloAssembler>),
    /// QUIC Initial packets are being decrypted for their ClientHello.
    Quic(Box<quic::InitialAssembler>),
    /// Nothing more to learn from the client's bytes.
    Done,
}

/// Per-direction TCP sequence tracking for the capture-loss estimate.
#[derive(Clone, Copy, Default)]
struct SeqTrack {
    /// Highest sequence number + length sent by this side, if known.
    next: Option<u32>,
    /// Highest acknowledgment number sent by this side.
    last_ack: Option<u32>,
}

/// `a` is after `b` in sequence space (RFC 1982 serial arithmetic, within 2^30).
fn seq_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 0x4000_0000
}

/// Laid out by hand (`repr(C)`), the fields every packet of an established flow
/// touches first: its key (compared on lookup), side, flags and clock, then the
/// counters, then the sequence tracking and the client stream's state, and the
/// handshake's times and the rare parts last. Laid out by the compiler, the key
/// straddled the fourth and fifth of the five cache lines a flow spans and a
/// packet touched all five.
#[repr(C)]
struct Flow {
    key: FlowKey,
    flags: [u8; 2],
    /// Whether endpoint `a` of the key is the client (initiator).
    a_is_client: bool,
    /// Sides that sent a FIN (bit 0: client, bit 1: server).
    fins: u8,
    synack_seen: bool,
    /// A RST from the server before any SYN-ACK.
    rst_before_synack: bool,
    rst_after_synack: bool,
    client_acked_after_syn: bool,
    app: Option<AppProto>,
    hello: Option<HelloStatus>,
    last_ts: Nanos,
    client_segments: u16,
    /// `name` came from a ClientHello (see [`FlowRecord::name_from_hello`]).
    name_from_hello: bool,
    syns: u32,
    /// Indexed by side: 0 = client, 1 = server.
    packets: [u64; 2],
    bytes: [u64; 2],
    payload: [u64; 2],
    /// The key's hash in its table (set by [`FlowMap::insert`]): the index and the
    /// closed-flow set are probed with it, never recomputing it.
    hash: u64,
    first_ts: Nanos,
    seq: [SeqTrack; 2],
    client_stream: ClientStream,
    first_client_payload: Option<Nanos>,
    ttfb_ns: Option<i64>,
    rtt_ns: Option<i64>,
    last_syn_ts: Option<Nanos>,
    client_isn: Option<u32>,
    // Rare or large parts are boxed: a flow table holds up to a million of these.
    name: Option<Box<(String, NameSource)>>,
    first_frame: FrameRef,
    icmp: Option<Box<IcmpInfo>>,
}

/// The sender's slot of a per-side pair (`[client, server]`).
#[inline(always)]
fn side_of<T>(pair: &mut [T; 2], from_client: bool) -> &mut T {
    let [client, server] = pair;
    if from_client {
        client
    } else {
        server
    }
}

impl Flow {
    /// Count one packet of this flow (counters saturate); returns whether the client
    /// sent it.
    fn account(&mut self, src_is_a: bool, ctx: &PacketCtx, payload_len: u32) -> bool {
        let from_client = src_is_a == self.a_is_client;
        self.last_ts = self.last_ts.max(ctx.ts);
        let p = side_of(&mut self.packets, from_client);
        *p = p.saturating_add(1);
        let b = side_of(&mut self.bytes, from_client);
        *b = b.saturating_add(u64::from(ctx.wire_len));
        let l = side_of(&mut self.payload, from_client);
        *l = l.saturating_add(u64::from(payload_len));
        note_first_bytes(self, from_client, payload_len, ctx.ts);
        from_client
    }

    fn closed(&self) -> bool {
        self.rst_before_synack || self.rst_after_synack || self.fins == 3
    }
}

/// The flows of a table: a dense vector of flows and an index from key to slot.
/// The index holds only slots (4 bytes a bucket, plus hashbrown's control byte),
/// compared through the slab's keys, so it stays small enough for the cache however
/// many flows there are, and the table's memory follows the number of flows, not the
/// index's power-of-two growth; sweeps walk the vector.
///
/// The hash is keyed (a random key per table, as std's HashMap), so crafted flows
/// cannot collide on purpose; it is computed once per packet.
#[derive(Default)]
struct FlowMap {
    hasher: foldhash::fast::RandomState,
    index: hashbrown::HashTable<u32>,
    slab: Vec<Flow>,
}

impl FlowMap {
    fn len(&self) -> usize {
        self.slab.len()
    }

    fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    fn hash(&self, k: &FlowKey) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, k)
    }

    fn find(&self, k: &FlowKey, hash: u64) -> Option<u32> {
        let slab = &self.slab;
        self.index
            .find(hash, |&s| slab.get(s as usize).is_some_and(|f| f.key == *k))
            .copied()
    }

    fn get_mut(&mut self, k: &FlowKey) -> Option<&mut Flow> {
        let i = self.find(k, self.hash(k))?;
        self.slab.get_mut(i as usize)
    }

    /// The slot of `k`'s flow, whose hash is `hash`: one lookup, then
    /// [`FlowMap::at`] / [`FlowMap::at_mut`].
    fn slot(&self, k: &FlowKey, hash: u64) -> Option<u32> {
        self.find(k, hash)
    }

    fn at(&self, slot: u32) -> Option<&Flow> {
        self.slab.get(slot as usize)
    }

    fn at_mut(&mut self, slot: u32) -> Option<&mut Flow> {
        self.slab.get_mut(slot as usize)
    }

    /// Insert or replace the flow of `k`, whose hash is `hash` (the table caps its
    /// size far below u32); returns its slot.
    fn insert(&mut self, k: FlowKey, hash: u64, mut f: Flow) -> Option<u32> {
        f.hash = hash;
        match self.find(&k, hash) {
            Some(i) => {
                if let Some(slot) = self.slab.get_mut(i as usize) {
                    *slot = f;
                }
                Some(i)
            }
            None => {
                let i = u32::try_from(self.slab.len()).ok()?;
                let slab = &self.slab;
                self.index
                    .insert_unique(hash, i, |&s| slab.get(s as usize).map_or(0, |f| f.hash));
                self.slab.push(f);
                Some(i)
            }
        }
    }

    /// Take the flow of `k`, whose hash is `hash`, out of the table (the last flow
    /// moves into its slot).
    fn remove(&mut self, k: &FlowKey, hash: u64) -> Option<Flow> {
        let slab = &self.slab;
        let i = self
            .index
            .find_entry(hash, |&s| {
                slab.get(s as usize).is_some_and(|f| f.key == *k)
            })
            .ok()?
            .remove()
            .0 as usize;
        if i >= self.slab.len() {
            return None;
        }
        let last = self.slab.len().saturating_sub(1);
        if i != last {
            // Point the last flow's entry at the slot it moves into.
            if let Some(h) = self.slab.get(last).map(|moved| moved.hash) {
                if let Some(s) = self.index.find_mut(h, |&s| s as usize == last) {
                    *s = i as u32;
                }
            }
        }
        Some(self.slab.swap_remove(i))
    }

    /// Take the last flow of the slab out of the table.
    fn pop(&mut self) -> Option<Flow> {
        let f = self.slab.pop()?;
        let last = self.slab.len();
        if let Ok(e) = self.index.find_entry(f.hash, |&s| s as usize == last) {
            e.remove();
        }
        Some(f)
    }

    fn shrink_to_fit(&mut self) {
        self.slab.shrink_to_fit();
        let slab = &self.slab;
        self.index
            .shrink_to_fit(|&s| slab.get(s as usize).map_or(0, |f| f.hash));
    }

    fn values(&self) -> std::slice::Iter<'_, Flow> {
        self.slab.iter()
    }
}

/// One shard of the flow table, with its DNS cache.
pub struct FlowTable {
    cfg: FlowConfig,
    flows: FlowMap,
    dns: DnsCache,
    stats: FlowStats,
    /// TCP flows that closed and left the table, by their keys' hashes (keyed,
    /// 64 bits: two live 5-tuples share one with negligible odds, and nobody can
    /// choose one that does), with when: late packets
    /// of a closed connection (FIN retransmissions, final ACKs) are absorbed here
    /// instead of opening a bogus mid-stream flow. Bounded like the flow table.
    closed: hashbrown::HashTable<(u64, Nanos)>,
    now: Nanos,
    last_sweep: Nanos,
    /// Near the cap: idle timeouts are divided by [`EMERGENCY_DIVISOR`].
    emergency: bool,
    last_emergency_sweep: Nanos,
    /// Bytes of ClientHello reassembly buffers held by the table's flows.
    hello_bytes: usize,
}

/// In emergency mode (the table at 90% of `max_flows`), idle timeouts are divided by
/// this, as Suricata's emergency mode shortens its flow timeouts; the table leaves
/// emergency mode when a sweep brings it under 70%.
pub const EMERGENCY_DIVISOR: i64 = 10;

/// Names learned from DNS answers, by address.
struct DnsCache {
    map: HashMap<IpAddr, (String, Nanos), foldhash::fast::RandomState>,
    cap: usize,
}

impl DnsCache {
    fn insert(&mut self, addr: IpAddr, name: String, ts: Nanos, stats: &mut FlowStats) {
        if self.map.len() >= self.cap && !self.map.contains_key(&addr) {
            // Drop the older half: bounded memory, counted.
            let mut times: Vec<Nanos> = self.map.values().map(|v| v.1).collect();
            let mid = times.len() / 2;
            if mid < times.len() {
                let (_, cut, _) = times.select_nth_unstable(mid);
                let cut = *cut;
                let before = self.map.len();
                self.map.retain(|_, v| v.1 > cut);
                let evicted = before.saturating_sub(self.map.len()) as u64;
                stats.dns_cache_evictions = stats.dns_cache_evictions.saturating_add(evicted);
            }
        }
        self.map.insert(addr, (name, ts));
    }
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> Self {
        let cap = cfg.max_dns_entries.max(1);
        FlowTable {
            cfg,
            flows: FlowMap::default(),
            dns: DnsCache {
                map: HashMap::default(),
                cap,
            },
            stats: FlowStats::default(),
            closed: hashbrown::HashTable::new(),
            now: Nanos::MIN,
            last_sweep: Nanos::MIN,
            emergency: false,
            last_emergency_sweep: Nanos::MIN,
            hello_bytes: 0,
        }
    }

    /// Free what the table holds (flows, names learned, closed connections) and keep
    /// its counters: a worker does it on its own thread when its input has ended,
    /// instead of leaving it to the thread that merges the workers' results.
    pub fn release(&mut self) {
        self.flows = FlowMap::default();
        self.dns.map = HashMap::default();
        self.closed = hashbrown::HashTable::new();
        self.hello_bytes = 0;
    }

    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Account one decoded frame. Flows that end (idle, evicted, port reuse) are
    /// pushed to `out`.
    pub fn process(&mut self, ctx: &PacketCtx, d: &Decoded<'_>, out: &mut Vec<FlowRecord>) {
        self.advance(ctx.ts, out);
        match &d.l4 {
            L4::Tcp(t) => {
                let pre = self.key_of(Transport::Tcp, d, t.sport, t.dport);
                self.tcp(ctx, t, pre, out);
            }
            L4::Udp(u) => {
                let pre = self.key_of(Transport::Udp, d, u.sport, u.dport);
                self.udp(ctx, u, pre, out);
            }
            L4::IcmpError(e) => self.icmp(ctx, d.src, e),
        }
    }

    /// The flow key of a decoded frame and its hash in this table, computed once
    /// per frame.
    fn key_of(&self, transport: Transport, d: &Decoded<'_>, sport: u16, dport: u16) -> Prepared {
        let (key, src_is_a) = FlowKey::of(
            transport,
            SocketAddr::new(d.src, sport),
            SocketAddr::new(d.dst, dport),
        );
        Prepared {
            key,
            src_is_a,
            hash: self.flows.hash(&key),
        }
    }

    /// Move the table's clock to packet time `ts` (never backwards). Every 10 s of
    /// packet time, flows idle past their timeout are finished and pushed to `out`.
    /// A shard calls this for every frame of the capture, its own or not.
    pub fn advance(&mut self, ts: Nanos, out: &mut Vec<FlowRecord>) {
        if ts > self.now {
            self.now = ts;
        }
        if self.last_sweep == Nanos::MIN {
            self.last_sweep = self.now;
        } else if self.now.saturating_sub(self.last_sweep) >= 10 * 1_000_000_000 {
            self.sweep_idle(out);
            self.last_sweep = self.now;
        }
    }

    /// End of input: every open flow is finished and pushed to `out`.
    pub fn finish(&mut self, out: &mut Vec<FlowRecord>) {
        while !self.finish_some(usize::MAX, out) {}
    }

    /// End of input, a part at a time: up to `n` open flows are finished and pushed
    /// to `out` (the table's memory shrinks as they go); true once none is left.
    pub fn finish_some(&mut self, n: usize, out: &mut Vec<FlowRecord>) -> bool {
        for _ in 0..n {
            let Some(f) = self.flows.pop() else {
                break;
            };
            out.push(self.record(f, EndReason::EndOfCapture));
        }
        if self.flows.slab.len() < self.flows.slab.capacity() / 2 {
            self.flows.shrink_to_fit();
        }
        self.flows.is_empty()
    }

    fn idle_limit(&self, f: &Flow) -> Nanos {
        match f.key.transport() {
            Transport::Udp => self.cfg.udp_idle,
            Transport::Tcp if f.closed() => self.cfg.tcp_closed_idle,
            Transport::Tcp if f.synack_seen || f.client_isn.is_none() => self.cfg.tcp_idle,
            Transport::Tcp => self.cfg.tcp_attempt_idle,
        }
    }

    fn sweep_idle(&mut self, out: &mut Vec<FlowRecord>) {
        let emergency = self.emergency;
        let shorten = |t: Nanos| {
            if emergency {
                t / EMERGENCY_DIVISOR
            } else {
                t
            }
        };
        let now = self.now;
        let expired: Vec<(FlowKey, u64, bool)> = self
            .flows
            .values()
            .filter_map(|f| {
                let idle = now.saturating_sub(f.last_ts);
                let limit = self.idle_limit(f);
                if idle > limit {
                    Some((f.key, f.hash, false))
                } else if idle > shorten(limit) {
                    Some((f.key, f.hash, true))
                } else {
                    None
                }
            })
            .collect();
        for (k, hash, early) in expired {
            if let Some(f) = self.flows.remove(&k, hash) {
                let why = self.expiry_reason(&f, early);
                out.push(self.record(f, why));
            }
        }
        let keep = shorten(self.cfg.tcp_idle);
        self.closed
            .retain(|&mut (_, t)| now.saturating_sub(t) <= keep);
        if self.emergency && self.flows.len() < (self.cfg.max_flows / 10).saturating_mul(7) {
            self.emergency = false;
        }
    }

    /// Why an expired flow leaves the table (and the counter that says so).
    fn expiry_reason(&mut self, f: &Flow, early: bool) -> EndReason {
        if f.key.transport() == Transport::Tcp && f.closed() {
            self.stats.flows_closed = self.stats.flows_closed.saturating_add(1);
            if self.closed.len() >= self.cfg.max_flows {
                // Bounded: forget the older half.
                let mut times: Vec<Nanos> = self.closed.iter().map(|&(_, t)| t).collect();
                let mid = times.len() / 2;
                if mid < times.len() {
                    let (_, cut, _) = times.select_nth_unstable(mid);
                    let cut = *cut;
                    self.closed.retain(|&mut (_, t)| t > cut);
                }
            }
            let h = f.hash;
            match self.closed.entry(h, |e| e.0 == h, |e| e.0) {
                hashbrown::hash_table::Entry::Occupied(mut o) => o.get_mut().1 = f.last_ts,
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert((h, f.last_ts));
                }
            }
            EndReason::Closed
        } else if early {
            self.stats.flows_evicted_emergency =
                self.stats.flows_evicted_emergency.saturating_add(1);
            EndReason::EmergencyTimeout
        } else {
            self.stats.flows_evicted_idle = self.stats.flows_evicted_idle.saturating_add(1);
            EndReason::IdleTimeout
        }
    }

    /// Make room for one more flow. At 90% of the cap the table enters emergency mode
    /// and sweeps (at most once a second of packet time) with idle timeouts a tenth of
    /// the configured ones; at the cap, if sweeping freed nothing, the least recently
    /// active sixteenth of the table is evicted.
    fn make_room(&mut self, out: &mut Vec<FlowRecord>) {
        let cap = self.cfg.max_flows;
        let len = self.flows.len();
        if len < cap.saturating_sub(cap / 10) {
            return;
        }
        if !self.emergency {
            self.emergency = true;
            self.stats.emergency_entered = self.stats.emergency_entered.saturating_add(1);
            self.last_emergency_sweep = Nanos::MIN;
        }
        if self.now.saturating_sub(self.last_emergency_sweep) >= 1_000_000_000 {
            self.last_emergency_sweep = self.now;
            self.sweep_idle(out);
        }
        if self.flows.len() < cap {
            return;
        }
        let mut times: Vec<(Nanos, FlowKey, u64)> = self
            .flows
            .values()
            .map(|f| (f.last_ts, f.key, f.hash))
            .collect();
        let n = (times.len() / 16).max(1);
        // `n - 1` is a valid index unless the table is empty (a cap of 0).
        let Some(last) = n.checked_sub(1).filter(|&i| i < times.len()) else {
            return;
        };
        times.select_nth_unstable(last);
        times.truncate(n);
        times.sort();
        for (_, k, hash) in times {
            if let Some(f) = self.flows.remove(&k, hash) {
                self.stats.flows_evicted_cap = self.stats.flows_evicted_cap.saturating_add(1);
                out.push(self.record(f, EndReason::Evicted));
            }
        }
    }

    fn new_flow(&mut self, ctx: &PacketCtx, key: FlowKey, a_is_client: bool) -> Flow {
        self.stats.flows_created = self.stats.flows_created.saturating_add(1);
        let server = if a_is_client { key.b() } else { key.a() };
        let name = self
            .dns
            .map
            .get(&server.ip())
            .map(|(n, _)| (n.clone(), NameSource::Dns));
        Flow {
            key,
            hash: 0,
            a_is_client,
            first_ts: ctx.ts,
            last_ts: ctx.ts,
            packets: [0; 2],
            bytes: [0; 2],
            payload: [0; 2],
            flags: [0; 2],
            syns: 0,
            client_isn: None,
            last_syn_ts: None,
            synack_seen: false,
            rtt_ns: None,
            first_client_payload: None,
            ttfb_ns: None,
            rst_before_synack: false,
            rst_after_synack: false,
            fins: 0,
            client_acked_after_syn: false,
            seq: [SeqTrack::default(); 2],
            name: name.map(Box::new),
            name_from_hello: false,
            app: None,
            hello: None,
            client_stream: ClientStream::Fresh,
            client_segments: 0,
            first_frame: ctx.frame,
            icmp: None,
        }
    }

    /// Orientation of a flow first seen with a packet that is not a SYN: the side on
    /// a service port is the responder; otherwise the lower port; otherwise the sender.
    fn midstream_src_is_client(&self, sport: u16, dport: u16) -> bool {
        let s = self.cfg.service_ports.contains(sport);
        let d = self.cfg.service_ports.contains(dport);
        match (s, d) {
            (false, true) => true,
            (true, false) => false,
            _ if sport != dport => sport > dport,
            _ => true,
        }
    }

    fn tcp(
        &mut self,
        ctx: &PacketCtx,
        t: &TcpSegment<'_>,
        pre: Prepared,
        out: &mut Vec<FlowRecord>,
    ) {
        let Prepared {
            key,
            src_is_a,
            hash,
        } = pre;
        let pure_syn = t.has(tcp_flags::SYN) && !t.has(tcp_flags::ACK);
        // A new connection on a finished 5-tuple, or one idle past its timeout.
        let mut slot = self.flows.slot(&key, hash);
        let stale = slot.and_then(|i| self.flows.at(i)).map(|f| {
            let idle = ctx.ts.saturating_sub(f.last_ts) > self.idle_limit(f);
            let reused = pure_syn
                && f.client_isn.is_some_and(|isn| isn != t.seq)
                && (f.closed() || !f.synack_seen);
            (idle, reused)
        });
        if let Some((idle, reused)) = stale {
            if idle || reused {
                if let Some(f) = self.flows.remove(&key, hash) {
                    let why = if idle {
                        self.expiry_reason(&f, false)
                    } else {
                        self.stats.flows_port_reused =
                            self.stats.flows_port_reused.saturating_add(1);
                        EndReason::PortReused
                    };
                    out.push(self.record(f, why));
                }
            }
        }
        if stale.is_none() && !pure_syn && self.closed.find(hash, |e| e.0 == hash).is_some() {
            // A late packet of a connection that already closed.
            self.stats.packets_after_close = self.stats.packets_after_close.saturating_add(1);
            return;
        }
        if stale.is_none_or(|(idle, reused)| idle || reused) {
            self.make_room(out);
            let src_is_client = if t.has(tcp_flags::SYN) {
                // SYN: sender is the client; SYN-ACK: receiver is.
                !t.has(tcp_flags::ACK)
            } else {
                self.midstream_src_is_client(t.sport, t.dport)
            };
            let f = self.new_flow(ctx, key, src_is_client == src_is_a);
            slot = self.flows.insert(key, hash, f);
        }
        let Some(f) = slot.and_then(|i| self.flows.at_mut(i)) else {
            return;
        };
        let from_client = f.account(src_is_a, ctx, t.payload_len);
        *side_of(&mut f.flags, from_client) |= t.flags;

        if from_client {
            if pure_syn {
                f.syns = f.syns.saturating_add(1);
                if f.client_isn.is_none() {
                    f.client_isn = Some(t.seq);
                }
                f.last_syn_ts = Some(ctx.ts);
            } else if t.has(tcp_flags::ACK) && f.syns > 0 && !t.has(tcp_flags::RST) {
                f.client_acked_after_syn = true;
            }
        } else if t.has(tcp_flags::SYN) && t.has(tcp_flags::ACK) && !f.synack_seen {
            f.synack_seen = true;
            if let Some(s) = f.last_syn_ts {
                f.rtt_ns = Some(ctx.ts.saturating_sub(s).max(0));
            }
        }
        if t.has(tcp_flags::RST) {
            if f.synack_seen || f.client_acked_after_syn {
                f.rst_after_synack = true;
            } else if !from_client {
                f.rst_before_synack = true;
            }
        }
        if t.has(tcp_flags::FIN) {
            f.fins |= if from_client { 1 } else { 2 };
        }

        // Capture-loss estimate (Zeek's capture-loss): an ACK that acknowledges bytes
        // the other side was never seen sending.
        let [client_seq, server_seq] = &mut f.seq;
        let (mine, theirs) = if from_client {
            (client_seq, server_seq)
        } else {
            (server_seq, client_seq)
        };
        if t.has(tcp_flags::ACK) && !t.has(tcp_flags::SYN) && !t.has(tcp_flags::RST) {
            let advanced = match mine.last_ack {
                Some(prev) => seq_after(t.ack, prev),
                None => true,
            };
            if advanced {
                mine.last_ack = Some(t.ack);
                if let Some(next) = theirs.next {
                    self.stats.acks_seen = self.stats.acks_seen.saturating_add(1);
                    if seq_after(t.ack, next) {
                        self.stats.acks_above_gap = self.stats.acks_above_gap.saturating_add(1);
                        self.stats.gap_bytes = self
                            .stats
                            .gap_bytes
                            .saturating_add(u64::from(t.ack.wrapping_sub(next)));
                        theirs.next = Some(t.ack);
                    }
                }
            }
        }
        let seg_len = t
            .payload_len
            .wrapping_add(u32::from(t.has(tcp_flags::SYN) || t.has(tcp_flags::FIN)));
        let end = t.seq.wrapping_add(seg_len);
        match mine.next {
            Some(n) if !seq_after(end, n) => {}
            _ => mine.next = Some(end),
        }

        if from_client && !t.payload.is_empty() {
            let before = hello_buffered(f);
            Self::client_payload(&self.cfg, &mut self.stats, f, t);
            let after = hello_buffered(f);
            self.hello_bytes = self
                .hello_bytes
                .saturating_sub(before)
                .saturating_add(after);
            if after > 0 && self.hello_bytes > self.cfg.max_hello_bytes {
                // Over the table's reassembly budget: this flow gives up on its hello
                // and is judged on what it buffered (bounded memory, counted).
                let state = match &mut f.client_stream {
                    ClientStream::Hello(h) => h.finish(),
                    _ => tls::HelloState::Incomplete,
                };
                self.stats.hello_budget = self.stats.hello_budget.saturating_add(1);
                Self::hello_outcome(&mut self.stats, f, state);
                f.client_stream = ClientStream::Done;
                self.hello_bytes = self.hello_bytes.saturating_sub(after);
            }
        } else if t.sport == 53 && !t.payload.is_empty() {
            if let Some(msg) = t.payload.get(2..) {
                if let Ok(resp) = dns::parse_response(msg) {
                    f.app = Some(AppProto::Dns);
                    let ts = ctx.ts;
                    self.learn_dns(&resp, ts, true);
                }
            }
        }
    }

    fn client_payload(cfg: &FlowConfig, stats: &mut FlowStats, f: &mut Flow, t: &TcpSegment<'_>) {
        if matches!(f.client_stream, ClientStream::Done) {
            return;
        }
        f.client_segments = f.client_segments.saturating_add(1);
        if matches!(f.client_stream, ClientStream::Fresh) {
            if let Some(host) = http::host_from_request(t.payload) {
                f.app = Some(AppProto::Http);
                set_name(f, host.as_str().to_string(), NameSource::Http);
                f.client_stream = ClientStream::Done;
                return;
            }
        }
        // Data on a SYN (TCP Fast Open) starts one past the SYN's sequence number.
        let seq = t.seq.wrapping_add(u32::from(t.has(tcp_flags::SYN)));
        let state = if matches!(f.client_stream, ClientStream::Fresh) {
            // Only a stream whose first byte looks like a TLS handshake record, or a
            // later segment of one (seen first out of order), is assembled. Most
            // ClientHellos come whole in the first segment: the assembler moves into
            // the flow only when it has to wait for more.
            let mut h = tls::HelloAssembler::new(f.client_isn);
            let state = h.push(seq, t.payload, t.truncated());
            if matches!(state, tls::HelloState::NeedMore) {
                f.client_stream = ClientStream::Hello(Box::new(h));
            }
            state
        } else {
            match &mut f.client_stream {
                ClientStream::Hello(h) => h.push(seq, t.payload, t.truncated()),
                _ => return,
            }
        };
        if matches!(state, tls::HelloState::NeedMore) && f.client_segments >= cfg.max_hello_segments
        {
            // Give up: take what the buffered bytes hold.
            let state = match &mut f.client_stream {
                ClientStream::Hello(h) => h.finish(),
                _ => tls::HelloState::Incomplete,
            };
            Self::hello_outcome(stats, f, state);
            f.client_stream = ClientStream::Done;
            return;
        }
        if !matches!(state, tls::HelloState::NeedMore) {
            Self::hello_outcome(stats, f, state);
            f.client_stream = ClientStream::Done;
        }
    }

    /// Record a final ClientHello state on the flow.
    fn hello_outcome(stats: &mut FlowStats, f: &mut Flow, state: tls::HelloState) {
        let info = match state {
            tls::HelloState::NeedMore | tls::HelloState::NotTls | tls::HelloState::Closed => return,
            tls::HelloState::Done(info) => {
                let status = if info.partial {
                    stats.hello_partial = stats.hello_partial.saturating_add(1);
                    HelloStatus::Partial
                } else {
                    stats.hello_complete = stats.hello_complete.saturating_add(1);
                    HelloStatus::Complete
                };
                f.hello = Some(status);
                Some(info)
            }
            tls::HelloState::Malformed(_) => {
                f.hello = Some(HelloStatus::Malformed);
                None
            }
            tls::HelloState::Overflow(info) => {
                f.hello = Some(HelloStatus::Overflow);
                info
            }
            tls::HelloState::Incomplete => {
                f.hello = Some(HelloStatus::Incomplete);
                None
            }
        };
        f.app = Some(AppProto::Tls);
        if let Some(sni) = info.and_then(|i| i.sni) {
            set_hello_name(f, sni.into_string(), NameSource::Sni);
        }
    }

    /// Learn names from a DNS response carried by another shard's flow (every shard
    /// sees every frame in file order, so all shards know the same names in time).
    pub fn observe_dns(&mut self, ctx: &PacketCtx, d: &Decoded<'_>) {
        let payload = match &d.l4 {
            L4::Udp(u) if u.sport == 53 => u.payload,
            L4::Tcp(t) if t.sport == 53 && !t.payload.is_empty() => match t.payload.get(2..) {
                Some(p) => p,
                None => return,
            },
            _ => return,
        };
        if let Ok(resp) = dns::parse_response(payload) {
            self.learn_dns(&resp, ctx.ts, false);
        }
    }

    /// Whether a frame may carry a DNS response (the frames [`observe_dns`] reads).
    ///
    /// [`observe_dns`]: FlowTable::observe_dns
    pub fn may_be_dns_response(d: &Decoded<'_>) -> bool {
        match &d.l4 {
            L4::Udp(u) => u.sport == 53,
            L4::Tcp(t) => t.sport == 53 && !t.payload.is_empty(),
            L4::IcmpError(_) => false,
        }
    }

    fn learn_dns(&mut self, resp: &dns::DnsResponse, ts: Nanos, own: bool) {
        if own {
            self.stats.dns_responses = self.stats.dns_responses.saturating_add(1);
        }
        for r in dns::resolve_chain(resp) {
            if own {
                self.stats.dns_answers = self.stats.dns_answers.saturating_add(1);
            }
            self.dns
                .insert(r.addr, r.name.as_str().to_string(), ts, &mut self.stats);
        }
    }

    fn udp(
        &mut self,
        ctx: &PacketCtx,
        u: &UdpDatagram<'_>,
        pre: Prepared,
        out: &mut Vec<FlowRecord>,
    ) {
        let Prepared {
            key,
            src_is_a,
            hash,
        } = pre;
        let mut slot = self.flows.slot(&key, hash);
        let idle = slot
            .and_then(|i| self.flows.at(i))
            .map(|f| ctx.ts.saturating_sub(f.last_ts) > self.cfg.udp_idle);
        if idle == Some(true) {
            if let Some(f) = self.flows.remove(&key, hash) {
                self.stats.flows_evicted_idle = self.stats.flows_evicted_idle.saturating_add(1);
                out.push(self.record(f, EndReason::IdleTimeout));
            }
        }
        if idle != Some(false) {
            self.make_room(out);
            // The first datagram's sender is the client, unless it comes from a service
            // port to a non-service port (a reply whose request was not captured).
            let s = self.cfg.service_ports.contains(u.sport);
            let d = self.cfg.service_ports.contains(u.dport);
            let src_is_client = !s || d;
            let f = self.new_flow(ctx, key, src_is_client == src_is_a);
            slot = self.flows.insert(key, hash, f);
        }
        let Some(f) = slot.and_then(|i| self.flows.at_mut(i)) else {
            return;
        };
        let from_client = f.account(src_is_a, ctx, u.payload_len);
        if u.sport == 53 {
            match dns::parse_response(u.payload) {
                Ok(resp) => {
                    f.app = Some(AppProto::Dns);
                    let ts = ctx.ts;
                    self.learn_dns(&resp, ts, true);
                }
                Err(_) => self.stats.dns_malformed = self.stats.dns_malformed.saturating_add(1),
            }
        } else if from_client && u.dport == 53 && f.app.is_none() {
            f.app = Some(AppProto::Dns);
        } else if from_client && !u.payload.is_empty() {
            Self::client_datagram(&mut self.stats, f, u.payload);
        }
    }

    /// A client datagram: QUIC Initials are decrypted (RFC 9001) for the SNI.
    fn client_datagram(stats: &mut FlowStats, f: &mut Flow, payload: &[u8]) {
        if matches!(f.client_stream, ClientStream::Fresh) {
            if !quic::is_quic_long_header_initial(payload) {
                // 0-RTT or other packets may come first; give up after a few.
                f.client_segments = f.client_segments.saturating_add(1);
                if f.client_segments >= u16::from(quic::MAX_DATAGRAMS) {
                    f.client_stream = ClientStream::Done;
                }
                return;
            }
            f.client_stream = ClientStream::Quic(Box::default());
        }
        let state = match &mut f.client_stream {
            ClientStream::Quic(q) => q.push(payload),
            _ => return,
        };
        Self::quic_outcome(stats, f, state);
    }

    /// Record what a QUIC Initial assembler concluded; `NeedMore` keeps it going.
    fn quic_outcome(stats: &mut FlowStats, f: &mut Flow, state: quic::QuicState) {
        match state {
            quic::QuicState::NeedMore => return,
            quic::QuicState::NotQuic => {}
            quic::QuicState::Done(info) => {
                f.app = Some(AppProto::Quic);
                if info.partial {
                    stats.hello_partial = stats.hello_partial.saturating_add(1);
                    f.hello = Some(HelloStatus::Partial);
                } else {
                    stats.hello_complete = stats.hello_complete.saturating_add(1);
                    f.hello = Some(HelloStatus::Complete);
                }
                if let Some(sni) = info.sni {
                    set_hello_name(f, sni.into_string(), NameSource::Quic);
                }
            }
            quic::QuicState::Failed(e) => {
                f.app = Some(AppProto::Quic);
                stats.quic_failed = stats.quic_failed.saturating_add(1);
                f.hello = Some(match e {
                    quic::QuicError::TooLarge | quic::QuicError::TooFragmented => {
                        HelloStatus::Overflow
                    }
                    quic::QuicError::Incomplete => HelloStatus::Incomplete,
                    _ => HelloStatus::Malformed,
                });
            }
        }
        f.client_stream = ClientStream::Done;
    }

    fn icmp(&mut self, ctx: &PacketCtx, reporter: IpAddr, e: &IcmpError) {
        let (key, _) = FlowKey::of(
            e.transport,
            SocketAddr::new(e.quoted_src, e.quoted_sport),
            SocketAddr::new(e.quoted_dst, e.quoted_dport),
        );
        match self.flows.get_mut(&key) {
            Some(f) => {
                self.stats.icmp_errors_matched = self.stats.icmp_errors_matched.saturating_add(1);
                if f.icmp.is_none() {
                    f.icmp = Some(Box::new(IcmpInfo {
                        icmp_type: e.icmp_type,
                        code: e.code,
                        admin_prohibited: e.admin_prohibited(),
                        frame: ctx.frame,
                        reporter,
                    }));
                }
                f.last_ts = f.last_ts.max(ctx.ts);
            }
            None => {
                self.stats.icmp_errors_unmatched =
                    self.stats.icmp_errors_unmatched.saturating_add(1)
            }
        }
    }

    fn record(&mut self, mut f: Flow, ended_by: EndReason) -> FlowRecord {
        self.hello_bytes = self.hello_bytes.saturating_sub(hello_buffered(&f));
        match &mut f.client_stream {
            ClientStream::Hello(h) => {
                let state = h.finish();
                f.client_stream = ClientStream::Done;
                Self::hello_outcome(&mut self.stats, &mut f, state);
            }
            ClientStream::Quic(q) => {
                let state = q.finish();
                f.client_stream = ClientStream::Done;
                Self::quic_outcome(&mut self.stats, &mut f, state);
            }
            _ => {}
        }
        let (client, server) = if f.a_is_client {
            (f.key.a(), f.key.b())
        } else {
            (f.key.b(), f.key.a())
        };
        let hello = f.hello;
        if hello == Some(HelloStatus::Incomplete) {
            self.stats.hello_incomplete = self.stats.hello_incomplete.saturating_add(1);
        }
        if hello == Some(HelloStatus::Overflow) {
            self.stats.hello_overflow = self.stats.hello_overflow.saturating_add(1);
        }
        if hello == Some(HelloStatus::Malformed) {
            self.stats.hello_malformed = self.stats.hello_malformed.saturating_add(1);
        }
        let one_direction;
        let outcome = match f.key.transport() {
            Transport::Tcp => {
                one_direction = f.syns > 0 && !f.synack_seen && f.client_acked_after_syn;
                if f.syns == 0 {
                    Outcome::Midstream
                } else if f.synack_seen {
                    if f.rst_after_synack {
                        Outcome::Reset
                    } else {
                        Outcome::Established
                    }
                } else if f.rst_before_synack {
                    Outcome::Refused
                } else if f.icmp.is_some() {
                    Outcome::Unreachable
                } else if one_direction {
                    Outcome::Established
                } else {
                    Outcome::Unanswered
                }
            }
            Transport::Udp => {
                one_direction = false;
                if f.packets[1] > 0 {
                    Outcome::Answered
                } else if f.icmp.is_some() {
                    Outcome::Unreachable
                } else {
                    Outcome::UdpUnanswered
                }
            }
        };
        let (name, name_source) = match f.name {
            Some(b) => {
                let (n, s) = *b;
                (Some(n), Some(s))
            }
            None => (None, None),
        };
        FlowRecord {
            transport: f.key.transport(),
            client,
            server,
            first_ts: f.first_ts,
            last_ts: f.last_ts,
            client_packets: f.packets[0],
            client_bytes: f.bytes[0],
            server_packets: f.packets[1],
            server_bytes: f.bytes[1],
            client_payload: f.payload[0],
            server_payload: f.payload[1],
            outcome,
            rtt_ns: f.rtt_ns,
            ttfb_ns: f.ttfb_ns,
            syn_retransmits: f.syns.saturating_sub(1),
            client_flags: f.flags[0],
            server_flags: f.flags[1],
            name,
            name_source,
            name_from_hello: f.name_from_hello,
            app: f.app,
            hello,
            first_frame: f.first_frame,
            icmp: f.icmp,
            one_direction,
            ended_by,
            folded: 0,
        }
    }
}

/// Time to first byte: the client's first payload, then the server's first after it.
fn note_first_bytes(f: &mut Flow, from_client: bool, payload_len: u32, ts: Nanos) {
    if payload_len == 0 || f.ttfb_ns.is_some() {
        return;
    }
    match (from_client, f.first_client_payload) {
        (true, None) => f.first_client_payload = Some(ts),
        (false, Some(first)) => f.ttfb_ns = Some(ts.saturating_sub(first).max(0)),
        _ => {}
    }
}

/// Bytes of ClientHello reassembly buffer a flow holds.
fn hello_buffered(f: &Flow) -> usize {
    match &f.client_stream {
        ClientStream::Hello(h) => h.buffered(),
        _ => 0,
    }
}

/// A better source replaces a worse one; the first name of a source is kept.
fn set_name(f: &mut Flow, name: String, src: NameSource) {
    match f.name.as_deref() {
        Some((_, cur)) if *cur <= src => {}
        _ => f.name = Some(Box::new((name, src))),
    }
}

/// Name the flow by the server_name of its ClientHello (`src`: `Sni` or `Quic`, the
/// two most trusted sources, so the name is taken unless the flow already has one
/// from a ClientHello).
fn set_hello_name(f: &mut Flow, sni: String, src: NameSource) {
    if !f.name_from_hello {
        set_name(f, sni, src);
        f.name_from_hello = f.name.as_deref().is_some_and(|(_, s)| *s == src);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod map_tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every flow the model holds is found at a slot whose flow has its key, and
    /// every slot's flow is found at that slot.
    fn check(map: &FlowMap, model: &BTreeMap<FlowKey, Nanos>) {
        assert_eq!(map.len(), model.len());
        for (k, ts) in model {
            let slot = map.slot(k, map.hash(k)).unwrap();
            let f = map.at(slot).unwrap();
            assert_eq!((f.key, f.first_ts), (*k, *ts));
        }
        for (i, f) in map.values().enumerate() {
            assert_eq!(map.slot(&f.key, map.hash(&f.key)), Some(i as u32));
        }
    }

    #[test]
    fn flow_index_follows_inserts_replacements_removals_and_pops() {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut map = FlowMap::default();
        let mut model = BTreeMap::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..30_000i64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (key, _) = FlowKey::of(
                if rng & 1 == 0 { Transport::Tcp } else { Transport::Udp },
                SocketAddr::new(IpAddr::from([10, 0, 0, (rng >> 8) as u8 % 8]), 443),
                SocketAddr::new(IpAddr::from([10, 1, 0, 1]), 1024 + (rng >> 16) as u16 % 300),
            );
            match (rng >> 40) % 8 {
                0..=3 => {
                    let ctx = PacketCtx {
                        ts: step,
                        frame: FrameRef { file: 0, frame: 1 },
                        wire_len: 60,
                    };
                    let f = table.new_flow(&ctx, key, true);
                    let slot = map.insert(key, map.hash(&key), f).unwrap();
                    assert_eq!(map.at(slot).unwrap().first_ts, step);
                    model.insert(key, step);
                }
                4..=6 => {
                    let removed = map.remove(&key, map.hash(&key)).map(|f| (f.key, f.first_ts));
                    assert_eq!(removed, model.remove(&key).map(|ts| (key, ts)));
                }
                _ => {
                    let last = map.pop().map(|f| (f.key, f.first_ts));
                    if let Some((k, ts)) = last {
                        assert_eq!(model.remove(&k), Some(ts));
                    }
                    assert!(last.is_some() || model.is_empty());
                }
            }
            if step % 101 == 0 {
                check(&map, &model);
            }
            if step % 5_000 == 0 {
                map.shrink_to_fit();
                check(&map, &model);
            }
        }
        check(&map, &model);
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod layout_tests {
    use super::Flow;
    use std::mem::{offset_of, size_of};

    /// What every packet of an established flow reads and writes lies in the first
    /// three cache lines of its [`Flow`] (see its layout note), and the handshake's
    /// and rare fields come after; the flow is no larger than the compiler's layout.
    #[test]
    fn the_fields_of_every_packet_come_first() {
        let hot_end = [
            offset_of!(Flow, key) + size_of::<super::FlowKey>(),
            offset_of!(Flow, flags) + 2,
            offset_of!(Flow, a_is_client) + 1,
            offset_of!(Flow, fins) + 1,
            offset_of!(Flow, last_ts) + 8,
            offset_of!(Flow, packets) + 16,
            offset_of!(Flow, bytes) + 16,
            offset_of!(Flow, payload) + 16,
            offset_of!(Flow, seq) + size_of::<[super::SeqTrack; 2]>(),
            offset_of!(Flow, client_stream) + size_of::<super::ClientStream>(),
        ];
        assert!(hot_end.iter().all(|&e| e <= 192), "{hot_end:?}");
        assert_eq!(offset_of!(Flow, key), 0);
        for cold in [
            offset_of!(Flow, rtt_ns),
            offset_of!(Flow, last_syn_ts),
            offset_of!(Flow, name),
            offset_of!(Flow, first_frame),
            offset_of!(Flow, icmp),
        ] {
            assert!(cold >= 192, "{cold}");
        }
        assert!(size_of::<Flow>() <= 280, "{}", size_of::<Flow>());
    }
}
