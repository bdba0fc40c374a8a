//! The scenario captures in `pcaps/`: each has a golden JSON report in
//! `tests/golden/` compared byte for byte, and repeated runs give identical bytes.
//! Regenerate the goldens after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test scenarios`, then review the diff.

mod common;

use common::*;
use serde_json::Value;

fn audit_json(rel: &str, extra: &[&str]) -> (Option<i32>, Vec<u8>) {
    let mut args = vec!["audit", rel, "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    (out.status.code(), out.stdout)
}

#[test]
fn golden_reports() {
    let dir = repo().join("pcaps");
    let golden = repo().join("tests").join("golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let caps = captures_in(&dir);
    assert!(caps.len() >= 9, "scenario captures: {}", caps.len());
    let mut problems = Vec::new();
    for cap in caps {
        let name = cap
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap()
            .to_string();
        let rel = format!("pcaps/{name}");
        let (code, a) = audit_json(&rel, &[]);
        let (_, b) = audit_json(&rel, &[]);
        assert_eq!(a, b, "{rel}: two runs differ");
        assert!(matches!(code, Some(0) | Some(1)), "{rel}: status {code:?}");
        let gpath = golden.join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&gpath, &a).unwrap();
            continue;
        }
        match std::fs::read(&gpath) {
            Ok(g) if g == a => {}
            Ok(_) => problems.push(format!("{rel}: report differs from {}", gpath.display())),
            Err(_) => problems.push(format!("{rel}: no golden report {}", gpath.display())),
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(UPDATE_GOLDEN=1 regenerates)",
        problems.join("\n")
    );
}

fn report(rel: &str) -> Value {
    let (_, out) = audit_json(rel, &[]);
    serde_json::from_slice(&out).expect("JSON report")
}

fn findings<'a>(v: &'a Value, rule: &str, verdict: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|f| f["rule"]["id"] == rule && f["mdmaudit"]["verdict"] == verdict)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn demo_apns_fallback_links_blocked_5223_attempts() {
    for rel in [
        "pcaps/apns-fallback.pcap",
        "pcaps/apns-fallback-vlan.pcap",
        "pcaps/apns-fallback-sll2.pcap",
        "pcaps/apns-fallback-ipv6.pcapng",
    ] {
        let v = report(rel);
        let f = findings(&v, "apple.apns.device", "fallback");
        assert_eq!(
            f.len(),
            1,
            "{rel}: one fallback finding: {:#}",
            v["findings"]
        );
        let ev = f[0]["mdmaudit"]["evidence"].as_array().unwrap();
        let blocked_5223 = ev
            .iter()
            .filter(|e| e["port"] == 5223 && e["outcome"] == "unanswered")
            .count();
        assert!(
            blocked_5223 >= 1,
            "{rel}: blocked 5223 attempts as evidence"
        );
        assert!(ev
            .iter()
            .any(|e| e["port"] == 443 && e["path"] == "fallback"));
        let rem = f[0]["mdmaudit"]["remediation"].as_str().unwrap();
        assert!(rem.starts_with("allow tcp/5223 from "), "{rem}");
        // No separate "blocked" for the attempts the fallback explains.
        assert!(
            findings(&v, "apple.apns.device", "blocked").is_empty(),
            "{rel}"
        );
    }
    let text = run(&["audit", "pcaps/apns-fallback.pcap", "--color", "never"]);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(
        t.contains("allow tcp/5223 from ") && t.contains(" to 17.0.0.0/8 (apple.apns.device)"),
        "{t}"
    );
    let v6 = report("pcaps/apns-fallback-ipv6.pcapng");
    let rem = findings(&v6, "apple.apns.device", "fallback")[0]["mdmaudit"]["remediation"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rem.contains(" to 2620:149:a44::/48"), "{rem}");
}

#[test]
fn fcm_refused_by_rst_falls_back() {
    let v = report("pcaps/fcm-refused.pcap");
    let f = findings(&v, "google.fcm.device", "fallback");
    assert_eq!(f.len(), 1, "{:#}", v["findings"]);
    let ev = f[0]["mdmaudit"]["evidence"].as_array().unwrap();
    assert!(ev
        .iter()
        .any(|e| e["port"] == 5228 && e["outcome"] == "refused"));
}

#[test]
fn legacy_2195_is_flagged() {
    let v = report("pcaps/legacy-2195.pcap");
    assert_eq!(
        findings(&v, "apple.apns.gateway-legacy", "legacy").len(),
        1,
        "{:#}",
        v["findings"]
    );
    assert_eq!(
        findings(&v, "apple.apns.feedback-legacy", "legacy").len(),
        1
    );
    // The provider API on 443 is not mistaken for a device fallback.
    assert!(findings(&v, "apple.apns.device", "fallback").is_empty());
}

#[test]
fn firewall_reset_after_client_hello_counts_as_blocked_attempt() {
    let v = report("pcaps/apns-reset.pcap");
    let f = findings(&v, "apple.apns.device", "fallback");
    assert_eq!(f.len(), 1, "{:#}", v["findings"]);
    let ev = f[0]["mdmaudit"]["evidence"].as_array().unwrap();
    assert!(ev
        .iter()
        .any(|e| e["port"] == 5223 && e["outcome"] == "reset" && e["failed"] == true));
}

#[test]
fn icmp_admin_prohibited_names_the_filter() {
    let v = report("pcaps/fcm-prohibited.pcap");
    let f = findings(&v, "google.fcm.device", "fallback");
    assert_eq!(f.len(), 1, "{:#}", v["findings"]);
    let ev = f[0]["mdmaudit"]["evidence"].as_array().unwrap();
    let prohibited: Vec<_> = ev
        .iter()
        .filter(|e| e["outcome"] == "unreachable" && e["admin_prohibited"] == true)
        .collect();
    assert_eq!(prohibited.len(), 2);
    assert_eq!(prohibited[0]["icmp_reporter"], "10.20.1.1");
    assert!(f[0]["message"]
        .as_str()
        .unwrap()
        .contains("administratively prohibited by 10.20.1.1"));
}

#[test]
fn snaplen_cut_hello_still_names_the_flow() {
    let v = report("pcaps/snaplen-sni.pcap");
    assert!(
        v["capture"]["counters"]["truncated_by_snaplen"]
            .as_u64()
            .unwrap()
            > 0
    );
    let named: Vec<&Value> = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["tls"]["client"]["server_name"] == "courier.push.apple.com")
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["mdmaudit"]["client_hello"], "partial");
}

#[test]
fn http_host_and_midstream_catalog_naming() {
    let v = report("pcaps/http-host.pcap");
    assert!(v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["mdmaudit"]["name_source"] == "http"
            && f["destination"]["domain"] == "ocsp.apple.com"));
    let v = report("pcaps/midstream.pcap");
    let f = &v["flows"][0];
    assert_eq!(f["mdmaudit"]["outcome"], "midstream");
    assert_eq!(f["mdmaudit"]["name_source"], "catalog");
    assert_eq!(f["mdmaudit"]["catalog_range"], "17.0.0.0/8");
}

#[test]
fn split_hello_yields_sni() {
    let v = report("pcaps/split-hello.pcap");
    let named: Vec<&Value> = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["tls"]["client"]["server_name"].is_string())
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["mdmaudit"]["name_source"], "sni");
}

#[test]
fn dns_named_flow_without_sni() {
    let v = report("pcaps/dns-named.pcap");
    let dns_named = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["mdmaudit"]["name_source"] == "dns" && f["network"]["transport"] == "tcp")
        .count();
    assert!(dns_named >= 1, "{:#}", v["flows"]);
}

#[test]
fn one_direction_capture_is_not_a_wall_of_blocked() {
    let v = report("pcaps/one-direction.pcap");
    assert_eq!(v["capture"]["direction"]["one_direction"], true);
    let blocked = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["mdmaudit"]["verdict"] == "blocked")
        .count();
    assert_eq!(blocked, 0, "{:#}", v["findings"]);
    assert_eq!(
        findings(&v, "mdmaudit.capture.one_direction", "undetermined").len(),
        1
    );
}

#[test]
fn stdin_and_several_files() {
    let bytes = std::fs::read(repo().join("pcaps").join("apns-fallback.pcap")).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["audit", "-", "--format", "ndjson"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let recs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(recs
        .iter()
        .any(|r| r["mdmaudit"]["record"] == "finding" && r["mdmaudit"]["verdict"] == "fallback"));
    assert_eq!(recs.last().unwrap()["mdmaudit"]["record"], "summary");

    let (_, out) = audit_json("pcaps/fcm-refused.pcap", &[]);
    let one: Value = serde_json::from_slice(&out).unwrap();
    let out = run(&[
        "audit",
        "pcaps/apns-fallback.pcap",
        "pcaps/fcm-refused.pcap",
        "--format",
        "json",
    ]);
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(both["inputs"].as_array().unwrap().len(), 2);
    assert!(both["flows"].as_array().unwrap().len() > one["flows"].as_array().unwrap().len());
}
