//! Frame decoding: link layer, IP (with tunnels), TCP, UDP and the ICMP errors that
//! quote a flow. Bytes in, a borrowed [`Decoded`] view out.
//!
//! This module owns every rule about how a frame's bytes are walked. It must never
//! panic on any input, never allocate, and never know about flows, names or the
//! catalog: a frame it cannot use becomes a counted [`Skip`] reason, not an error.
//! IP headers and extension headers are sliced with `etherparse`; the link layers
//! and tunnels etherparse does not walk (SLL2, null/loopback, NFLOG, PPP, PPPoE,
//! MPLS, GRE, GTP-U, IP-in-IP) are walked here, with every length checked.

use crate::model::Transport;
use etherparse::{IpNumber, LaxIpSlice, LenSource, TcpSlice, UdpSlice};
use std::net::IpAddr;

/// Link-layer header types (pcap `LINKTYPE_*` values) that are understood.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const PPP: u32 = 9;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSDOS: u32 = 14;
    pub const PPP_HDLC: u32 = 50;
    pub const PPP_ETHER: u32 = 51;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;

    /// Whether frames of this link type can be decoded.
    pub fn is_supported(lt: u32) -> bool {
        matches!(
            lt,
            NULL | ETHERNET
                | PPP
                | RAW_OPENBSD
                | RAW_BSDOS
                | PPP_HDLC
                | PPP_ETHER
                | RAW
                | LOOP
                | LINUX_SLL
                | IPV4
                | IPV6
                | NFLOG
                | LINUX_SLL2
        )
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_TEB: u16 = 0x6558;

/// How many encapsulations (VLAN tags, MPLS labels, tunnels) one frame may nest
/// before it is counted as [`Skip::TooDeep`].
pub const MAX_NESTING: usize = 8;

/// TCP flag bits as they appear in the header's 13th byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// A frame decoded down to its innermost TCP/UDP segment or a quoting ICMP error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4<'a>,
    /// Whether an IP fragment (first fragment; later ones are skipped) carried it.
    pub fragment: bool,
    /// Number of tunnel layers (IP-in-IP, GRE, GTP-U) unwrapped to reach it.
    pub tunnels: u8,
}

/// The transport part of a [`Decoded`] frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    /// An ICMP or ICMPv6 "destination unreachable" that quotes the start of a packet
    /// the sender of `src` could not deliver.
    IcmpError(IcmpError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The payload bytes present in the capture.
    pub payload: &'a [u8],
    /// The payload length the IP header announces (>= `payload.len()`).
    pub payload_len: u32,
}

impl TcpSegment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    /// The capture cut this segment short (snaplen) or an IP fragment carried it.
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < u64::from(self.payload_len)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
    pub payload_len: u32,
}

impl UdpDatagram<'_> {
    pub fn truncated(&self) -> bool {
        (self.payload.len() as u64) < u64::from(self.payload_len)
    }
}

/// An ICMP error and the flow it quotes, in the direction of the quoted packet
/// (quoted source = the host that sent the undeliverable packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpError {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    pub transport: Transport,
    pub quoted_src: IpAddr,
    pub quoted_dst: IpAddr,
    pub quoted_sport: u16,
    pub quoted_dport: u16,
}

impl IcmpError {
    /// Whether the code says a filter forbade the packet (administratively prohibited).
    pub fn admin_prohibited(&self) -> bool {
        if self.v6 {
            self.code == 1
        } else {
            matches!(self.code, 9 | 10 | 13)
        }
    }
}

/// Why a frame produced no [`Decoded`] value. Each reason is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// The link type of the input is not one we decode.
    UnsupportedLinkType,
    /// The frame is shorter than its link-layer header.
    LinkTruncated,
    /// Not IP (ARP, LLDP, STP, IPX, ...).
    NotIp,
    /// The IP header is cut or invalid.
    IpMalformed,
    /// A non-first IP fragment (its transport header is in another frame).
    IpFragment,
    /// IP carries something other than TCP, UDP or a quoting ICMP error.
    OtherProtocol,
    /// ICMP that is not a destination-unreachable quoting TCP/UDP (echo, redirect, ...).
    IcmpOther,
    /// The TCP or UDP header is cut or invalid.
    TransportMalformed,
    /// Encapsulations nested deeper than [`MAX_NESTING`].
    TooDeep,
}

impl Skip {
    pub const ALL: [Skip; 9] = [
        Skip::UnsupportedLinkType,
        Skip::LinkTruncated,
        Skip::NotIp,
        Skip::IpMalformed,
        Skip::IpFragment,
        Skip::OtherProtocol,
        Skip::IcmpOther,
        Skip::TransportMalformed,
        Skip::TooDeep,
    ];

    /// Stable snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLinkType => "unsupported_link_type",
            Skip::LinkTruncated => "link_truncated",
            Skip::NotIp => "not_ip",
            Skip::IpMalformed => "ip_malformed",
            Skip::IpFragment => "ip_fragment_not_first",
            Skip::OtherProtocol => "other_ip_protocol",
            Skip::IcmpOther => "icmp_not_flow_error",
            Skip::TransportMalformed => "transport_malformed",
            Skip::TooDeep => "encapsulation_too_deep",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decode one frame of link type `linktype`.
pub fn decode(linktype: u32, frame: &[u8]) -> Result<Decoded<'_>, Skip> {
    match plain_tcp(linktype, frame) {
        Some(d) => Ok(d),
        None => decode_general(linktype, frame),
    }
}

/// Big-endian u16 at `at`, if the bytes are there.
pub(crate) fn be16(f: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = f.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

/// The IP packet of a frame of the plain kinds, found without walking anything
/// else: Ethernet with at most two VLAN tags and an IP ethertype, or raw IP. `None`
/// for every other frame (the fast paths leave those to [`decode_general`]).
pub fn plain_ip_packet(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    match linktype {
        linktype::ETHERNET => {
            let mut ty = be16(frame, 12)?;
            let mut off = 14usize;
            for _ in 0..2 {
                if matches!(ty, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
                    ty = be16(frame, off.checked_add(2)?)?;
                    off = off.checked_add(4)?;
                }
            }
            if ty != ETH_IPV4 && ty != ETH_IPV6 {
                return None;
            }
            frame.get(off..)
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => Some(frame),
        _ => None,
    }
}

/// The most common frame, read without etherparse: Ethernet (at most two VLAN tags)
/// or raw IP, then unfragmented IPv4 or IPv6 without extension headers whose length
/// field fits the captured bytes, then TCP. Gives exactly what [`decode_general`]
/// gives for such a frame (tests compare both on every frame of the shared
/// captures); `None` for anything else, which the general path takes. Inlined into
/// [`decode`]: returned through a call, its 100-byte answer was stored and read back
/// once more, the hottest spot of the workers' loop.
#[inline(always)]
pub fn plain_tcp(linktype: u32, frame: &[u8]) -> Option<Decoded<'_>> {
    let ip = plain_ip_packet(linktype, frame)?;
    let first = *ip.first()?;
    let (src, dst, data) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f).checked_mul(4)?;
            let total = usize::from(be16(ip, 2)?);
            if ihl < 20 || total < ihl || total > ip.len() || be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            if *ip.get(9)? != 6 {
                return None;
            }
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), ip.get(ihl..total)?)
        }
        6 => {
            let pl = usize::from(be16(ip, 4)?);
            let end = pl.checked_add(40)?;
            if pl == 0 || end > ip.len() || *ip.get(6)? != 6 {
                return None;
            }
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), ip.get(40..end)?)
        }
        _ => return None,
    };
    let be32 = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    };
    let hl = usize::from(*data.get(12)? >> 4).checked_mul(4)?;
    if hl < 20 || hl > data.len() {
        return None;
    }
    Some(Decoded {
        src,
        dst,
        l4: L4::Tcp(TcpSegment {
            sport: be16(data, 0)?,
            dport: be16(data, 2)?,
            seq: be32(4)?,
            ack: be32(8)?,
            flags: *data.get(13)?,
            payload: data.get(hl..)?,
            payload_len: u32::try_from(data.len().checked_sub(hl)?).ok()?,
        }),
        fragment: false,
        tunnels: 0,
    })
}

/// Decode any frame (what [`decode`] does for the frames its fast path leaves).
pub fn decode_general(linktype: u32, frame: &[u8]) -> Result<Decoded<'_>, Skip> {
    let (mut next, mut rest) = link_payload(linktype, frame)?;
    let mut tunnels = 0u8;
    for _ in 0..MAX_NESTING {
        match next {
            Next::Ether(ethertype) => {
                let (n, r) = ether_payload(ethertype, rest)?;
                next = n;
                rest = r;
            }
            Next::Ethernet => {
                let Some((&[.., hi, lo], r)) = rest.split_first_chunk::<14>() else {
                    return Err(Skip::LinkTruncated);
                };
                let ty = u16::from_be_bytes([hi, lo]);
                rest = r;
                next = if ty <= 1500 {
                    // IEEE 802.3 length field: IP only behind an LLC/SNAP header.
                    match rest.split_first_chunk::<8>() {
                        Some((&[0xaa, 0xaa, 0x03, _, _, _, hi, lo], r)) => {
                            rest = r;
                            Next::Ether(u16::from_be_bytes([hi, lo]))
                        }
                        Some(_) => return Err(Skip::NotIp),
                        None => return Err(Skip::LinkTruncated),
                    }
                } else {
                    Next::Ether(ty)
                };
            }
            Next::Ppp => {
                let (n, r) = ppp_payload(rest)?;
                next = n;
                rest = r;
            }
            Next::Ip => match ip_layer(rest)? {
                IpStep::Done(mut d) => {
                    d.tunnels = tunnels;
                    return Ok(d);
                }
                IpStep::Tunnel(n, r) => {
                    tunnels = tunnels.saturating_add(1);
                    next = n;
                    rest = r;
                }
            },
        }
    }
    Err(Skip::TooDeep)
}

#[derive(Clone, Copy)]
enum Next {
    Ether(u16),
    Ethernet,
    Ppp,
    Ip,
}

fn link_payload(linktype: u32, f: &[u8]) -> Result<(Next, &[u8]), Skip> {
    use linktype::*;
    match linktype {
        ETHERNET => Ok((Next::Ethernet, f)),
        RAW | RAW_OPENBSD | RAW_BSDOS | IPV4 | IPV6 => Ok((Next::Ip, f)),
        NULL | LOOP => {
            let (&h, rest) = f.split_first_chunk::<4>().ok_or(Skip::LinkTruncated)?;
            // The address family is in the capturing host's byte order for NULL and
            // in network order for LOOP; accept either, as tcpdump does.
            let le = u32::from_le_bytes(h);
            let be = u32::from_be_bytes(h);
            let fam = if le < 256 { le } else { be };
            match fam {
                2 | 24 | 28 | 30 => Ok((Next::Ip, rest)),
                _ => Err(Skip::NotIp),
            }
        }
        LINUX_SLL => match f.split_first_chunk::<16>() {
            Some((&[.., hi, lo], rest)) => Ok((Next::Ether(u16::from_be_bytes([hi, lo])), rest)),
            None => Err(Skip::LinkTruncated),
        },
        LINUX_SLL2 => match f.split_first_chunk::<20>() {
            Some((&[hi, lo, ..], rest)) => Ok((Next::Ether(u16::from_be_bytes([hi, lo])), rest)),
            None => Err(Skip::LinkTruncated),
        },
        PPP | PPP_HDLC => Ok((Next::Ppp, f)),
        PPP_ETHER => {
            // PPPoE session header (6 bytes) then PPP.
            let r = f.get(6..).ok_or(Skip::LinkTruncated)?;
            Ok((Next::Ppp, r))
        }
        NFLOG => nflog_payload(f).map(|p| (Next::Ip, p)),
        _ => Err(Skip::UnsupportedLinkType),
    }
}

/// NFLOG: a 4-byte header, then TLVs (length and type in host order, little-endian
/// on every capture seen); type 9 holds the packet, starting at its IP header.
fn nflog_payload(f: &[u8]) -> Result<&[u8], Skip> {
    let mut tlvs = f.get(4..).ok_or(Skip::LinkTruncated)?;
    while let Some((&[l0, l1, t0, t1], after)) = tlvs.split_first_chunk::<4>() {
        let len = usize::from(u16::from_le_bytes([l0, l1]));
        // The length counts the 4-byte TLV header.
        let Some(value_len) = len.checked_sub(4) else {
            return Err(Skip::LinkTruncated);
        };
        if u16::from_le_bytes([t0, t1]) == 9 {
            // A value cut by the capture is kept as far as it goes.
            return Ok(after.get(..value_len).unwrap_or(after));
        }
        // TLVs are padded to 4 bytes; one that runs past the frame ends the walk.
        match len
            .checked_next_multiple_of(4)
            .and_then(|step| tlvs.get(step..))
        {
            Some(next) => tlvs = next,
            None => break,
        }
    }
    Err(Skip::NotIp)
}

fn ppp_payload(f: &[u8]) -> Result<(Next, &[u8]), Skip> {
    // HDLC-like framing: address 0xff, control 0x03.
    let f = f.strip_prefix(&[0xff, 0x03]).unwrap_or(f);
    // Protocol field: one byte when compressed (odd), else two.
    let (proto, rest) = match *f {
        [b, ref rest @ ..] if b & 1 == 1 => (u16::from(b), rest),
        [hi, lo, ref rest @ ..] => (u16::from_be_bytes([hi, lo]), rest),
        _ => return Err(Skip::LinkTruncated),
    };
    match proto {
        0x0021 | 0x0057 => Ok((Next::Ip, rest)),
        _ => Err(Skip::NotIp),
    }
}

fn ether_payload(ethertype: u16, f: &[u8]) -> Result<(Next, &[u8]), Skip> {
    match ethertype {
        ETH_IPV4 | ETH_IPV6 => Ok((Next::Ip, f)),
        ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => match f.split_first_chunk::<4>() {
            Some((&[_, _, hi, lo], rest)) => Ok((Next::Ether(u16::from_be_bytes([hi, lo])), rest)),
            None => Err(Skip::LinkTruncated),
        },
        ETH_MPLS | ETH_MPLS_MC => {
            // Pop labels until bottom of stack, then guess the payload by its first nibble.
            let rest = mpls_pop(f)?;
            match rest.first().map(|b| b >> 4) {
                Some(4) | Some(6) => Ok((Next::Ip, rest)),
                Some(_) => Ok((Next::Ethernet, rest)),
                None => Err(Skip::LinkTruncated),
            }
        }
        ETH_PPPOE_SESSION => {
            let r = f.get(6..).ok_or(Skip::LinkTruncated)?;
            Ok((Next::Ppp, r))
        }
        ETH_TEB => Ok((Next::Ethernet, f)),
        _ => Err(Skip::NotIp),
    }
}

/// The bytes after the bottom-of-stack MPLS label; more than [`MAX_NESTING`] labels
/// above it are [`Skip::TooDeep`].
fn mpls_pop(f: &[u8]) -> Result<&[u8], Skip> {
    let mut rest = f;
    for _ in 0..=MAX_NESTING {
        let (&[_, _, s, _], after) = rest.split_first_chunk::<4>().ok_or(Skip::LinkTruncated)?;
        if s & 1 == 1 {
            return Ok(after);
        }
        rest = after;
    }
    Err(Skip::TooDeep)
}

enum IpStep<'a> {
    Done(Decoded<'a>),
    Tunnel(Next, &'a [u8]),
}

fn ip_layer(f: &[u8]) -> Result<IpStep<'_>, Skip> {
    let (ip, _ext_err) = LaxIpSlice::from_slice(f).map_err(|_| Skip::IpMalformed)?;
    let src = ip.source_addr();
    let dst = ip.destination_addr();
    let payload = ip.payload();
    let mut fragment = false;
    if payload.fragmented {
        let first = match &ip {
            LaxIpSlice::Ipv4(v4) => v4.header().fragments_offset().value() == 0,
            LaxIpSlice::Ipv6(v6) => ipv6_first_fragment(v6),
        };
        if !first {
            return Err(Skip::IpFragment);
        }
        fragment = true;
    }
    let data = payload.payload;
    // Announced payload length, for truncation accounting.
    let announced = match payload.len_source {
        LenSource::Slice => ip_announced_payload(&ip).unwrap_or(data.len() as u32),
        _ => data.len() as u32,
    };
    let announced = if fragment { u32::MAX } else { announced };
    match payload.ip_number {
        IpNumber::TCP => {
            let t = TcpSlice::from_slice(data).map_err(|_| Skip::TransportMalformed)?;
            let hl = t.header_len();
            Ok(IpStep::Done(Decoded {
                src,
                dst,
                l4: L4::Tcp(TcpSegment {
                    sport: t.source_port(),
                    dport: t.destination_port(),
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    flags: data.get(13).copied().unwrap_or(0),
                    payload: t.payload(),
                    payload_len: announced.saturating_sub(hl as u32),
                }),
                fragment,
                tunnels: 0,
            }))
        }
        IpNumber::UDP => {
            let u = UdpSlice::from_slice_lax(data).map_err(|_| Skip::TransportMalformed)?;
            let (sport, dport) = (u.source_port(), u.destination_port());
            let udp_payload = u.payload();
            let payload_len = announced.saturating_sub(8);
            if let Some(inner) = gtpu_payload(sport, dport, udp_payload) {
                return Ok(IpStep::Tunnel(Next::Ip, inner));
            }
            if let Some((n, inner)) = capwap_data_payload(sport, dport, udp_payload) {
                return Ok(IpStep::Tunnel(n, inner));
            }
            Ok(IpStep::Done(Decoded {
                src,
                dst,
                l4: L4::Udp(UdpDatagram {
                    sport,
                    dport,
                    payload: udp_payload,
                    payload_len,
                }),
                fragment,
                tunnels: 0,
            }))
        }
        IpNumber::ICMP => icmp_error(false, data).map(|e| {
            IpStep::Done(Decoded {
                src,
                dst,
                l4: L4::IcmpError(e),
                fragment,
                tunnels: 0,
            })
        }),
        IpNumber::IPV6_ICMP => icmp_error(true, data).map(|e| {
            IpStep::Done(Decoded {
                src,
                dst,
                l4: L4::IcmpError(e),
                fragment,
                tunnels: 0,
            })
        }),
        IpNumber::IPV4 | IpNumber::IPV6 if !fragment => Ok(IpStep::Tunnel(Next::Ip, data)),
        IpNumber::GRE if !fragment => gre_payload(data).map(|(n, r)| IpStep::Tunnel(n, r)),
        _ => Err(Skip::OtherProtocol),
    }
}

fn ipv6_first_fragment(v6: &etherparse::LaxIpv6Slice<'_>) -> bool {
    // The fragment header's offset field; etherparse exposes the header in the
    // extension list. If it cannot be found, treat the packet as a later fragment.
    for ext in v6.extensions().clone().into_iter() {
        if let etherparse::Ipv6ExtensionSlice::Fragment(fr) = ext {
            return fr.fragment_offset().value() == 0;
        }
    }
    false
}

fn ip_announced_payload(ip: &LaxIpSlice<'_>) -> Option<u32> {
    match ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            u32::from(h.total_len()).checked_sub(u32::from(h.ihl()) * 4)
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let pl = u32::from(h.payload_length());
            let ext = v6.extensions().slice().len() as u32;
            if pl == 0 {
                None
            } else {
                pl.checked_sub(ext)
            }
        }
    }
}

/// GRE (RFC 2784/2890): flags, protocol type, optional checksum, key and sequence.
fn gre_payload(f: &[u8]) -> Result<(Next, &[u8]), Skip> {
    let Some((&[flags, version, hi, lo], mut rest)) = f.split_first_chunk::<4>() else {
        return Err(Skip::OtherProtocol);
    };
    if version & 0x07 != 0 {
        return Err(Skip::OtherProtocol); // PPTP's enhanced GRE is not followed.
    }
    let proto = u16::from_be_bytes([hi, lo]);
    // Checksum (with reserved), key and sequence number: 4 bytes each when present.
    for bit in [0x80u8, 0x20, 0x10] {
        if flags & bit != 0 {
            rest = rest.get(4..).ok_or(Skip::OtherProtocol)?;
        }
    }
    match proto {
        ETH_IPV4 | ETH_IPV6 => Ok((Next::Ip, rest)),
        ETH_TEB => Ok((Next::Ethernet, rest)),
        _ => Err(Skip::OtherProtocol),
    }
}

/// GTP-U (3GPP TS 29.281) on UDP 2152 carrying a T-PDU: returns the inner IP packet.
fn gtpu_payload(sport: u16, dport: u16, f: &[u8]) -> Option<&[u8]> {
    if sport != 2152 && dport != 2152 {
        return None;
    }
    let flags = *f.first()?;
    if flags >> 5 != 1 || f.get(1) != Some(&0xff) {
        return None; // not GTPv1 or not a T-PDU
    }
    let inner = if flags & 0x07 == 0 {
        f.get(8..)?
    } else {
        // Sequence number, N-PDU number and the first next-extension type.
        let (&[.., mut next_ext], mut rest) = f.split_first_chunk::<12>()?;
        for _ in 0..MAX_NESTING {
            if next_ext == 0 {
                break;
            }
            // Length in 4-byte units, its last byte the next extension's type.
            let len = usize::from(*rest.first()?).checked_mul(4)?;
            let (ext, after) = rest.split_at_checked(len)?;
            next_ext = *ext.last()?; // a zero length has none
            rest = after;
        }
        if next_ext != 0 {
            return None;
        }
        rest
    };
    match inner.first().map(|b| b >> 4) {
        Some(4) | Some(6) => Some(inner),
        _ => None,
    }
}

/// CAPWAP data channel (RFC 5415, UDP 5247) as wireless LAN controllers tunnel their
/// access points' client traffic: the header, then an 802.3 frame or an unencrypted
/// 802.11 data frame with its LLC/SNAP header.
fn capwap_data_payload(sport: u16, dport: u16, f: &[u8]) -> Option<(Next, &[u8])> {
    if sport != 5247 && dport != 5247 {
        return None;
    }
    let w = u32::from_be_bytes(f.get(..4)?.try_into().ok()?);
    if w >> 24 != 0 {
        return None; // version 0, type 0 (not DTLS)
    }
    // HLEN (bits 19..24) counts 4-byte words: shifting by 17 instead of 19 scales it.
    let hlen = ((w >> 17) & 0x7c) as usize;
    let wbid = (w >> 9) & 0x1f;
    let native = (w >> 8) & 1 == 1;
    let fragment = (w >> 7) & 1 == 1;
    if fragment || hlen < 8 {
        return None;
    }
    let frame = f.get(hlen..)?;
    if !native {
        return Some((Next::Ethernet, frame));
    }
    if wbid != 1 {
        return None; // only the IEEE 802.11 binding
    }
    let (b0, b1) = (*frame.first()?, *frame.get(1)?);
    // Cisco access points send the frame control field byte-swapped (Wireshark's
    // "Cisco Wireless Controller Support" option): accept either order.
    let (fc0, fc1) = if (b0 >> 2) & 3 == 2 {
        (b0, b1)
    } else {
        (b1, b0)
    };
    let (ftype, subtype) = ((fc0 >> 2) & 3, fc0 >> 4);
    if ftype != 2 || fc1 & 0x40 != 0 {
        return None; // not a data frame, or protected (encrypted)
    }
    let mut body = frame.get(24..)?;
    if fc1 & 0x03 == 0x03 {
        body = body.get(6..)?; // four addresses
    }
    if subtype & 0x08 != 0 {
        body = body.get(2..)?; // QoS control
        if fc1 & 0x80 != 0 {
            body = body.get(4..)?; // HT control
        }
    }
    match body.split_first_chunk::<8>()? {
        (&[0xaa, 0xaa, 0x03, 0, 0, 0, hi, lo], inner) => {
            Some((Next::Ether(u16::from_be_bytes([hi, lo])), inner))
        }
        _ => None,
    }
}

/// Destination-unreachable errors that quote a TCP or UDP packet.
fn icmp_error(v6: bool, data: &[u8]) -> Result<IcmpError, Skip> {
    let Some((&[ty, code], _)) = data.split_first_chunk::<2>() else {
        return Err(Skip::TransportMalformed);
    };
    let unreachable = if v6 { ty == 1 } else { ty == 3 };
    if !unreachable {
        return Err(Skip::IcmpOther);
    }
    let quoted = data.get(8..).ok_or(Skip::IcmpOther)?;
    let (ip, _) = LaxIpSlice::from_slice(quoted).map_err(|_| Skip::IcmpOther)?;
    let p = ip.payload();
    let transport = match p.ip_number {
        IpNumber::TCP => Transport::Tcp,
        IpNumber::UDP => Transport::Udp,
        _ => return Err(Skip::IcmpOther),
    };
    let &[s0, s1, d0, d1] = p.payload.first_chunk::<4>().ok_or(Skip::IcmpOther)?;
    Ok(IcmpError {
        v6,
        icmp_type: ty,
        code,
        transport,
        quoted_src: ip.source_addr(),
        quoted_dst: ip.destination_addr(),
        quoted_sport: u16::from_be_bytes([s0, s1]),
        quoted_dport: u16::from_be_bytes([d0, d1]),
    })
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
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [17, 57, 146, 20], 64)
            .tcp(50000, 5223, 1000, 65535)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn ethernet_tcp_syn() {
        let f = tcp_v4(&[]);
        let d = decode(linktype::ETHERNET, &f).unwrap();
        assert_eq!(d.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        match d.l4 {
            L4::Tcp(t) => {
                assert_eq!((t.sport, t.dport, t.seq), (50000, 5223, 1000));
                assert!(t.has(tcp_flags::SYN));
                assert!(!t.truncated());
            }
            _ => panic!("not tcp"),
        }
    }

    #[test]
    fn truncated_payload_is_flagged() {
        let f = tcp_v4(&[0x16; 100]);
        let cut = &f[..f.len() - 40];
        match decode(linktype::ETHERNET, cut).unwrap().l4 {
            L4::Tcp(t) => {
                assert_eq!(t.payload.len(), 60);
                assert_eq!(t.payload_len, 100);
                assert!(t.truncated());
            }
            _ => panic!("not tcp"),
        }
    }

    #[test]
    fn vlan_qinq_and_sll2() {
        let inner = tcp_v4(&[]);
        // QinQ: outer 0x88a8 tag 100, inner 0x8100 tag 20.
        let mut q = inner[..12].to_vec();
        q.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00]);
        q.extend_from_slice(&inner[14..]);
        assert!(matches!(
            decode(linktype::ETHERNET, &q).unwrap().l4,
            L4::Tcp(_)
        ));
        // SLL2: protocol 0x0800, reserved, ifindex, arphrd 1, pkttype, addrlen 6, addr[8].
        let mut s = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        s.extend_from_slice(&inner[14..]);
        assert!(matches!(
            decode(linktype::LINUX_SLL2, &s).unwrap().l4,
            L4::Tcp(_)
        ));
        assert_eq!(
            decode(linktype::LINUX_SLL2, &s[..10]),
            Err(Skip::LinkTruncated)
        );
    }

    #[test]
    fn ieee_802_3_with_snap_header() {
        let inner = tcp_v4(&[]);
        let ip = &inner[14..];
        let mut f = inner[..12].to_vec();
        f.extend_from_slice(&((ip.len() + 8) as u16).to_be_bytes()); // 802.3 length
        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]); // LLC + SNAP
        f.extend_from_slice(ip);
        assert!(matches!(
            decode(linktype::ETHERNET, &f).unwrap().l4,
            L4::Tcp(_)
        ));
        // Plain LLC (spanning tree) is not IP.
        let mut stp = inner[..12].to_vec();
        stp.extend_from_slice(&[0x00, 0x26, 0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(decode(linktype::ETHERNET, &stp), Err(Skip::NotIp));
    }

    #[test]
    fn null_loopback_both_orders() {
        let inner = tcp_v4(&[]);
        let mut le = vec![2, 0, 0, 0];
        le.extend_from_slice(&inner[14..]);
        let mut be = vec![0, 0, 0, 2];
        be.extend_from_slice(&inner[14..]);
        assert!(decode(linktype::NULL, &le).is_ok());
        assert!(decode(linktype::LOOP, &be).is_ok());
    }

    #[test]
    fn icmp_admin_prohibited_quotes_the_syn() {
        let syn = tcp_v4(&[]);
        let quoted = &syn[14..14 + 28]; // IP header + first 8 bytes of TCP
        let b = PacketBuilder::ipv4([192, 0, 2, 1], [10, 0, 0, 1], 64).icmpv4_raw(3, 13, [0; 4]);
        let mut v = Vec::new();
        b.write(&mut v, quoted).unwrap();
        let d = decode(linktype::RAW, &v).unwrap();
        match d.l4 {
            L4::IcmpError(e) => {
                assert!(e.admin_prohibited());
                assert_eq!(e.quoted_dport, 5223);
                assert_eq!(e.quoted_src, "10.0.0.1".parse::<IpAddr>().unwrap());
            }
            _ => panic!("not icmp"),
        }
    }

    #[test]
    fn ip_in_ip_reaches_inner() {
        let inner = tcp_v4(&[]);
        let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64);
        let mut v = Vec::new();
        b.write(&mut v, IpNumber::IPV4, &inner[14..]).unwrap();
        let d = decode(linktype::RAW, &v).unwrap();
        assert_eq!(d.tunnels, 1);
        assert_eq!(d.dst, "17.57.146.20".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 12345;
        for len in 0..200usize {
            let mut buf = vec![0u8; len];
            for b in buf.iter_mut() {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            for lt in [0, 1, 9, 12, 101, 108, 113, 228, 229, 239, 276, 999] {
                let _ = decode(lt, &buf);
            }
        }
    }
}
