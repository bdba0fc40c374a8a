//! Verdicts of SPEC section 5 on flow records built by hand against a small inline
//! catalog: fallback linking and its window, blocked, legacy, unexpected, missing,
//! inferred profiles, one-direction captures, address-only ambiguity, determinism.

use mdmaudit::audit::{
    audit, audit_parts, ActiveProfile, Audit, AuditOptions, Finding, Severity, Verdict,
    ONE_DIRECTION_RULE,
};
use mdmaudit::catalog::Catalog;
use mdmaudit::flow::{EndReason, FlowRecord, FrameRef, IcmpInfo, NameSource, Outcome};
use mdmaudit::model::Transport;
use std::net::{IpAddr, SocketAddr};

const SEC: i64 = 1_000_000_000;

const DEVICE: &str = "apple.apns.device";
const PROVIDER: &str = "apple.apns.provider";
const LEGACY: &str = "apple.apns.gateway-legacy";

/// Two profiles and three APNs requirements, shaped like the built-in Apple entries.
const CATALOG: &str = r##"
[[profile]]
name = "apple-devices"
description = "Managed Apple devices"
infer = ["apple.apns.device"]

[[profile]]
name = "apple-mdm-server"
description = "An on-premises MDM server for Apple devices"
infer = ["apple.apns.provider", "apple.apns.gateway-legacy"]

[[requirement]]
id = "apple.apns.device"
vendor = "Apple"
product = "Apple Push Notification service"
role = "device-to-cloud"
hosts = ["courier.push.apple.com", "#-courier.push.apple.com", "*.push.apple.com"]
addresses = ["17.0.0.0/8"]
transport = "tcp"
ports = ["5223"]
fallback = ["443"]
required = true
profiles = ["apple-devices"]
purpose = "Each Apple device keeps one persistent connection to APNs."
source = "test"

[[requirement]]
id = "apple.apns.provider"
vendor = "Apple"
product = "APNs provider API"
role = "server-to-cloud"
hosts = ["api.push.apple.com"]
addresses = ["17.0.0.0/8"]
transport = "tcp"
ports = ["443", "2197"]
required = true
profiles = ["apple-mdm-server"]
purpose = "The MDM server sends pushes over the HTTP/2 provider API."
source = "test"

[[requirement]]
id = "apple.apns.gateway-legacy"
vendor = "Apple"
product = "APNs binary provider API"
role = "server-to-cloud"
hosts = ["gateway.push.apple.com", "feedback.push.apple.com"]
addresses = ["17.0.0.0/8"]
transport = "tcp"
ports = ["2195", "2196"]
required = false
profiles = ["apple-mdm-server"]
purpose = "Retired binary interface."
legacy = { retired = "2021-03-31", note = "binary provider API retired; use api.push.apple.com 443/2197", replaced_by = "apple.apns.provider" }
source = "test"
"##;

fn catalog() -> Catalog {
    match Catalog::parse_str("test.toml", CATALOG) {
        Ok(c) => c,
        Err(e) => panic!("inline catalog does not load:\n{e}"),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad socket address {s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address {s}: {e}"))
}

/// A TCP flow record shaped like the flow table reports `outcome`, starting at
/// second `t`, first seen in frame `frame`.
fn rec(frame: u64, client: &str, server: &str, outcome: Outcome, t: i64) -> FlowRecord {
    let (cp, sp, cf, sf, retx, rtt, dur) = match outcome {
        Outcome::Unanswered => (3, 0, 0x02, 0, 2, None, 3),
        Outcome::Refused => (1, 1, 0x02, 0x14, 0, None, 0),
        Outcome::Unreachable => (1, 0, 0x02, 0, 0, None, 0),
        Outcome::Established => (12, 10, 0x1b, 0x1b, 0, Some(30_000_000), 60),
        Outcome::Reset => (6, 5, 0x1a, 0x1e, 0, Some(30_000_000), 20),
        Outcome::Midstream => (8, 8, 0x18, 0x18, 0, None, 60),
        other => panic!("not a TCP outcome: {other:?}"),
    };
    let first_frame = FrameRef { file: 0, frame };
    let server = sa(server);
    FlowRecord {
        transport: Transport::Tcp,
        client: sa(client),
        server,
        first_ts: t * SEC,
        last_ts: (t + dur) * SEC,
        client_packets: cp,
        client_bytes: cp * 80,
        server_packets: sp,
        server_bytes: sp * 120,
        client_payload: cp.saturating_sub(2) * 40,
        server_payload: sp.saturating_sub(2) * 80,
        outcome,
        rtt_ns: rtt,
        ttfb_ns: rtt.map(|r| r + 1_000_000),
        syn_retransmits: retx,
        client_flags: cf,
        server_flags: sf,
        name: None,
        name_source: None,
        name_from_hello: false,
        app: None,
        hello: None,
        first_frame,
        icmp: (outcome == Outcome::Unreachable).then(|| {
            Box::new(IcmpInfo {
                icmp_type: 3,
                code: 13,
                admin_prohibited: true,
                frame: FrameRef {
                    file: 0,
                    frame: frame + 1000,
                },
                reporter: ip("10.0.0.1"),
            })
        }),
        one_direction: false,
        ended_by: EndReason::EndOfCapture,
        folded: 0,
    }
}

/// `r` named `name` by `source` (with the SNI set when the source is SNI).
fn named(mut r: FlowRecord, name: &str, source: NameSource) -> FlowRecord {
    r.name = Some(name.to_string());
    r.name_source = Some(source);
    r.name_from_hello = source == NameSource::Sni;
    r
}

fn run(records: Vec<FlowRecord>) -> Audit {
    audit(&catalog(), records, &AuditOptions::default(), None)
}

fn frames(f: &Finding) -> Vec<u64> {
    f.evidence.iter().map(|e| e.frame.frame).collect()
}

fn with_verdict(a: &Audit, v: Verdict) -> Vec<&Finding> {
    a.findings.iter().filter(|f| f.verdict == v).collect()
}

/// Three unanswered SYN flows of 10.0.0.5 to 17.1.2.3:5223 at `t`, `t`+5, `t`+10
/// (frames 1-3), then its SNI-named connection to 17.1.2.3:443 at `fb_t` (frame 4).
fn fallback_records(t: i64, fb_t: i64) -> Vec<FlowRecord> {
    vec![
        rec(1, "10.0.0.5:50001", "17.1.2.3:5223", Outcome::Unanswered, t),
        rec(
            2,
            "10.0.0.5:50002",
            "17.1.2.3:5223",
            Outcome::Unanswered,
            t + 5,
        ),
        rec(
            3,
            "10.0.0.5:50003",
            "17.1.2.3:5223",
            Outcome::Unanswered,
            t + 10,
        ),
        named(
            rec(
                4,
                "10.0.0.5:50004",
                "17.1.2.3:443",
                Outcome::Established,
                fb_t,
            ),
            "courier.push.apple.com",
            NameSource::Sni,
        ),
    ]
}

#[test]
fn fallback_after_blocked_5223_is_one_finding_linking_the_attempts() {
    let a = run(fallback_records(0, 15));
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(&*f.rule, DEVICE);
    assert_eq!(f.verdict, Verdict::Fallback);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.device, Some(ip("10.0.0.5")));
    assert_eq!(f.flows, 4);
    assert_eq!(frames(f), vec![1, 2, 3, 4]);
    let roles: Vec<&str> = f.evidence.iter().map(|e| e.role).collect();
    assert_eq!(
        roles,
        vec!["preferred", "preferred", "preferred", "fallback"]
    );
    let ports: Vec<u16> = f.evidence.iter().map(|e| e.port).collect();
    assert_eq!(ports, vec![5223, 5223, 5223, 443]);
    assert_eq!(f.evidence[3].outcome, Outcome::Established);
    assert_eq!(
        f.evidence[3].destination,
        "17.1.2.3 (courier.push.apple.com)"
    );
    assert!(f.evidence[..3]
        .iter()
        .all(|e| e.outcome == Outcome::Unanswered));
    assert_eq!(
        f.remediation.join("; "),
        "allow tcp/5223 from 10.0.0.5 to 17.0.0.0/8 (apple.apns.device)"
    );
    assert_eq!(f.first_ts, Some(0));
    assert!(with_verdict(&a, Verdict::Blocked).is_empty());
    // The failed attempts are shown as part of the fallback everywhere.
    assert_eq!(a.devices.len(), 1);
    assert_eq!(
        a.devices[0].requirements.get(DEVICE),
        Some(&Verdict::Fallback)
    );
    let st = a.requirements.iter().find(|r| r.rule == DEVICE).unwrap();
    assert_eq!(st.status, "fallback");
    assert_eq!(st.flows, 4);
}

#[test]
fn attempts_before_the_fallback_window_are_blocked_not_linked() {
    let opts = AuditOptions {
        fallback_window: 60 * SEC,
        ..AuditOptions::default()
    };
    // Attempts at 0-10 s, the 443 connection at 100 s: 90 s and more before it.
    let a = audit(&catalog(), fallback_records(0, 100), &opts, None);
    assert_eq!(a.findings.len(), 2, "{:#?}", a.findings);
    // Errors sort first.
    let blocked = &a.findings[0];
    assert_eq!(blocked.verdict, Verdict::Blocked);
    assert_eq!(blocked.severity, Severity::Error);
    assert_eq!(blocked.device, Some(ip("10.0.0.5")));
    assert_eq!(frames(blocked), vec![1, 2, 3]);
    assert_eq!(
        blocked.remediation.join("; "),
        "allow tcp/5223 from 10.0.0.5 to 17.0.0.0/8 (apple.apns.device)"
    );
    let fb = &a.findings[1];
    assert_eq!(fb.verdict, Verdict::Fallback);
    assert_eq!(fb.severity, Severity::Warning);
    assert_eq!(frames(fb), vec![4], "no attempt is linked");
    assert_eq!(fb.flows, 1);

    // The same records with the default 300 s window are linked.
    let a = run(fallback_records(0, 100));
    assert_eq!(a.findings.len(), 1);
    assert_eq!(a.findings[0].verdict, Verdict::Fallback);
    assert_eq!(frames(&a.findings[0]), vec![1, 2, 3, 4]);
}

#[test]
fn attempts_of_another_device_are_not_linked_to_a_fallback() {
    let records = vec![
        rec(1, "10.0.0.6:50001", "17.1.2.3:5223", Outcome::Unanswered, 0),
        named(
            rec(2, "10.0.0.5:50002", "17.1.2.3:443", Outcome::Established, 5),
            "courier.push.apple.com",
            NameSource::Sni,
        ),
    ];
    let a = run(records);
    assert_eq!(a.findings.len(), 2, "{:#?}", a.findings);
    let blocked = &a.findings[0];
    assert_eq!(
        (blocked.verdict, blocked.device),
        (Verdict::Blocked, Some(ip("10.0.0.6")))
    );
    let fb = &a.findings[1];
    assert_eq!(
        (fb.verdict, fb.device),
        (Verdict::Fallback, Some(ip("10.0.0.5")))
    );
    assert_eq!(frames(fb), vec![2]);
    // No failed attempt was captured: the remediation opens the preferred port.
    assert_eq!(
        fb.remediation.join("; "),
        "allow tcp/5223 from 10.0.0.5 to 17.0.0.0/8 (apple.apns.device)"
    );
}

#[test]
fn only_failed_5223_attempts_are_blocked_with_a_remediation_line() {
    let records = vec![
        rec(1, "10.0.0.5:50001", "17.1.2.3:5223", Outcome::Unanswered, 0),
        rec(
            2,
            "10.0.0.5:50002",
            "17.57.146.20:5223",
            Outcome::Refused,
            5,
        ),
        rec(
            3,
            "10.0.0.5:50003",
            "17.1.2.3:5223",
            Outcome::Unreachable,
            10,
        ),
    ];
    let a = run(records);
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(&*f.rule, DEVICE);
    assert_eq!(f.verdict, Verdict::Blocked);
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.device, Some(ip("10.0.0.5")));
    assert_eq!(f.flows, 3);
    assert_eq!(frames(f), vec![1, 2, 3]);
    assert_eq!(
        f.remediation.join("; "),
        "allow tcp/5223 from 10.0.0.5 to 17.0.0.0/8 (apple.apns.device)"
    );
    assert!(
        f.summary
            .contains("(1 refused, 1 unanswered after SYN retransmissions, 1 unreachable: administratively prohibited by 10.0.0.1)"),
        "{}",
        f.summary
    );
    let st = a.requirements.iter().find(|r| r.rule == DEVICE).unwrap();
    assert_eq!(st.status, "blocked");
    assert_eq!(st.devices.get("blocked"), Some(&1));
}

#[test]
fn traffic_to_the_retired_gateway_is_legacy() {
    let records = vec![
        named(
            rec(
                1,
                "10.0.0.10:40001",
                "17.188.1.1:2195",
                Outcome::Established,
                0,
            ),
            "gateway.push.apple.com",
            NameSource::Dns,
        ),
        // Unnamed, identified by the range: still the legacy port.
        rec(
            2,
            "10.0.0.10:40002",
            "17.188.1.2:2196",
            Outcome::Established,
            5,
        ),
    ];
    let a = run(records);
    let legacy = with_verdict(&a, Verdict::Legacy);
    assert_eq!(legacy.len(), 1, "{:#?}", a.findings);
    let f = legacy[0];
    assert_eq!(&*f.rule, LEGACY);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.device, Some(ip("10.0.0.10")));
    assert_eq!(frames(f), vec![1, 2]);
    assert_eq!(
        f.remediation.join("; "),
        "binary provider API retired; use api.push.apple.com 443/2197"
    );
    // gateway.push.apple.com also fits the device requirement's *.push.apple.com, but
    // a port the legacy entry uses is not "unexpected" for the device requirement.
    assert!(with_verdict(&a, Verdict::Unexpected).is_empty());
    assert!(with_verdict(&a, Verdict::Blocked).is_empty());
    assert!(with_verdict(&a, Verdict::Fallback).is_empty());
    assert_eq!(a.flows[0].matches.len(), 1);
    assert_eq!(&*a.flows[0].matches[0].rule, LEGACY);
}

#[test]
fn named_service_on_a_port_it_does_not_use_is_unexpected_unnamed_is_not() {
    let records = vec![
        named(
            rec(
                1,
                "10.0.0.5:50001",
                "17.57.146.20:8080",
                Outcome::Established,
                0,
            ),
            "courier.push.apple.com",
            NameSource::Sni,
        ),
        rec(
            2,
            "10.0.0.6:50002",
            "17.1.2.3:8080",
            Outcome::Established,
            1,
        ),
    ];
    let a = run(records);
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(&*f.rule, DEVICE);
    assert_eq!(f.verdict, Verdict::Unexpected);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.device, Some(ip("10.0.0.5")));
    assert_eq!(frames(f), vec![1]);
    assert_eq!(f.evidence[0].role, "other-port");
    // The unnamed flow is attributed to Apple by range but judged against nothing.
    let unnamed = a
        .flows
        .iter()
        .find(|f| f.record.first_frame.frame == 2)
        .unwrap();
    assert!(unnamed.matches.is_empty(), "{:#?}", unnamed.matches);
    assert_eq!(
        unnamed.catalog_range.as_deref(),
        Some(&("Apple".to_string(), "17.0.0.0/8".to_string()))
    );
    assert_eq!(unnamed.name_source(), Some(NameSource::Catalog));
}

#[test]
fn selected_profiles_without_traffic_are_missing() {
    let mut dns = rec(1, "10.0.0.5:53000", "10.0.0.1:53", Outcome::Established, 0);
    dns.transport = Transport::Udp;
    dns.outcome = Outcome::Answered;
    let opts = AuditOptions {
        profiles: vec!["apple-devices".to_string(), "apple-mdm-server".to_string()],
        ..AuditOptions::default()
    };
    let a = audit(&catalog(), vec![dns], &opts, Some((0, 30 * SEC)));
    let missing: Vec<&str> = a
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Missing)
        .map(|f| f.rule.as_str())
        .collect();
    // The legacy gateway is not required: never missing.
    assert_eq!(missing, vec![DEVICE, PROVIDER]);
    assert_eq!(a.findings.len(), 2);
    for f in &a.findings {
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.device, None);
        assert_eq!(f.flows, 0);
        assert!(f.evidence.is_empty());
        assert!(f.summary.contains("30.0 s"), "{}", f.summary);
    }
    assert_eq!(
        a.profiles
            .iter()
            .map(|p| (p.name.as_str(), p.how))
            .collect::<Vec<_>>(),
        vec![
            ("apple-devices", "selected"),
            ("apple-mdm-server", "selected")
        ]
    );
    let st = a.requirements.iter().find(|r| r.rule == DEVICE).unwrap();
    assert_eq!(st.status, "missing");

    // A 5223 attempt of any outcome is not missing.
    let seen = rec(
        2,
        "10.0.0.5:50001",
        "17.1.2.3:5223",
        Outcome::Established,
        1,
    );
    let opts = AuditOptions {
        profiles: vec!["apple-devices".to_string()],
        ..AuditOptions::default()
    };
    let a = audit(&catalog(), vec![seen], &opts, Some((0, 30 * SEC)));
    assert!(
        with_verdict(&a, Verdict::Missing).is_empty(),
        "{:#?}",
        a.findings
    );
}

#[test]
fn a_device_5223_flow_infers_the_apple_devices_profile() {
    let records = vec![rec(
        1,
        "10.0.0.5:50001",
        "17.1.2.3:5223",
        Outcome::Established,
        0,
    )];
    let a = run(records);
    assert_eq!(
        a.profiles,
        vec![ActiveProfile {
            name: "apple-devices".to_string(),
            how: "inferred",
            evidence: Some("1 flow(s) matched apple.apns.device".to_string()),
        }]
    );
    // The required device path was seen, and the server profile was not inferred.
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    assert_eq!(a.flows[0].matches[0].verdict, Some(Verdict::Ok));
    let st = a.requirements.iter().find(|r| r.rule == DEVICE).unwrap();
    assert!(st.active);
    assert_eq!(st.status, "ok");
    assert!(a.requirements.iter().all(|r| r.rule != PROVIDER));
}

#[test]
fn one_direction_capture_is_reported_instead_of_blocked() {
    let mut records = Vec::new();
    for (i, dev) in ["10.0.0.5", "10.0.0.6", "10.0.0.7"].iter().enumerate() {
        let mut r = rec(
            i as u64 + 1,
            &format!("{dev}:50000"),
            "17.1.2.3:5223",
            Outcome::Established,
            i as i64,
        );
        r.one_direction = true;
        r.server_packets = 0;
        r.server_bytes = 0;
        r.server_flags = 0;
        r.rtt_ns = None;
        records.push(r);
    }
    for i in 0..4u64 {
        records.push(rec(
            10 + i,
            &format!("10.0.0.8:5100{i}"),
            "17.1.2.3:5223",
            Outcome::Unanswered,
            10 + i as i64,
        ));
    }
    let a = run(records);
    assert!(a.direction.one_direction);
    assert_eq!(a.direction.tcp_flows_both_directions, 0);
    assert_eq!(a.direction.tcp_flows_client_only_answered, 3);
    assert_eq!(a.direction.attempts_not_judged, 4);
    assert!(
        with_verdict(&a, Verdict::Blocked).is_empty(),
        "{:#?}",
        a.findings
    );
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let f = &a.findings[0];
    assert_eq!(&*f.rule, ONE_DIRECTION_RULE);
    assert_eq!(f.rule, "mdmaudit.capture.one_direction");
    assert_eq!(f.verdict, Verdict::Undetermined);
    assert_eq!(f.device, None);
    assert_eq!(f.flows, 4);
    for fl in a.flows.iter().filter(|f| f.record.outcome.failed()) {
        assert_eq!(fl.matches[0].verdict, Some(Verdict::Undetermined));
    }
}

#[test]
fn unnamed_443_to_apple_from_a_client_without_other_traffic_is_ambiguous() {
    let records = vec![rec(
        1,
        "10.0.0.9:50001",
        "17.1.2.3:443",
        Outcome::Midstream,
        0,
    )];
    let a = run(records);
    let f = &a.flows[0];
    assert!(f.ambiguous);
    let rules: Vec<&str> = f.matches.iter().map(|m| &*m.rule).collect();
    assert_eq!(rules, vec![DEVICE, PROVIDER]);
    assert!(
        f.matches.iter().all(|m| m.verdict.is_none()),
        "{:#?}",
        f.matches
    );
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    assert!(a.devices.is_empty());
    assert!(a.profiles.is_empty());
}

#[test]
fn unnamed_443_from_a_client_with_5223_traffic_is_judged_as_the_device() {
    let records = vec![
        rec(
            1,
            "10.0.0.9:50000",
            "17.1.2.3:5223",
            Outcome::Established,
            0,
        ),
        rec(2, "10.0.0.9:50001", "17.1.2.3:443", Outcome::Midstream, 5),
    ];
    let a = run(records);
    let f = a
        .flows
        .iter()
        .find(|f| f.record.first_frame.frame == 2)
        .unwrap();
    assert!(!f.ambiguous);
    assert_eq!(f.matches.len(), 1, "{:#?}", f.matches);
    assert_eq!(&*f.matches[0].rule, DEVICE);
    // The device also reaches 5223: its 443 connection is not a fallback finding.
    assert_eq!(f.matches[0].verdict, Some(Verdict::Ok));
    assert!(a.findings.is_empty(), "{:#?}", a.findings);

    // With failed 5223 attempts instead, the same 443 flow is the device's fallback.
    let records = vec![
        rec(1, "10.0.0.9:50000", "17.1.2.3:5223", Outcome::Unanswered, 0),
        rec(2, "10.0.0.9:50002", "17.1.2.3:5223", Outcome::Refused, 3),
        rec(3, "10.0.0.9:50001", "17.1.2.3:443", Outcome::Midstream, 5),
    ];
    let a = run(records);
    assert_eq!(a.findings.len(), 1, "{:#?}", a.findings);
    let fb = &a.findings[0];
    assert_eq!((fb.rule.as_str(), fb.verdict), (DEVICE, Verdict::Fallback));
    assert_eq!(frames(fb), vec![1, 2, 3]);
    let f = a
        .flows
        .iter()
        .find(|f| f.record.first_frame.frame == 3)
        .unwrap();
    assert_eq!(f.matches.len(), 1);
    assert_eq!(&*f.matches[0].rule, DEVICE);
}

#[test]
fn provider_api_connection_is_not_a_device_fallback() {
    // An MDM server pushing through the HTTP/2 provider API: the exact host
    // api.push.apple.com is the provider's preferred path. It also fits the device
    // requirement's *.push.apple.com on its fallback port, but it is not a device
    // falling back (docs/catalog-format.md: "The audit layer chooses by role").
    let records = vec![named(
        rec(
            1,
            "10.0.0.20:41000",
            "17.188.143.34:443",
            Outcome::Established,
            0,
        ),
        "api.push.apple.com",
        NameSource::Sni,
    )];
    let a = run(records);
    assert!(
        with_verdict(&a, Verdict::Fallback).is_empty(),
        "{:#?}",
        a.findings
    );
    let f = &a.flows[0];
    let provider = f.matches.iter().find(|m| &*m.rule == PROVIDER).unwrap();
    assert_eq!(provider.verdict, Some(Verdict::Ok));
}

#[test]
fn evidence_is_capped_but_every_flow_is_counted() {
    let records: Vec<FlowRecord> = (0..25u64)
        .map(|i| {
            rec(
                i + 1,
                &format!("10.0.0.5:{}", 50_000 + i),
                "17.1.2.3:5223",
                Outcome::Unanswered,
                i as i64,
            )
        })
        .collect();
    let a = run(records);
    assert_eq!(a.findings.len(), 1);
    let f = &a.findings[0];
    assert_eq!(f.verdict, Verdict::Blocked);
    assert_eq!(f.flows, 25);
    assert_eq!(f.evidence.len(), AuditOptions::default().max_evidence);
    assert_eq!(frames(f), (1..=20).collect::<Vec<u64>>());
}

/// Every kind of record above, with distinct frames.
fn mixed_records() -> Vec<FlowRecord> {
    let mut v = fallback_records(0, 15);
    v.extend([
        rec(5, "10.0.0.6:50001", "17.1.2.3:5223", Outcome::Refused, 1),
        rec(
            6,
            "10.0.0.6:50002",
            "17.1.2.3:5223",
            Outcome::Unreachable,
            2,
        ),
        named(
            rec(
                7,
                "10.0.0.10:40001",
                "17.188.1.1:2195",
                Outcome::Established,
                3,
            ),
            "gateway.push.apple.com",
            NameSource::Dns,
        ),
        named(
            rec(
                8,
                "10.0.0.7:50001",
                "17.57.146.20:8080",
                Outcome::Established,
                4,
            ),
            "courier.push.apple.com",
            NameSource::Sni,
        ),
        rec(9, "10.0.0.9:50001", "17.1.2.3:443", Outcome::Midstream, 5),
        rec(
            10,
            "10.0.0.11:50001",
            "17.1.2.3:5223",
            Outcome::Established,
            6,
        ),
        rec(11, "10.0.0.11:50002", "17.1.2.3:443", Outcome::Reset, 7),
        rec(
            12,
            "10.0.0.12:50001",
            "17.1.2.3:8080",
            Outcome::Established,
            8,
        ),
        named(
            rec(
                13,
                "10.0.0.20:41000",
                "17.188.143.34:2197",
                Outcome::Established,
                9,
            ),
            "api.push.apple.com",
            NameSource::Sni,
        ),
    ]);
    v
}

#[test]
fn audit_output_does_not_depend_on_record_order() {
    let opts = AuditOptions::default();
    let cat = catalog();
    let span = Some((0, 120 * SEC));
    let base = mixed_records();
    let expected = serde_json::to_string(&audit(&cat, base.clone(), &opts, span)).unwrap();
    assert!(expected.contains("\"fallback\""));
    assert!(expected.contains("\"legacy\""));
    let mut orders: Vec<Vec<FlowRecord>> = Vec::new();
    let mut rev = base.clone();
    rev.reverse();
    orders.push(rev);
    // Fisher-Yates with a fixed linear congruential generator: reproducible shuffles.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..8 {
        let mut v = base.clone();
        for i in (1..v.len()).rev() {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = (x >> 33) as usize % (i + 1);
            v.swap(i, j);
        }
        orders.push(v);
    }
    for (n, order) in orders.into_iter().enumerate() {
        let got = serde_json::to_string(&audit(&cat, order, &opts, span)).unwrap();
        assert_eq!(got, expected, "order {n} changed the output");
    }
}

/// The records of a run stay in one vector per worker: auditing the parts gives the
/// audit of the parts joined, however the records are shared out (empty parts, one
/// part, every record alone) and on one thread or several; also when two records
/// share a first frame, which the audit orders by sorting them in place.
#[test]
fn audit_of_parts_equals_audit_of_the_parts_joined() {
    let cat = catalog();
    let span = Some((0, 120 * SEC));
    let mut base = mixed_records();
    base.reverse();
    let mut with_dup = base.clone();
    with_dup.push(base[3].clone());
    for records in [base, with_dup] {
        for threads in [1, 2] {
            let opts = AuditOptions {
                threads,
                ..AuditOptions::default()
            };
            let expected =
                serde_json::to_string(&audit(&cat, records.clone(), &opts, span)).unwrap();
            let n = records.len();
            let splits: Vec<Vec<usize>> = vec![
                vec![],
                vec![0],
                vec![n],
                vec![n / 2],
                vec![1, 1, n - 1],
                (1..n).collect(),
            ];
            for cuts in splits {
                let mut parts = Vec::new();
                let mut from = 0;
                for &c in cuts.iter().chain(std::iter::once(&n)) {
                    parts.push(records[from..c].to_vec());
                    from = c;
                }
                let got = serde_json::to_string(&audit_parts(&cat, parts, &opts, span)).unwrap();
                assert_eq!(got, expected, "cuts {cuts:?}, {threads} thread(s)");
            }
        }
    }
}

#[test]
fn requirement_latency_percentiles_come_from_flows_that_reached_it() {
    let mut records = fallback_records(0, 15);
    // Two more reached flows of the device requirement with other round trips.
    for (i, rtt_ms) in [(0u64, 10i64), (1, 90)] {
        let mut r = named(
            rec(
                10 + i,
                "10.0.0.7:5000",
                "17.1.2.3:5223",
                Outcome::Established,
                20,
            ),
            "courier.push.apple.com",
            NameSource::Sni,
        );
        r.client = sa(&format!("10.0.0.7:{}", 5000 + i));
        r.rtt_ns = Some(rtt_ms * 1_000_000);
        r.ttfb_ns = Some(rtt_ms * 2_000_000);
        records.push(r);
    }
    let a = run(records);
    let st = a.requirements.iter().find(|r| r.rule == DEVICE).unwrap();
    let rtt = st.rtt_ms.as_ref().expect("rtt percentiles");
    // The fallback flow (30 ms) and the two preferred ones; failed attempts have none.
    assert_eq!(rtt.count, 3);
    assert!((rtt.p50 - 30.0).abs() < 0.1, "{rtt:?}");
    assert!((rtt.max - 90.0).abs() < 0.1, "{rtt:?}");
    let ttfb = st.ttfb_ms.as_ref().expect("ttfb percentiles");
    assert_eq!(ttfb.count, 3);
    assert!((ttfb.max - 180.0).abs() < 0.2, "{ttfb:?}");
}

#[test]
fn matching_on_threads_gives_the_audit_of_one_thread() {
    // Enough flows for the threaded passes (16,384 a thread, up to 4 threads),
    // handed over in an order unrelated to their first frames, as the workers of a
    // capture hand them over: names, blocked attempts, fallbacks, other services.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut records: Vec<FlowRecord> = (0..70_000u64)
        .map(|i| {
            let r = next();
            let dev = format!(
                "10.20.{}.{}:{}",
                r % 4,
                (r >> 8) % 250 + 1,
                40_000 + i % 20_000
            );
            let (server, outcome) = match (r >> 16) % 6 {
                0 => ("17.57.146.20:5223", Outcome::Unanswered),
                1 => ("17.57.146.20:443", Outcome::Established),
                2 => ("142.250.1.1:5228", Outcome::Established),
                3 => ("192.0.2.9:443", Outcome::Established),
                4 => ("17.57.146.20:5223", Outcome::Refused),
                _ => ("17.57.146.20:5223", Outcome::Established),
            };
            let rec = rec(i + 1, &dev, server, outcome, (i / 50) as i64);
            match (r >> 24) % 4 {
                0 => named(rec, "courier.push.apple.com", NameSource::Sni),
                1 => named(rec, "mtalk.google.com", NameSource::Dns),
                _ => rec,
            }
        })
        .collect();
    for i in (1..records.len()).rev() {
        records.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let one = audit(&catalog(), records.clone(), &AuditOptions::default(), None);
    // Enough findings, too, for them to be made on every thread (512 a thread).
    assert!(
        one.findings.len() >= 4 * 512,
        "{} findings",
        one.findings.len()
    );
    for threads in [2, 3, 4] {
        let opts = AuditOptions {
            threads,
            ..AuditOptions::default()
        };
        let many = audit(&catalog(), records.clone(), &opts, None);
        assert!(
            many == one,
            "{threads} threads: the audit differs from one thread's"
        );
    }
}

/// Enough flows that the audit cuts them into stretches for its threads (passes 1b
/// to 4): fallbacks linked to blocked attempts, devices that also reach the
/// preferred port, and address-only flows whose role the client's other flows settle
/// or leave open. The audit is the same on 1, 2 and 3 threads, and its fallback
/// findings are the ones the records were made for.
#[test]
fn threaded_passes_give_the_serial_audit() {
    let cat = catalog();
    let span = Some((0, 7200 * SEC));
    let mut records = Vec::new();
    let mut frame = 0u64;
    let mut next = || {
        frame += 1;
        frame
    };
    let devices = 4000u32;
    for d in 0..devices {
        let client = format!("10.{}.{}.{}", 1 + d / 60_000, (d / 250) % 240, 1 + d % 250);
        let t = i64::from(d % 600);
        if d % 3 == 0 {
            // Reaches the preferred port: its use of 443 is no fallback.
            records.push(rec(
                next(),
                &format!("{client}:40010"),
                "17.1.2.3:5223",
                Outcome::Established,
                t,
            ));
        } else {
            // Blocked on the preferred port, then falls back.
            for k in 0..2 {
                records.push(rec(
                    next(),
                    &format!("{client}:{}", 40_000 + k),
                    "17.1.2.3:5223",
                    Outcome::Unanswered,
                    t + 5 * k as i64,
                ));
            }
        }
        records.push(named(
            rec(
                next(),
                &format!("{client}:40020"),
                "17.1.2.3:443",
                Outcome::Established,
                t + 15,
            ),
            "courier.push.apple.com",
            NameSource::Sni,
        ));
        // Address only, on a port two requirements share.
        records.push(rec(
            next(),
            &format!("{client}:40030"),
            "17.9.9.9:443",
            Outcome::Established,
            t + 30,
        ));
    }
    // The audit orders flows by first frame: shuffle them first (fixed seed).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..records.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        records.swap(i, (state % (i as u64 + 1)) as usize);
    }
    assert!(records.len() > 3 * 4096, "too few flows to use threads");
    let audited: Vec<(usize, String, Audit)> = [1usize, 2, 3]
        .into_iter()
        .map(|threads| {
            let opts = AuditOptions {
                threads,
                ..AuditOptions::default()
            };
            let a = audit(&cat, records.clone(), &opts, span);
            (threads, serde_json::to_string(&a).unwrap(), a)
        })
        .collect();
    let fallbacks = audited[0]
        .2
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fallback)
        .count();
    assert_eq!(fallbacks, (0..devices).filter(|d| d % 3 != 0).count());
    for (threads, json, _) in &audited[1..] {
        assert!(*json == audited[0].1, "{threads} threads differ from 1");
    }
    // As a run hands them over: in parts (of uneven sizes), which the threads key
    // and sort a run of parts each before merging.
    let parts: Vec<Vec<FlowRecord>> = records
        .chunks(1500)
        .flat_map(|c| {
            let (a, b) = c.split_at(c.len() / 3);
            [a.to_vec(), b.to_vec()]
        })
        .collect();
    for threads in [1usize, 2, 3] {
        let opts = AuditOptions {
            threads,
            ..AuditOptions::default()
        };
        let json = serde_json::to_string(&audit_parts(&cat, parts.clone(), &opts, span)).unwrap();
        assert!(json == audited[0].1, "parts on {threads} threads differ");
    }
}
