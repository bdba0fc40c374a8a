//! `mdmaudit::flow::FlowTable` with small limits, fed a sequence of frames, then
//! `finish`.
//!
//! Input: see `mdmaudit_fuzz::TableLimits` (6 bytes), then records
//! (`mdmaudit_fuzz::RecordHead`): a raw frame of a chosen link type that goes through
//! `mdmaudit::decode::decode` (what the seeds hold: the first frames of real captures),
//! or a `mdmaudit_fuzz::Synthetic` packet between a few hosts and ports.
//! Contract checked: a value for every input; the table never holds more than
//! `max_flows` flows; after `finish` it is empty; no more records than packets; names
//! in records are bounded and safe to print, and come with their source.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mdmaudit::decode::{decode, Decoded, IcmpError, TcpSegment, UdpDatagram, L4};
use mdmaudit::flow::{FlowConfig, FlowRecord, FlowTable, FrameRef, NameSource, PacketCtx, PortSet};
use mdmaudit::model::Transport;
use mdmaudit_fuzz::{
    check_name_text, linktype_of, RecordHead, Synthetic, TableLimits, HOSTS, PORTS, START_NS,
};
use std::net::IpAddr;

const SECOND: i64 = 1_000_000_000;

fn host(i: u8) -> IpAddr {
    HOSTS[usize::from(i) % HOSTS.len()].parse().unwrap()
}

fn port(i: u8) -> u16 {
    PORTS[usize::from(i) % PORTS.len()]
}

fn synthetic<'a>(s: &Synthetic, payload: &'a [u8]) -> Decoded<'a> {
    let payload_len = payload.len() as u32 + u32::from(s.cut);
    let (src, dst) = (host(s.src), host(s.dst));
    let l4 = match s.proto % 3 {
        0 => L4::Tcp(TcpSegment {
            sport: port(s.sport),
            dport: port(s.dport),
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            payload,
            payload_len,
        }),
        1 => L4::Udp(UdpDatagram {
            sport: port(s.sport),
            dport: port(s.dport),
            payload,
            payload_len,
        }),
        _ => L4::IcmpError(IcmpError {
            v6: src.is_ipv6(),
            icmp_type: s.icmp_type,
            code: s.icmp_code,
            transport: if s.icmp_type & 1 == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            // The ICMP error travels from a router (here `src`) back to the sender of
            // the quoted packet (`dst`), which quoted a packet it sent to the server.
            quoted_src: dst,
            quoted_dst: host(s.seq as u8),
            quoted_sport: port(s.sport),
            quoted_dport: port(s.dport),
        }),
    };
    Decoded {
        src,
        dst,
        l4,
        fragment: s.flags & 0x80 != 0 && s.proto % 3 != 2,
        tunnels: 0,
    }
}

fn check_records(records: &[FlowRecord]) {
    for r in records {
        if let Some(text) = &r.name {
            check_name_text(text);
        }
        assert!(
            !r.name_from_hello || matches!(r.name_source, Some(NameSource::Sni | NameSource::Quic)),
            "a ClientHello's name with another source"
        );
        assert_eq!(
            r.name.is_some(),
            r.name_source.is_some(),
            "name without source"
        );
        assert!(r.first_frame.frame >= 1, "frame numbers are 1-based");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let limits: TableLimits = u.arbitrary().unwrap_or_else(|_| unreachable!());
    let max_flows = limits.max_flows();
    let cfg = FlowConfig {
        max_flows,
        tcp_idle: (1 + i64::from(limits.tcp_idle_s)) * SECOND,
        tcp_attempt_idle: (1 + i64::from(limits.tcp_attempt_idle_s)) * SECOND,
        udp_idle: (1 + i64::from(limits.udp_idle_s)) * SECOND,
        max_dns_entries: 1 + usize::from(limits.dns % 8),
        service_ports: PortSet::well_known(),
        max_hello_segments: 1 + u16::from(limits.hello_segments % 40),
        // Limits added later keep their defaults until the input format names them.
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(cfg);
    let mut out = Vec::new();
    let mut ts = START_NS;
    let mut frame_no = 0u64;
    let mut packets = 0u64;
    while !u.is_empty() {
        let head: RecordHead = u.arbitrary().unwrap_or_else(|_| unreachable!());
        let len = usize::from(head.len).min(u.len());
        let body = u.bytes(len).unwrap_or_default();
        ts = ts.saturating_add(i64::from(head.dt_10ms) * 10_000_000);
        frame_no += 1;
        let decoded = if head.kind < 0x80 {
            decode(linktype_of(head.kind), body).ok()
        } else {
            let mut b = Unstructured::new(body);
            let s: Synthetic = b.arbitrary().unwrap_or_else(|_| unreachable!());
            Some(synthetic(&s, b.take_rest()))
        };
        let Some(d) = decoded else { continue };
        let ctx = PacketCtx {
            ts,
            frame: FrameRef {
                file: 0,
                frame: frame_no,
            },
            wire_len: (body.len() as u32).saturating_add(u32::from(head.kind & 0x0f)),
        };
        table.process(&ctx, &d, &mut out);
        packets += 1;
        assert!(
            table.len() <= max_flows,
            "{} flows in a table of {max_flows}",
            table.len()
        );
    }
    table.finish(&mut out);
    assert!(table.is_empty(), "flows left after finish");
    assert!(
        out.len() as u64 <= packets,
        "{} records from {packets} packets",
        out.len()
    );
    check_records(&out);
});
