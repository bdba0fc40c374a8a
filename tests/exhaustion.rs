//! State exhaustion (issue "Nothing in a capture can crash it"): a SYN flood, a
//! stream of ClientHellos that never complete and a DNS answer storm, each written
//! as a pcap here and audited with small caps so that every cap is hit in a few
//! seconds. The caps must be reported, and the APNs fallback hidden in the flood
//! must still be found with its blocked 5223 attempt. The same at the default caps
//! with 10 million flows (and the memory bound) is `scripts/flood-run`.

mod common;
mod common_packets;

use common::{run_with_timeout, TempFile};
use common_packets::{tcp, udp, ACK, OPENSSL_HELLO, PSH, SYN};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

struct Pcap {
    w: PcapWriter<std::io::BufWriter<std::fs::File>>,
}

impl Pcap {
    fn create(path: &Path) -> Pcap {
        let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        Pcap {
            w: PcapWriter::with_header(f, PcapHeader::default()).unwrap(),
        }
    }

    /// Write `frame` at `us` microseconds after the start.
    fn put(&mut self, us: u64, frame: &[u8]) {
        let ts = Duration::from_micros(1_710_234_000_000_000 + us);
        self.w
            .write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))
            .unwrap();
    }
}

fn audit_json(file: &Path, extra: &[&str]) -> Value {
    let f = file.to_str().unwrap();
    let mut args = vec!["audit", f, "--format", "json", "--threads", "2"];
    args.extend_from_slice(extra);
    let out = run_with_timeout(&args, Duration::from_secs(120));
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn findings(v: &Value) -> Vec<&Value> {
    v["findings"].as_array().unwrap().iter().collect()
}

/// Every flow: kept, folded into a kept one, or counted only.
fn all_flows(v: &Value) -> u64 {
    let kept = v["flows"].as_array().unwrap();
    let folded: u64 = kept
        .iter()
        .map(|f| f["mdmaudit"]["folded"].as_u64().unwrap_or(0))
        .sum();
    kept.len() as u64 + folded + v["summarized_flows"]["flows"].as_u64().unwrap()
}

/// The evidence of the one fallback finding of the iPhone 10.20.1.2.
fn fallback_evidence(v: &Value) -> Vec<Value> {
    let fb: Vec<&Value> = findings(v)
        .into_iter()
        .filter(|f| f["mdmaudit"]["verdict"] == "fallback" && f["source"]["ip"] == "10.20.1.2")
        .collect();
    assert_eq!(fb.len(), 1, "{:#}", v["findings"]);
    fb[0]["mdmaudit"]["evidence"].as_array().unwrap().clone()
}

#[test]
fn syn_flood_hits_every_cap_and_the_fallback_in_it_is_still_found() {
    const FLOWS: u32 = 200_000;
    let path = TempFile::new("flood.pcap");
    let mut p = Pcap::create(&path);
    let apns = |i: u32| format!("17.57.{}.{}", 144 + i % 4, 1 + i % 250);
    for i in 0..FLOWS {
        let client = format!("10.100.{}.{}", (i >> 8) & 0xff, i & 0xff);
        let cport = 10_000 + (i >> 16);
        let t = u64::from(i) * 20;
        // Midway, one iPhone's APNs connection on 5223 is dropped (three SYNs) and
        // it falls back to 443 with a full handshake naming the courier.
        if i == FLOWS / 2 {
            let (me, srv) = ("10.20.1.2", "17.57.146.53");
            for k in 0..3u64 {
                let f = tcp(
                    &format!("{me}:50001"),
                    &format!("{srv}:5223"),
                    SYN,
                    7,
                    0,
                    &[],
                );
                p.put(t + 1 + k * 1_000_000, &f);
            }
            let (c, s) = (format!("{me}:50002"), format!("{srv}:443"));
            let t0 = t + 4_000_000;
            p.put(t0, &tcp(&c, &s, SYN, 100, 0, &[]));
            p.put(t0 + 20_000, &tcp(&s, &c, SYN | ACK, 900, 101, &[]));
            p.put(t0 + 20_100, &tcp(&c, &s, ACK, 101, 901, &[]));
            p.put(
                t0 + 20_200,
                &tcp(&c, &s, PSH | ACK, 101, 901, OPENSSL_HELLO),
            );
            p.put(
                t0 + 40_000,
                &tcp(
                    &s,
                    &c,
                    PSH | ACK,
                    901,
                    101 + OPENSSL_HELLO.len() as u32,
                    &[0x16; 200],
                ),
            );
        }
        let server = format!("{}:5223", apns(i));
        let c = format!("{client}:{cport}");
        p.put(t, &tcp(&c, &server, SYN, i, 0, &[]));
        if i % 2 == 0 {
            p.put(t + 2, &tcp(&server, &c, SYN | ACK, !i, i + 1, &[]));
        }
    }
    drop(p);
    // Fewer flooding devices (65,536) than --max-records: every device's attempts
    // fold into a record of its own and the fallback keeps its cause.
    let v = audit_json(&path, &["--max-flows", "20000", "--max-records", "100000"]);
    let fc = &v["flow_counters"];
    assert!(fc["flows_evicted_cap"].as_u64().unwrap() > 0, "{fc}");
    assert!(fc["emergency_entered"].as_u64().unwrap() > 0, "{fc}");
    assert!(v["summarized_flows"]["folded_flows"].as_u64().unwrap() > 0);
    assert_eq!(all_flows(&v), u64::from(FLOWS) + 2);
    let ev = fallback_evidence(&v);
    assert!(
        ev.iter()
            .any(|e| e["port"] == 5223 && e["outcome"] == "unanswered"),
        "{ev:#?}"
    );
    assert!(
        ev.iter()
            .any(|e| e["port"] == 443 && e["outcome"] == "established"),
        "{ev:#?}"
    );
    // More flooding devices than the budget holds: the attempts past it are counted
    // only, and the fallback is still reported from its named 443 connection.
    let v = audit_json(&path, &["--max-flows", "20000", "--max-records", "4000"]);
    assert!(v["summarized_flows"]["flows"].as_u64().unwrap() > 0);
    assert_eq!(all_flows(&v), u64::from(FLOWS) + 2);
    let ev = fallback_evidence(&v);
    assert!(ev.iter().any(|e| e["port"] == 443), "{ev:#?}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn hellos_that_never_complete_stay_within_the_reassembly_budget() {
    // 20,000 TLS flows whose ClientHello record announces 8 KiB and stops after
    // one 200-byte segment: each holds a reassembly buffer until it ends.
    const FLOWS: u32 = 20_000;
    let path = TempFile::new("stall.pcap");
    let mut p = Pcap::create(&path);
    // The first 200 bytes of a real ClientHello, its lengths stretched to 8 KiB.
    let mut first = OPENSSL_HELLO[..200].to_vec();
    first[3..5].copy_from_slice(&0x2000u16.to_be_bytes());
    first[6..9].copy_from_slice(&[0x00, 0x1f, 0xfc]);
    for i in 0..FLOWS {
        let c = format!(
            "10.30.{}.{}:{}",
            (i >> 8) & 0xff,
            i & 0xff,
            40_000 + (i >> 16)
        );
        let s = format!("17.57.145.{}:443", 1 + i % 200);
        let t = u64::from(i) * 50;
        p.put(t, &tcp(&c, &s, SYN, 10, 0, &[]));
        p.put(t + 10, &tcp(&s, &c, SYN | ACK, 500, 11, &[]));
        p.put(t + 20, &tcp(&c, &s, ACK, 11, 501, &[]));
        p.put(t + 30, &tcp(&c, &s, PSH | ACK, 11, 501, &first));
    }
    drop(p);
    let v = audit_json(&path, &["--max-hello-bytes", "1000000"]);
    let fc = &v["flow_counters"];
    let budget = fc["hello_budget"].as_u64().unwrap();
    // A few thousand buffers fit in 1,000,000 bytes; every later flow gives up on
    // its hello, counted.
    assert!(budget > 10_000 && budget < u64::from(FLOWS), "{fc}");
    assert_eq!(v["flows"].as_array().unwrap().len(), FLOWS as usize);
    // 20,000 flows are formatted in parallel blocks: the JSON and NDJSON reports
    // are the same bytes with one thread and with two.
    for format in ["json", "ndjson"] {
        let f = path.to_str().unwrap();
        let one = run_with_timeout(
            &[
                "audit",
                f,
                "--format",
                format,
                "--threads",
                "1",
                "--fail-on",
                "never",
            ],
            Duration::from_secs(120),
        );
        let two = run_with_timeout(
            &[
                "audit",
                f,
                "--format",
                format,
                "--threads",
                "2",
                "--fail-on",
                "never",
            ],
            Duration::from_secs(120),
        );
        assert_eq!(one.status.code(), Some(0));
        assert!(one.stdout.len() > 10_000_000, "{format}");
        assert!(
            one.stdout == two.stdout,
            "{format}: --threads 1 and 2 differ"
        );
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn dns_answer_storm_is_bounded_by_the_cache_cap() {
    // 50,000 DNS answers, each naming a new address: the cache keeps at most
    // --max-dns-entries and counts what it drops.
    let path = TempFile::new("dns.pcap");
    let mut p = Pcap::create(&path);
    for i in 0..50_000u32 {
        let name = format!("h{i}.storm.example");
        let mut msg = vec![(i >> 8) as u8, i as u8, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        for label in name.split('.') {
            msg.push(label.len() as u8);
            msg.extend_from_slice(label.as_bytes());
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        msg.extend_from_slice(&[198, 51, (i >> 8) as u8, i as u8]);
        let f = udp(
            "10.0.0.53:53",
            &format!("10.40.0.{}:{}", 1 + i % 200, 30_000 + i % 20_000),
            &msg,
        );
        p.put(u64::from(i) * 100, &f);
    }
    drop(p);
    let v = audit_json(&path, &["--max-dns-entries", "1000", "--fail-on", "never"]);
    let fc = &v["flow_counters"];
    assert!(fc["dns_answers"].as_u64().unwrap() >= 50_000, "{fc}");
    assert!(fc["dns_cache_evictions"].as_u64().unwrap() > 40_000, "{fc}");
    std::fs::remove_file(&path).ok();
}
