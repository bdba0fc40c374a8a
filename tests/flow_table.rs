//! Flow table behaviour on built packets: handshake outcomes, orientation, counters,
//! server names and where they came from, port reuse, idle timeout, the flow cap and
//! the capture-loss estimate (SPEC section 3).

mod common_packets;

use common_packets::*;
use mdmaudit::flow::{
    AppProto, EndReason, FlowConfig, FrameRef, HelloStatus, NameSource, Outcome, PortSet,
};
use std::collections::BTreeSet;

const CLIENT: &str = "192.168.1.20:50000";
const SERVER: &str = "17.57.146.20:5223";
const C_ISN: u32 = 1_000;
const S_ISN: u32 = 5_000;

fn frame(n: u64) -> FrameRef {
    FrameRef { file: 0, frame: n }
}

#[test]
fn full_connection_is_established_with_counters_rtt_and_orientation() {
    let mut d = Driver::default();
    // An unrelated datagram first, so the flow's first frame is 2, not 1.
    d.feed(0, &udp("10.9.9.9:40000", "10.9.9.1:123", &[0; 48]));
    let frames: Vec<Vec<u8>> = vec![
        tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]),
        tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
        tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
        tcp(
            CLIENT,
            SERVER,
            PSH | ACK,
            C_ISN + 1,
            S_ISN + 1,
            &[0xaa; 100],
        ),
        tcp(
            SERVER,
            CLIENT,
            PSH | ACK,
            S_ISN + 1,
            C_ISN + 101,
            &[0xbb; 200],
        ),
        tcp(CLIENT, SERVER, FIN | ACK, C_ISN + 101, S_ISN + 201, &[]),
        tcp(SERVER, CLIENT, FIN | ACK, S_ISN + 201, C_ISN + 102, &[]),
        tcp(CLIENT, SERVER, ACK, C_ISN + 102, S_ISN + 202, &[]),
    ];
    let times = [
        1_000 * MS,
        1_030 * MS,
        1_031 * MS,
        1_032 * MS,
        1_060 * MS,
        1_070 * MS,
        1_080 * MS,
        1_081 * MS,
    ];
    for (f, t) in frames.iter().zip(times) {
        d.feed(t, f);
    }
    let from_client = [0, 2, 3, 5, 7];
    let client_bytes: u64 = from_client.iter().map(|&i| frames[i].len() as u64).sum();
    let server_bytes: u64 = [1, 4, 6].iter().map(|&i| frames[i].len() as u64).sum();

    let (records, stats) = d.finish();
    assert_eq!(records.len(), 2);
    let r = one_to(&records, SERVER);
    assert_eq!(r.outcome, Outcome::Established);
    // The client's address sorts after the server's: orientation is not key order.
    assert_eq!(r.client, sa(CLIENT));
    assert_eq!(r.server, sa(SERVER));
    assert_eq!(r.rtt_ns, Some(30 * MS));
    assert_eq!(r.syn_retransmits, 0);
    assert_eq!((r.client_packets, r.server_packets), (5, 3));
    assert_eq!(
        (r.client_bytes, r.server_bytes),
        (client_bytes, server_bytes)
    );
    assert_eq!(r.client_flags, SYN | ACK | PSH | FIN);
    assert_eq!(r.server_flags, SYN | ACK | PSH | FIN);
    assert_eq!(r.first_frame, frame(2));
    assert_eq!((r.first_ts, r.last_ts), (1_000 * MS, 1_081 * MS));
    assert_eq!(r.ended_by, EndReason::EndOfCapture);
    assert!(!r.one_direction);
    assert_eq!(r.icmp, None);
    // 0xaa bytes are not a ClientHello, so no name.
    assert_eq!(r.name, None);
    assert_eq!(r.name_source, None);
    assert_eq!((r.app, r.hello), (None, None));
    assert_eq!(stats.flows_created, 2);
}

#[test]
fn rtt_is_measured_from_the_last_syn_before_the_syn_ack() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(SEC, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(3 * SEC, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        3 * SEC + 45 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        3 * SEC + 46 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.rtt_ns, Some(45 * MS));
    assert_eq!(r.syn_retransmits, 2);
    assert_eq!(r.first_frame, frame(1));
}

#[test]
fn three_syns_and_nothing_back_is_unanswered_with_two_retransmits() {
    let mut d = Driver::default();
    for t in [0, SEC, 3 * SEC] {
        d.feed(t, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    }
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1, "retransmitted SYNs are one flow");
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Unanswered);
    assert_eq!(r.syn_retransmits, 2);
    assert_eq!((r.client_packets, r.server_packets), (3, 0));
    assert_eq!(r.server_bytes, 0);
    assert_eq!(r.rtt_ns, None);
    assert_eq!((r.first_ts, r.last_ts), (0, 3 * SEC));
    assert_eq!(r.client_flags, SYN);
    assert!(!r.one_direction);
    assert_eq!(stats.flows_port_reused, 0);
}

#[test]
fn syn_answered_by_rst_ack_is_refused() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(MS, &tcp(SERVER, CLIENT, RST | ACK, 0, C_ISN + 1, &[]));
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Refused);
    assert_eq!(r.client, sa(CLIENT));
    assert_eq!((r.client_packets, r.server_packets), (1, 1));
    assert_eq!(r.server_flags, RST | ACK);
    assert_eq!(r.rtt_ns, None);
}

#[test]
fn syn_then_rst_from_the_client_is_unanswered() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(2 * SEC, &tcp(CLIENT, SERVER, RST, C_ISN + 1, 0, &[]));
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Unanswered);
    assert_eq!((r.client_packets, r.server_packets), (2, 0));
    assert!(!r.one_direction);
}

#[test]
fn icmp_admin_prohibited_quoting_the_syn_is_unreachable() {
    let mut d = Driver::default();
    let syn = tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]);
    d.feed(0, &syn);
    let icmp = icmp4_unreachable("192.168.1.1", "192.168.1.20", 13, &syn);
    let icmp_frame = d.feed(2 * MS, &icmp);
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1, "the ICMP error is not a flow of its own");
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.client, sa(CLIENT));
    assert_eq!(r.server, sa(SERVER));
    let i = r.icmp.as_deref().expect("icmp info");
    assert_eq!((i.icmp_type, i.code), (3, 13));
    assert!(i.admin_prohibited);
    assert_eq!(i.frame, icmp_frame);
    assert_eq!(i.reporter, ip("192.168.1.1"));
    assert_eq!(r.last_ts, 2 * MS);
    assert_eq!(
        (stats.icmp_errors_matched, stats.icmp_errors_unmatched),
        (1, 0)
    );
}

#[test]
fn icmp_port_unreachable_is_unreachable_but_not_admin_prohibited() {
    let mut d = Driver::default();
    let syn = tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]);
    d.feed(0, &syn);
    d.feed(
        MS,
        &icmp4_unreachable("17.57.146.20", "192.168.1.20", 3, &syn),
    );
    let (records, _) = d.finish();
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert!(!r.icmp.as_deref().expect("icmp info").admin_prohibited);
}

#[test]
fn icmpv6_admin_prohibited_quoting_the_syn_is_unreachable() {
    let client = "[2001:db8::20]:50000";
    let server = "[2620:149:a44::10]:5223";
    let mut d = Driver::default();
    let syn = tcp(client, server, SYN, C_ISN, 0, &[]);
    d.feed(0, &syn);
    let icmp_frame = d.feed(
        MS,
        &icmp6_unreachable("2001:db8::1", "2001:db8::20", 1, &syn),
    );
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.client, sa(client));
    let i = r.icmp.as_deref().expect("icmp info");
    assert_eq!((i.icmp_type, i.code), (1, 1));
    assert!(i.admin_prohibited);
    assert_eq!(i.frame, icmp_frame);
    assert_eq!(i.reporter, ip("2001:db8::1"));
    assert_eq!(stats.icmp_errors_matched, 1);
}

#[test]
fn icmp_error_for_an_unknown_flow_is_counted_unmatched() {
    let mut d = Driver::default();
    let syn = tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]);
    d.feed(
        0,
        &icmp4_unreachable("192.168.1.1", "192.168.1.20", 13, &syn),
    );
    let (records, stats) = d.finish();
    assert!(records.is_empty());
    assert_eq!(
        (stats.icmp_errors_matched, stats.icmp_errors_unmatched),
        (0, 1)
    );
}

#[test]
fn established_then_rst_is_reset() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        21 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        22 * MS,
        &tcp(CLIENT, SERVER, PSH | ACK, C_ISN + 1, S_ISN + 1, &[1; 10]),
    );
    d.feed(40 * MS, &tcp(SERVER, CLIENT, RST, S_ISN + 1, 0, &[]));
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Reset);
    assert_eq!(r.rtt_ns, Some(20 * MS));
    assert_eq!((r.client_packets, r.server_packets), (3, 2));
}

#[test]
fn midstream_flow_is_oriented_by_the_service_port_whoever_speaks_first() {
    let dev = "10.0.0.5:49152";
    let apns = "17.57.146.20:5223";
    for server_first in [true, false] {
        let mut d = Driver::default();
        let from_server = tcp(apns, dev, PSH | ACK, 70_000, 9_000, &[7; 40]);
        let from_client = tcp(dev, apns, PSH | ACK, 9_000, 70_040, &[8; 30]);
        if server_first {
            d.feed(0, &from_server);
            d.feed(MS, &from_client);
        } else {
            d.feed(0, &from_client);
            d.feed(MS, &from_server);
        }
        let (records, _) = d.finish();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.outcome, Outcome::Midstream, "server_first={server_first}");
        assert_eq!(r.client, sa(dev), "server_first={server_first}");
        assert_eq!(r.server, sa(apns), "server_first={server_first}");
        assert_eq!((r.client_packets, r.server_packets), (1, 1));
        assert_eq!(r.client_bytes, from_client.len() as u64);
        assert_eq!(r.server_bytes, from_server.len() as u64);
        assert_eq!(r.syn_retransmits, 0);
        assert_eq!(r.rtt_ns, None);
        assert_eq!(r.first_frame, frame(1));
    }
}

#[test]
fn midstream_orientation_uses_the_configured_service_ports() {
    // 60000 is a catalog port of this run; 40000 is not. Without the configured
    // port the lower port would be taken as the server.
    let mut ports = PortSet::empty();
    ports.insert(60000);
    let cfg = FlowConfig {
        service_ports: ports,
        ..FlowConfig::default()
    };
    let mut d = Driver::new(cfg);
    d.feed(
        0,
        &tcp("10.0.0.7:40000", "10.1.0.1:60000", ACK, 1, 1, &[1; 10]),
    );
    d.feed(
        MS,
        &tcp("10.1.0.1:60000", "10.0.0.7:40000", ACK, 1, 11, &[2; 10]),
    );
    let (records, _) = d.finish();
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Midstream);
    assert_eq!(r.server, sa("10.1.0.1:60000"));
    assert_eq!(r.client, sa("10.0.0.7:40000"));
}

#[test]
fn client_acking_without_captured_syn_ack_is_one_direction_established() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        30 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        31 * MS,
        &tcp(
            CLIENT,
            SERVER,
            PSH | ACK,
            C_ISN + 1,
            S_ISN + 1,
            OPENSSL_HELLO,
        ),
    );
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, Outcome::Established);
    assert!(r.one_direction);
    assert_eq!((r.client_packets, r.server_packets), (3, 0));
    assert_eq!(r.rtt_ns, None);
    assert_eq!(r.sni(), Some("courier.push.apple.com"));
    assert_eq!(r.name_source, Some(NameSource::Sni));
}

#[test]
fn udp_query_and_answer_is_answered_one_way_is_unanswered() {
    let mut d = Driver::default();
    d.feed(0, &udp("10.0.0.5:51000", "17.253.14.125:123", &[0x23; 48]));
    d.feed(
        20 * MS,
        &udp("17.253.14.125:123", "10.0.0.5:51000", &[0x24; 48]),
    );
    d.feed(SEC, &udp("10.0.0.5:51001", "17.1.2.3:3478", &[1; 20]));
    d.feed(2 * SEC, &udp("10.0.0.5:51001", "17.1.2.3:3478", &[1; 20]));
    let (records, _) = d.finish();
    assert_eq!(records.len(), 2);
    let ntp = one_to(&records, "17.253.14.125:123");
    assert_eq!(ntp.outcome, Outcome::Answered);
    assert_eq!(ntp.client, sa("10.0.0.5:51000"));
    assert_eq!((ntp.client_packets, ntp.server_packets), (1, 1));
    let stun = one_to(&records, "17.1.2.3:3478");
    assert_eq!(stun.outcome, Outcome::UdpUnanswered);
    assert_eq!(stun.outcome.as_str(), "unanswered");
    assert_eq!((stun.client_packets, stun.server_packets), (2, 0));
    assert_eq!(stun.rtt_ns, None);
}

#[test]
fn dns_answer_names_a_later_flow_through_the_cname_chain() {
    let mut d = Driver::default();
    d.feed(0, &udp("10.0.0.5:53000", "10.0.0.1:53", DNS_COURIER_QUERY));
    d.feed(
        5 * MS,
        &udp("10.0.0.1:53", "10.0.0.5:53000", DNS_COURIER_RESPONSE),
    );
    d.feed(
        10 * MS,
        &tcp("10.0.0.5:49200", "17.57.146.20:5223", SYN, 1, 0, &[]),
    );
    d.feed(
        40 * MS,
        &tcp("17.57.146.20:5223", "10.0.0.5:49200", SYN | ACK, 9, 2, &[]),
    );
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 2);
    let dns = one_to(&records, "10.0.0.1:53");
    assert_eq!(dns.outcome, Outcome::Answered);
    assert_eq!(dns.app, Some(AppProto::Dns));
    let apns = one_to(&records, "17.57.146.20:5223");
    assert_eq!(apns.name.as_deref(), Some("courier.push.apple.com"));
    assert_eq!(apns.name_source, Some(NameSource::Dns));
    assert_eq!(apns.sni(), None);
    assert_eq!((stats.dns_responses, stats.dns_answers), (1, 1));
    assert_eq!(stats.dns_malformed, 0);
}

#[test]
fn sni_overrides_a_dns_name() {
    let mut d = Driver::default();
    d.feed(
        0,
        &udp("10.0.0.1:53", "10.0.0.5:53000", DNS_COURIER_RESPONSE),
    );
    let c = "10.0.0.5:49201";
    let s = "17.57.146.20:443";
    let hello = hello_with_sni("7-courier.push.apple.com");
    d.feed(SEC, &tcp(c, s, SYN, C_ISN, 0, &[]));
    d.feed(SEC + 20 * MS, &tcp(s, c, SYN | ACK, S_ISN, C_ISN + 1, &[]));
    d.feed(SEC + 21 * MS, &tcp(c, s, ACK, C_ISN + 1, S_ISN + 1, &[]));
    d.feed(
        SEC + 22 * MS,
        &tcp(c, s, PSH | ACK, C_ISN + 1, S_ISN + 1, &hello),
    );
    let (records, stats) = d.finish();
    let r = one_to(&records, s);
    assert_eq!(r.name.as_deref(), Some("7-courier.push.apple.com"));
    assert_eq!(r.name_source, Some(NameSource::Sni));
    assert_eq!(r.sni(), Some("7-courier.push.apple.com"));
    assert_eq!(r.app, Some(AppProto::Tls));
    assert_eq!(r.hello, Some(HelloStatus::Complete));
    assert_eq!(stats.hello_complete, 1);
}

#[test]
fn client_hello_in_three_segments_delivered_1_3_2_yields_the_sni() {
    let mut d = Driver::default();
    let h = OPENSSL_HELLO;
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        21 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    let seg = |off: u32, bytes: &[u8]| tcp(CLIENT, SERVER, ACK, C_ISN + 1 + off, S_ISN + 1, bytes);
    d.feed(22 * MS, &seg(0, &h[..100]));
    d.feed(23 * MS, &seg(200, &h[200..]));
    d.feed(24 * MS, &seg(100, &h[100..200]));
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.sni(), Some("courier.push.apple.com"));
    assert_eq!(r.name.as_deref(), Some("courier.push.apple.com"));
    assert_eq!(r.name_source, Some(NameSource::Sni));
    assert_eq!(r.hello, Some(HelloStatus::Complete));
    assert_eq!(r.app, Some(AppProto::Tls));
    assert_eq!((stats.hello_complete, stats.hello_incomplete), (1, 0));
}

#[test]
fn http_host_header_names_the_flow() {
    let c = "10.0.0.5:49300";
    let s = "10.20.0.8:8080";
    let req = b"GET /mdm/checkin HTTP/1.1\r\nUser-Agent: MDM/1.0\r\nHost: MDM.Example.org:8080\r\nAccept: */*\r\n\r\n";
    let mut d = Driver::default();
    d.feed(0, &tcp(c, s, SYN, C_ISN, 0, &[]));
    d.feed(MS, &tcp(s, c, SYN | ACK, S_ISN, C_ISN + 1, &[]));
    d.feed(2 * MS, &tcp(c, s, ACK, C_ISN + 1, S_ISN + 1, &[]));
    d.feed(3 * MS, &tcp(c, s, PSH | ACK, C_ISN + 1, S_ISN + 1, req));
    let (records, _) = d.finish();
    let r = &records[0];
    assert_eq!(r.name.as_deref(), Some("mdm.example.org"));
    assert_eq!(r.name_source, Some(NameSource::Http));
    assert_eq!(r.app, Some(AppProto::Http));
    assert_eq!(r.sni(), None);
}

#[test]
fn new_syn_with_another_isn_on_a_finished_tuple_starts_a_second_flow() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        10 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        11 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        12 * MS,
        &tcp(CLIENT, SERVER, FIN | ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, FIN | ACK, S_ISN + 1, C_ISN + 2, &[]),
    );
    d.feed(
        21 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 2, S_ISN + 2, &[]),
    );
    assert!(d.out.is_empty());
    let second_syn = d.feed(SEC, &tcp(CLIENT, SERVER, SYN, 777_777, 0, &[]));
    assert_eq!(d.out.len(), 1, "the finished connection is pushed at once");
    d.feed(
        SEC + 10 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, 88_888, 777_778, &[]),
    );
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 2);
    let first = &records[0];
    assert_eq!(first.ended_by, EndReason::PortReused);
    assert_eq!(first.first_frame, frame(1));
    assert_eq!(first.outcome, Outcome::Established);
    assert_eq!((first.client_packets, first.server_packets), (4, 2));
    assert_eq!(first.last_ts, 21 * MS);
    let second = &records[1];
    assert_eq!(second.ended_by, EndReason::EndOfCapture);
    assert_eq!(second.first_frame, second_syn);
    assert_eq!(second.outcome, Outcome::Established);
    assert_eq!((second.client_packets, second.server_packets), (1, 1));
    assert_eq!(second.rtt_ns, Some(10 * MS));
    assert_eq!(stats.flows_port_reused, 1);
    assert_eq!(stats.flows_created, 2);
}

#[test]
fn udp_flow_idle_past_its_timeout_splits_by_packet_time() {
    let c = "10.0.0.5:51000";
    let s = "17.253.14.125:123";
    let mut d = Driver::default();
    d.feed(0, &udp(c, s, &[0x23; 48]));
    d.feed(10 * MS, &udp(s, c, &[0x24; 48]));
    // 30 s later: within the 60 s UDP timeout, same flow.
    d.feed(30 * SEC, &udp(c, s, &[0x23; 48]));
    assert!(d.out.is_empty());
    // 120 s after that: a new flow.
    let late = d.feed(150 * SEC, &udp(c, s, &[0x23; 48]));
    assert_eq!(
        d.out.len(),
        1,
        "the idle flow leaves the table when time passes"
    );
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].ended_by, EndReason::IdleTimeout);
    assert_eq!(records[0].first_frame, frame(1));
    assert_eq!(
        (records[0].client_packets, records[0].server_packets),
        (2, 1)
    );
    assert_eq!(records[0].last_ts, 30 * SEC);
    assert_eq!(records[0].outcome, Outcome::Answered);
    assert_eq!(records[1].ended_by, EndReason::EndOfCapture);
    assert_eq!(records[1].first_frame, late);
    assert_eq!(records[1].first_ts, 150 * SEC);
    assert_eq!(records[1].outcome, Outcome::UdpUnanswered);
    assert_eq!(stats.flows_evicted_idle, 1);
    assert_eq!(stats.flows_created, 2);
}

#[test]
fn flow_cap_evicts_the_oldest_and_reports_every_flow_once() {
    const TOTAL: u16 = 1_000;
    let cfg = FlowConfig {
        max_flows: 100,
        ..FlowConfig::default()
    };
    let mut d = Driver::new(cfg);
    for i in 0..TOTAL {
        let c = format!("10.0.{}.{}:{}", i / 250, i % 250 + 1, 20_000 + i);
        d.feed(i64::from(i) * MS, &udp(&c, "17.1.2.3:3478", &[0; 8]));
        assert!(d.table.len() <= 100, "table holds {} flows", d.table.len());
    }
    let evicted_during = d.out.len();
    let remaining = d.table.len();
    let (records, stats) = d.finish();
    assert!(stats.flows_evicted_cap > 0);
    assert_eq!(stats.flows_evicted_cap as usize, evicted_during);
    assert_eq!(
        stats.flows_evicted_cap as usize + remaining,
        usize::from(TOTAL)
    );
    assert_eq!(stats.flows_created, u64::from(TOTAL));
    assert_eq!(stats.flows_evicted_idle, 0);
    assert_eq!(records.len(), usize::from(TOTAL));
    let ports: BTreeSet<u16> = records.iter().map(|r| r.client.port()).collect();
    assert_eq!(ports.len(), usize::from(TOTAL), "a flow was reported twice");
    let evicted: Vec<u16> = records
        .iter()
        .filter(|r| r.ended_by == EndReason::Evicted)
        .map(|r| r.client.port())
        .collect();
    assert_eq!(evicted.len(), evicted_during);
    // The least recently active go first: what stays is the newest flows.
    let kept: BTreeSet<u16> = records
        .iter()
        .filter(|r| r.ended_by == EndReason::EndOfCapture)
        .map(|r| r.client.port())
        .collect();
    let newest: BTreeSet<u16> = (20_000 + TOTAL - remaining as u16..20_000 + TOTAL).collect();
    assert_eq!(kept, newest);
}

#[test]
fn ack_above_a_missing_server_segment_is_counted_as_capture_loss() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        10 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        11 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        12 * MS,
        &tcp(CLIENT, SERVER, PSH | ACK, C_ISN + 1, S_ISN + 1, &[1; 100]),
    );
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, ACK, S_ISN + 1, C_ISN + 101, &[2; 200]),
    );
    // Not captured: server data seq S_ISN + 201, 300 bytes.
    d.feed(
        30 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 101, S_ISN + 501, &[]),
    );
    // A duplicate ACK is not a second loss.
    d.feed(
        31 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 101, S_ISN + 501, &[]),
    );
    d.feed(
        40 * MS,
        &tcp(SERVER, CLIENT, ACK, S_ISN + 501, C_ISN + 101, &[3; 50]),
    );
    d.feed(
        41 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 101, S_ISN + 551, &[]),
    );
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1);
    assert_eq!(stats.acks_above_gap, 1);
    assert_eq!(stats.gap_bytes, 300);
    assert!(stats.acks_seen >= 3, "acks_seen = {}", stats.acks_seen);
}

#[test]
fn complete_capture_shows_no_capture_loss() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        10 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        11 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    d.feed(
        12 * MS,
        &tcp(CLIENT, SERVER, PSH | ACK, C_ISN + 1, S_ISN + 1, &[1; 100]),
    );
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, ACK, S_ISN + 1, C_ISN + 101, &[2; 200]),
    );
    d.feed(
        21 * MS,
        &tcp(SERVER, CLIENT, ACK, S_ISN + 201, C_ISN + 101, &[2; 300]),
    );
    d.feed(
        30 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 101, S_ISN + 501, &[]),
    );
    let (_, stats) = d.finish();
    assert_eq!((stats.acks_above_gap, stats.gap_bytes), (0, 0));
    assert!(stats.acks_seen >= 2);
}

#[test]
fn icmp_port_unreachable_quoting_a_udp_datagram_makes_it_unreachable() {
    let mut d = Driver::default();
    let dgram = udp("10.0.0.5:51001", "17.1.2.3:3478", &[1; 20]);
    d.feed(0, &dgram);
    d.feed(MS, &icmp4_unreachable("17.1.2.3", "10.0.0.5", 3, &dgram));
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.transport, mdmaudit::model::Transport::Udp);
    assert_eq!(r.outcome, Outcome::Unreachable);
    let i = r.icmp.as_deref().expect("icmp info");
    assert_eq!((i.icmp_type, i.code, i.admin_prohibited), (3, 3, false));
    assert_eq!(stats.icmp_errors_matched, 1);
}

#[test]
fn syn_ack_seen_first_makes_its_receiver_the_client() {
    // Neither port is a service port, and the lower-port rule would pick 40000 as
    // the server; the SYN-ACK says its sender (50000) is.
    let s = "10.1.0.1:50000";
    let c = "10.0.0.7:40000";
    let mut d = Driver::default();
    d.feed(0, &tcp(s, c, SYN | ACK, S_ISN, C_ISN + 1, &[]));
    d.feed(MS, &tcp(c, s, ACK, C_ISN + 1, S_ISN + 1, &[]));
    d.feed(
        2 * MS,
        &tcp(c, s, PSH | ACK, C_ISN + 1, S_ISN + 1, &[1; 10]),
    );
    let (records, _) = d.finish();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.client, sa(c));
    assert_eq!(r.server, sa(s));
    assert_eq!((r.client_packets, r.server_packets), (2, 1));
    assert_eq!(r.syn_retransmits, 0);
}

#[test]
fn client_hello_cut_by_snaplen_after_the_sni_still_names_the_flow() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        21 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    let full = tcp(
        CLIENT,
        SERVER,
        PSH | ACK,
        C_ISN + 1,
        S_ISN + 1,
        OPENSSL_HELLO,
    );
    // Ethernet 14 + IPv4 20 + TCP 20 headers, then 200 of the hello's 346 bytes:
    // the server_name extension ends at byte 175.
    let headers = full.len() - OPENSSL_HELLO.len();
    assert_eq!(headers, 54);
    d.feed(22 * MS, &full[..headers + 200]);
    let (records, stats) = d.finish();
    let r = &records[0];
    assert_eq!(r.sni(), Some("courier.push.apple.com"));
    assert_eq!(r.name_source, Some(NameSource::Sni));
    assert_eq!(r.hello, Some(HelloStatus::Partial));
    assert_eq!((stats.hello_partial, stats.hello_complete), (1, 0));
}

#[test]
fn client_hello_cut_by_snaplen_before_the_sni_gives_no_name() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(
        20 * MS,
        &tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
    );
    d.feed(
        21 * MS,
        &tcp(CLIENT, SERVER, ACK, C_ISN + 1, S_ISN + 1, &[]),
    );
    let full = tcp(
        CLIENT,
        SERVER,
        PSH | ACK,
        C_ISN + 1,
        S_ISN + 1,
        OPENSSL_HELLO,
    );
    d.feed(22 * MS, &full[..54 + 160]);
    let (records, _) = d.finish();
    let r = &records[0];
    assert_eq!(r.sni(), None);
    assert_eq!(r.name, None);
    assert_eq!(r.app, Some(AppProto::Tls));
}

#[test]
fn syn_with_a_new_isn_after_an_unanswered_attempt_is_a_new_flow() {
    let mut d = Driver::default();
    d.feed(0, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(SEC, &tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]));
    d.feed(5 * SEC, &tcp(CLIENT, SERVER, SYN, 424_242, 0, &[]));
    let (records, stats) = d.finish();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].ended_by, EndReason::PortReused);
    assert_eq!(records[0].syn_retransmits, 1);
    assert_eq!(records[0].outcome, Outcome::Unanswered);
    assert_eq!(records[1].syn_retransmits, 0);
    assert_eq!(records[1].first_frame, frame(3));
    assert_eq!(stats.flows_port_reused, 1);
}

#[test]
fn closed_connection_leaves_the_table_and_late_fins_are_absorbed() {
    let mut d = Driver::default();
    let frames: Vec<Vec<u8>> = vec![
        tcp(CLIENT, SERVER, SYN, C_ISN, 0, &[]),
        tcp(SERVER, CLIENT, SYN | ACK, S_ISN, C_ISN + 1, &[]),
        tcp(CLIENT, SERVER, FIN | ACK, C_ISN + 1, S_ISN + 1, &[]),
        tcp(SERVER, CLIENT, FIN | ACK, S_ISN + 1, C_ISN + 2, &[]),
    ];
    for (i, f) in frames.iter().enumerate() {
        d.feed(i as i64 * MS, f);
    }
    // Other traffic moves the clock past the close delay and a sweep.
    d.feed(20 * SEC, &udp("10.9.9.9:40000", "10.9.9.1:123", &[0; 48]));
    // The server retransmits its FIN long after: no new mid-stream flow.
    d.feed(
        30 * SEC,
        &tcp(SERVER, CLIENT, FIN | ACK, S_ISN + 1, C_ISN + 2, &[]),
    );
    let (records, stats) = d.finish();
    let tcp_flows: Vec<_> = records
        .iter()
        .filter(|r| r.transport == mdmaudit::model::Transport::Tcp)
        .collect();
    assert_eq!(tcp_flows.len(), 1);
    assert_eq!(tcp_flows[0].ended_by, EndReason::Closed);
    assert_eq!(stats.flows_closed, 1);
    assert_eq!(stats.packets_after_close, 1);
    assert_eq!(stats.flows_evicted_idle, 0);
}
