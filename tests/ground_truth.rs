//! Server names and TCP outcomes against independent ground truth: every capture in
//! `../shared/pcaps/real`, compared with tshark's `truth.tsv` (TLS ClientHellos over
//! TCP, and QUIC Initials, which tshark decrypts as mdmaudit does) and
//! `tcpflows.tsv` (TCP stream states). Known, explained differences are listed in
//! `tests/truth-exceptions.tsv`; an exception that no longer differs fails the test,
//! so the list cannot rot.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};

/// (capture, kind, key) -> reason.
fn exceptions() -> BTreeMap<(String, String, String), String> {
    let path = repo().join("tests").join("truth-exceptions.tsv");
    tsv(&path)
        .into_iter()
        .map(|r| {
            assert!(r.len() >= 4, "{}: short line {:?}", path.display(), r);
            ((r[0].clone(), r[1].clone(), r[2].clone()), r[3].clone())
        })
        .collect()
}

fn stem(p: &std::path::Path) -> String {
    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    n.trim_end_matches(".pcapng")
        .trim_end_matches(".pcap")
        .to_string()
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Compare `ours` with `truth`; differences not excused are returned as text, and
/// excuses that matched nothing are returned too.
fn diff(
    capture: &str,
    kind: &str,
    ours: &BTreeSet<String>,
    truth: &BTreeSet<String>,
    exc: &BTreeMap<(String, String, String), String>,
    used: &mut BTreeSet<(String, String, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (label, set) in [
        ("missing", truth.difference(ours)),
        ("extra", ours.difference(truth)),
    ] {
        for k in set {
            let key = (
                capture.to_string(),
                kind.to_string(),
                format!("{label} {k}"),
            );
            if exc.contains_key(&key) {
                used.insert(key);
            } else {
                out.push(format!("{capture}\t{kind}\t{label} {k}"));
            }
        }
    }
    out
}

#[test]
fn server_names_and_tcp_outcomes_match_tshark() {
    let dir = shared_pcaps().join("real");
    let exc = exceptions();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let mut compared_sni = 0usize;
    let mut compared_tcp = 0usize;
    for cap in captures_in(&dir) {
        let name = stem(&cap);
        let recs = ndjson(&cap);
        let flows = flows(&recs);

        // Server names of TLS over TCP and of QUIC Initials.
        let ours: BTreeSet<String> = flows
            .iter()
            .filter(|f| f["tls"]["client"]["server_name"].is_string())
            .map(|f| {
                format!(
                    "{} {} {} {} {}",
                    s(&f["source"]["ip"]),
                    s(&f["source"]["port"]),
                    s(&f["destination"]["ip"]),
                    s(&f["destination"]["port"]),
                    s(&f["tls"]["client"]["server_name"])
                )
            })
            .collect();
        let truth: BTreeSet<String> = tsv(&dir.join(format!("{name}.truth.tsv")))
            .into_iter()
            .filter(|r| {
                r.len() >= 8
                    && ((r[5] == "tcp" && r[7] == "tls") || (r[5] == "udp" && r[7] == "quic"))
            })
            .map(|r| format!("{} {} {} {} {}", r[1], r[2], r[3], r[4], r[6]))
            .collect();
        compared_sni += truth.len();
        problems.extend(diff(&name, "sni", &ours, &truth, &exc, &mut used));

        // TCP outcomes, per stream (multisets keyed by both endpoints).
        let map_state = |st: &str| -> &'static str {
            match st {
                "established" | "reset" => "established",
                "rst_after_syn" | "refused" => "refused",
                "no_answer" | "unanswered" => "unanswered",
                "midstream" => "midstream",
                "unreachable" => "unreachable",
                _ => "other",
            }
        };
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        let ours: BTreeSet<String> = flows
            .iter()
            .filter(|f| f["network"]["transport"] == "tcp")
            .map(|f| {
                let k = format!(
                    "{} {} {} {} {}",
                    s(&f["source"]["ip"]),
                    s(&f["source"]["port"]),
                    s(&f["destination"]["ip"]),
                    s(&f["destination"]["port"]),
                    map_state(&s(&f["mdmaudit"]["outcome"]))
                );
                let n = count.entry(k.clone()).or_default();
                *n += 1;
                format!("{k} #{n}")
            })
            .collect();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        let truth: BTreeSet<String> = tsv(&dir.join(format!("{name}.tcpflows.tsv")))
            .into_iter()
            .filter(|r| r.len() >= 12)
            .map(|r| {
                let k = format!("{} {} {} {} {}", r[2], r[3], r[4], r[5], map_state(&r[11]));
                let n = count.entry(k.clone()).or_default();
                *n += 1;
                format!("{k} #{n}")
            })
            .collect();
        compared_tcp += truth.len();
        // Mid-stream flows have no initiator to agree on: compare them by endpoints
        // in either order.
        let norm = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.iter()
                .map(|k| {
                    let p: Vec<&str> = k.split(' ').collect();
                    if p.len() == 6 && p[4] == "midstream" {
                        let a = format!("{} {}", p[0], p[1]);
                        let b = format!("{} {}", p[2], p[3]);
                        let (x, y) = if a <= b { (a, b) } else { (b, a) };
                        format!("{x} {y} midstream {}", p[5])
                    } else {
                        k.clone()
                    }
                })
                .collect()
        };
        problems.extend(diff(
            &name,
            "tcp",
            &norm(&ours),
            &norm(&truth),
            &exc,
            &mut used,
        ));
    }
    let stale: Vec<String> = exc
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|k| format!("{}\t{}\t{}", k.0, k.1, k.2))
        .collect();
    assert!(
        compared_sni > 50,
        "too few ClientHellos compared: {compared_sni}"
    );
    assert!(
        compared_tcp > 300,
        "too few TCP streams compared: {compared_tcp}"
    );
    assert!(
        problems.is_empty() && stale.is_empty(),
        "differences from tshark not listed in tests/truth-exceptions.tsv:\n{}\n\nexceptions that no longer apply:\n{}",
        problems.join("\n"),
        stale.join("\n")
    );
}
