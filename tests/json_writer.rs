//! The flow list is written by a hand-written JSON writer (`report::write_flow_json`)
//! for speed; `report::flow_out` is the same record as a serde structure, the
//! reference. Findings likewise (`report::write_finding_json`, reference
//! `report::finding_value`). Every flow of every capture in `../shared/pcaps` (real, malformed and
//! tcpdump's test files: odd names, IPv6, ICMP) and of the bundled scenarios gives the same bytes both ways.

mod common;

use common::*;
use mdmaudit::audit::{audit, Audit, AuditOptions};
use mdmaudit::audit::{Evidence, Finding, Severity, Verdict};
use mdmaudit::catalog::Catalog;
use mdmaudit::engine::{run, EngineConfig, Input, ReaderKind};
use mdmaudit::flow::FlowConfig;
use mdmaudit::flow::{FrameRef, Outcome};
use mdmaudit::model::Transport;
use mdmaudit::report::{finding_value, flow_out, write_finding_json, write_flow_json};

/// The audit of `cap` on one thread with the built-in catalog, with its input names
/// and the capture's first packet time; `None` when it cannot be opened.
fn audited(catalog: &Catalog, cap: &std::path::Path) -> Option<(String, Audit, Option<i64>)> {
    let path = cap.to_str().expect("utf-8 path").to_string();
    let input = Input::open(&path, 0, ReaderKind::Fast).ok()?;
    let cfg = EngineConfig {
        flow: FlowConfig::default(),
        threads: 1,
        max_records: 250_000,
        pin: false,
    };
    let mut res = run(vec![input], cfg, None);
    let span = res.capture.first_ts.zip(res.capture.last_ts);
    let records = res.take_records();
    let a = audit(catalog, records, &AuditOptions::default(), span);
    Some((path, a, res.capture.first_ts))
}

#[test]
fn hand_written_flow_json_equals_serde() {
    let catalog = Catalog::builtin();
    let mut caps = captures_in(&repo().join("pcaps"));
    for dir in ["real", "malformed", "tcpdump-tests"] {
        caps.extend(captures_in(&shared_pcaps().join(dir)));
    }
    let (mut flows, mut differ) = (0usize, Vec::new());
    for cap in caps {
        let Some((path, a, _)) = audited(&catalog, &cap) else {
            continue;
        };
        let files = vec![path.clone()];
        for f in a.flows.iter() {
            flows += 1;
            let mut ours = Vec::new();
            write_flow_json(&mut ours, f, &files);
            let reference = serde_json::to_vec(&flow_out(f, &files)).expect("serializes");
            if ours != reference && differ.len() < 10 {
                differ.push(format!(
                    "{path}: frame {}\n  ours:  {}\n  serde: {}",
                    f.record.first_frame.frame,
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference)
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(flows > 1000, "only {flows} flows compared");
}

/// Our bytes and serde_json's for one finding, when they differ.
fn finding_differs(f: &Finding, files: &[String], start: Option<i64>) -> Option<String> {
    let mut ours = Vec::new();
    write_finding_json(&mut ours, f, files, start);
    let reference = serde_json::to_vec(&finding_value(f, files, start)).expect("serializes");
    (ours != reference).then(|| {
        format!(
            "{}\n  ours:  {}\n  serde: {}",
            f.rule,
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&reference)
        )
    })
}

#[test]
fn hand_written_finding_json_equals_serde() {
    let catalog = Catalog::builtin();
    let mut caps = captures_in(&repo().join("pcaps"));
    caps.extend(captures_in(&shared_pcaps().join("real")));
    let (mut findings, mut differ) = (0usize, Vec::new());
    for cap in caps {
        let Some((path, a, start)) = audited(&catalog, &cap) else {
            continue;
        };
        let files = vec![path.clone()];
        for f in a.findings.iter() {
            findings += 1;
            if let Some(d) = finding_differs(f, &files, start) {
                differ.push(format!("{path}: {d}"));
            }
        }
    }
    // The bundled scenarios' findings (blocked, fallback, legacy, ...) at least.
    assert!(findings >= 10, "only {findings} findings from the captures");
    // What the captures may not show: no device, an IPv6 one, an ICMP reporter, a
    // filter's refusal, text to escape, no remediation, no evidence, an unknown file.
    let evidence = |file: u32, reporter: Option<&str>, prohibited: bool| Evidence {
        frame: FrameRef { file, frame: 7 },
        destination: "x\"y\\z\u{1}.example (10.0.0.1)".to_string(),
        transport: Transport::Udp,
        port: 443,
        outcome: Outcome::Unreachable,
        role: "fallback",
        failed: true,
        syn_retransmits: 2,
        icmp_reporter: reporter.map(|a| a.parse().expect("address")),
        admin_prohibited: prohibited,
        flows: 3,
    };
    let base = Finding {
        rule: "apple.apns.device".to_string(),
        verdict: Verdict::Blocked,
        severity: Severity::Error,
        device: Some("2001:db8::7".parse().expect("address")),
        summary: "line one\nline \"two\" \u{7f} ✓".to_string(),
        flows: 4,
        evidence: vec![
            evidence(0, Some("198.51.100.1"), true),
            evidence(9, Some("2001:db8::1"), false),
            evidence(0, None, false),
        ],
        remediation: vec!["allow a".to_string(), "allow \"b\"".to_string()],
        first_ts: Some(-1_500_000_001),
    };
    let variants = [
        base.clone(),
        Finding {
            device: None,
            evidence: Vec::new(),
            remediation: Vec::new(),
            first_ts: None,
            verdict: Verdict::Missing,
            severity: Severity::Warning,
            ..base.clone()
        },
        Finding {
            device: Some("10.20.1.3".parse().expect("address")),
            severity: Severity::Info,
            verdict: Verdict::Undetermined,
            ..base.clone()
        },
    ];
    let files = vec!["/tmp/a \"quoted\" name.pcap".to_string()];
    for f in variants.iter() {
        for start in [None, Some(0), Some(1_710_234_000_123_456_789)] {
            if let Some(d) = finding_differs(f, &files, start) {
                differ.push(d);
            }
        }
    }
    differ.truncate(10);
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
