//! "Nothing in a capture can crash it": file framing, as libpcap itself reports it.
//!
//! One table of damaged and unusual files, each built from a real small capture of
//! `pcaps/` (pcap and pcapng), and one test that runs every case through every reader
//! (`--reader fast`, the default, `--reader mapped` and `--reader libpcap`). Each case
//! gives the exit status of SPEC section 6 (0 read completely, 2 unreadable, 3 damaged
//! part-way), a message naming the file, the byte offset where reading stopped and
//! libpcap's own reason; where packets were read, the JSON report's packet count equals
//! what libpcap reads before it stops, counted here through the `pcap` crate, not
//! written down.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The sources the cases are built from.
struct Src {
    /// `pcaps/all-ok.pcap` (little-endian, microseconds, snaplen 262144, Ethernet).
    pcap: Vec<u8>,
    /// (offset, captured length) of each of its records.
    recs: Vec<(usize, usize)>,
    /// `pcaps/apns-fallback-ipv6.pcapng` (little-endian: SHB, IDB, EPBs).
    ng: Vec<u8>,
    /// (offset, type, total length) of each of its blocks.
    blocks: Vec<(usize, u32, usize)>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

impl Src {
    fn load() -> Src {
        let pcap = std::fs::read(repo().join("pcaps/all-ok.pcap")).expect("pcaps/all-ok.pcap");
        assert_eq!(pcap[..4], [0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
        assert_eq!(le32(&pcap, 16), 262_144, "its snaplen");
        let mut recs = Vec::new();
        let mut at = 24;
        while at < pcap.len() {
            let caplen = le32(&pcap, at + 8) as usize;
            recs.push((at, caplen));
            at += 16 + caplen;
        }
        assert_eq!(at, pcap.len(), "whole records");
        let ng = std::fs::read(repo().join("pcaps/apns-fallback-ipv6.pcapng"))
            .expect("pcaps/apns-fallback-ipv6.pcapng");
        assert_eq!(le32(&ng, 8), 0x1A2B_3C4D, "a little-endian pcapng");
        let mut blocks = Vec::new();
        let mut at = 0;
        while at < ng.len() {
            let len = le32(&ng, at + 4) as usize;
            blocks.push((at, le32(&ng, at), len));
            at += len;
        }
        assert_eq!(at, ng.len(), "whole blocks");
        let src = Src {
            pcap,
            recs,
            ng,
            blocks,
        };
        assert!(src.recs.len() > 10 && src.epbs().len() > 5);
        assert_eq!(src.blocks[1].1, 1, "the IDB follows the SHB");
        src
    }

    fn rec(&self, i: usize) -> usize {
        self.recs[i].0
    }

    /// The pcap with record `i`'s captured length replaced.
    fn with_caplen(&self, i: usize, caplen: u32) -> Vec<u8> {
        let mut b = self.pcap.clone();
        put32(&mut b, self.rec(i) + 8, caplen);
        b
    }

    /// The pcap with the header's snapshot length replaced.
    fn with_snaplen(&self, snaplen: u32) -> Vec<u8> {
        let mut b = self.pcap.clone();
        put32(&mut b, 16, snaplen);
        b
    }

    /// (offset, length) of the enhanced packet blocks.
    fn epbs(&self) -> Vec<(usize, usize)> {
        self.blocks
            .iter()
            .filter(|b| b.1 == 6)
            .map(|b| (b.0, b.2))
            .collect()
    }

    /// The fourth EPB: where the pcapng cases put the damage (three packets before it).
    fn epb(&self) -> (usize, usize) {
        self.epbs()[3]
    }

    fn shb_len(&self) -> usize {
        self.blocks[0].2
    }

    /// The pcapng with a u32 of the fourth EPB (at `field` from its start) replaced.
    fn epb_field(&self, field: usize, v: u32) -> Vec<u8> {
        let mut b = self.ng.clone();
        put32(&mut b, self.epb().0 + field, v);
        b
    }
}

/// A built file and the byte offset the damage is reported at (libpcap's: where its
/// read of the next packet began), when reading stops part-way.
struct Built {
    bytes: Vec<u8>,
    offset: Option<usize>,
}

fn whole(bytes: Vec<u8>) -> Built {
    Built {
        bytes,
        offset: None,
    }
}

fn at(bytes: Vec<u8>, offset: usize) -> Built {
    Built {
        bytes,
        offset: Some(offset),
    }
}

struct Case {
    name: &'static str,
    /// `pcap` or `pcapng` (the file's extension).
    ext: &'static str,
    build: fn(&Src) -> Built,
    /// SPEC section 6: 0 read completely, 2 cannot be read at all, 3 damaged part-way.
    status: i32,
    /// Substrings of the reason (stderr, and the report's `damage[0].reason`).
    reason: &'static [&'static str],
    /// The message carries libpcap's own words for the case (all but the empty file,
    /// which mdmaudit names itself before libpcap sees it).
    libpcap_words: bool,
}

const CASES: &[Case] = &[
    // ---------------------------------------------------------------- pcap
    Case {
        name: "empty-file",
        ext: "pcap",
        build: |_| whole(Vec::new()),
        status: 2,
        reason: &["empty file (0 bytes)"],
        libpcap_words: false,
    },
    Case {
        name: "random-bytes",
        ext: "pcap",
        build: |_| {
            let mut rng = fastrand::Rng::with_seed(0x6d64_6d61);
            whole((0..4096).map(|_| rng.u8(..)).collect())
        },
        status: 2,
        reason: &["unknown file format"],
        libpcap_words: true,
    },
    Case {
        name: "cut-inside-magic",
        ext: "pcap",
        build: |s| whole(s.pcap[..3].to_vec()),
        status: 2,
        reason: &["truncated dump file; tried to read 4 file header bytes, only got 3"],
        libpcap_words: true,
    },
    Case {
        name: "cut-inside-global-header",
        ext: "pcap",
        build: |s| whole(s.pcap[..13].to_vec()),
        status: 2,
        // libpcap reads the magic number first, then 20 more bytes (it got 9 of them).
        reason: &["truncated dump file; tried to read 24 file header bytes, only got 9"],
        libpcap_words: true,
    },
    Case {
        name: "header-only",
        ext: "pcap",
        build: |s| whole(s.pcap[..24].to_vec()),
        status: 0,
        reason: &[],
        libpcap_words: true,
    },
    Case {
        name: "cut-inside-record-header",
        ext: "pcap",
        build: |s| at(s.pcap[..s.rec(5) + 7].to_vec(), s.rec(5)),
        status: 3,
        reason: &["truncated dump file; tried to read 16 header bytes, only got 7"],
        libpcap_words: true,
    },
    Case {
        name: "cut-inside-record-data",
        ext: "pcap",
        build: |s| at(s.pcap[..s.rec(5) + 16 + 10].to_vec(), s.rec(5)),
        status: 3,
        reason: &["truncated dump file; tried to read ", " captured bytes, only got 10"],
        libpcap_words: true,
    },
    Case {
        name: "caplen-0xffffffff",
        ext: "pcap",
        build: |s| at(s.with_caplen(5, u32::MAX), s.rec(5)),
        status: 3,
        reason: &["invalid packet capture length 4294967295, bigger than snaplen of 262144"],
        libpcap_words: true,
    },
    Case {
        name: "caplen-above-262144",
        ext: "pcap",
        build: |s| at(s.with_caplen(5, 300_000), s.rec(5)),
        status: 3,
        reason: &["invalid packet capture length 300000, bigger than snaplen of 262144"],
        libpcap_words: true,
    },
    Case {
        // The header's snaplen is above libpcap's maximum: it is kept, so the record
        // is refused for being above the maximum, not the snaplen.
        name: "caplen-above-262144-snaplen-above-it",
        ext: "pcap",
        build: |s| {
            let mut b = s.with_caplen(5, 300_000);
            put32(&mut b, 16, 400_000);
            at(b, s.rec(5))
        },
        status: 3,
        reason: &["invalid packet capture length 300000, bigger than maximum of 262144"],
        libpcap_words: true,
    },
    Case {
        // Records longer than the header's snaplen (but not than 262144): libpcap
        // keeps the first snaplen bytes and skips the rest; every packet is read.
        name: "caplen-above-snaplen",
        ext: "pcap",
        build: |s| whole(s.with_snaplen(64)),
        status: 0,
        reason: &[],
        libpcap_words: true,
    },
    Case {
        // The same, cut inside the skipped part of a long record: libpcap counts the
        // whole record's length and every byte it got.
        name: "caplen-above-snaplen-cut-in-skipped-part",
        ext: "pcap",
        build: |s| {
            let i = s.recs.iter().position(|r| r.1 > 100).expect("a long record");
            at(s.with_snaplen(64)[..s.rec(i) + 16 + 90].to_vec(), s.rec(i))
        },
        status: 3,
        reason: &["truncated dump file; tried to read ", " captured bytes, only got 90"],
        libpcap_words: true,
    },
    Case {
        name: "caplen-above-snaplen-cut-in-kept-part",
        ext: "pcap",
        build: |s| {
            let i = s.recs.iter().position(|r| r.1 > 100).expect("a long record");
            at(s.with_snaplen(64)[..s.rec(i) + 16 + 30].to_vec(), s.rec(i))
        },
        status: 3,
        reason: &["truncated dump file; tried to read 64 captured bytes, only got 30"],
        libpcap_words: true,
    },
    Case {
        name: "snaplen-0",
        ext: "pcap",
        build: |s| whole(s.with_snaplen(0)),
        status: 0,
        reason: &[],
        libpcap_words: true,
    },
    Case {
        // Packets are read (and counted) but not decoded; the report names the type.
        name: "unknown-link-type-65000",
        ext: "pcap",
        build: |s| {
            let mut b = s.pcap.clone();
            put32(&mut b, 20, 65_000);
            whole(b)
        },
        status: 0,
        reason: &[],
        libpcap_words: true,
    },
    Case {
        name: "unsupported-version-2.5",
        ext: "pcap",
        build: |s| {
            let mut b = s.pcap.clone();
            b[6] = 5;
            whole(b)
        },
        status: 2,
        reason: &["unsupported pcap savefile version 2.5"],
        libpcap_words: true,
    },
    // -------------------------------------------------------------- pcapng
    Case {
        // Before the byte-order magic libpcap cannot tell it is pcapng.
        name: "pcapng-cut-before-byte-order-magic",
        ext: "pcapng",
        build: |s| whole(s.ng[..10].to_vec()),
        status: 2,
        reason: &["unknown file format"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-cut-inside-shb",
        ext: "pcapng",
        build: |s| whole(s.ng[..s.shb_len() - 4].to_vec()),
        status: 2,
        reason: &["truncated pcapng dump file; tried to read "],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-shb-length-16",
        ext: "pcapng",
        build: |s| {
            let mut b = s.ng.clone();
            put32(&mut b, 4, 16);
            whole(b)
        },
        status: 2,
        reason: &["Section Header Block in pcapng dump file has invalid length", "_16_"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-shb-only",
        ext: "pcapng",
        build: |s| whole(s.ng[..s.shb_len()].to_vec()),
        status: 2,
        reason: &["the capture file has no Interface Description Blocks"],
        libpcap_words: true,
    },
    Case {
        // libpcap reads up to the first interface description when it opens a file.
        name: "pcapng-cut-inside-idb",
        ext: "pcapng",
        build: |s| whole(s.ng[..s.shb_len() + 10].to_vec()),
        status: 2,
        reason: &["truncated pcapng dump file; tried to read 12 bytes, only got 2"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-packet-before-idb",
        ext: "pcapng",
        build: |s| {
            let (idb, len) = (s.blocks[1].0, s.blocks[1].2);
            let mut b = s.ng[..idb].to_vec();
            b.extend_from_slice(&s.ng[idb + len..]);
            whole(b)
        },
        status: 2,
        reason: &["the capture file has a packet block before any Interface Description Blocks"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-cut-inside-epb-header",
        ext: "pcapng",
        build: |s| at(s.ng[..s.epb().0 + 6].to_vec(), s.epb().0),
        status: 3,
        reason: &["truncated pcapng dump file; tried to read 8 bytes, only got 6"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-cut-inside-epb",
        ext: "pcapng",
        build: |s| at(s.ng[..s.epb().0 + 40].to_vec(), s.epb().0),
        status: 3,
        // libpcap reads the 8-byte block header, then the rest (it got 32 bytes).
        reason: &["truncated pcapng dump file; tried to read ", " bytes, only got 32"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-cut-inside-epb-trailer",
        ext: "pcapng",
        build: |s| {
            let (o, len) = s.epb();
            at(s.ng[..o + len - 2].to_vec(), o)
        },
        status: 3,
        reason: &["truncated pcapng dump file; tried to read "],
        libpcap_words: true,
    },
    Case {
        // Damage after a block that is not a packet: libpcap's offset is where its
        // read of the next packet began (after the last packet), not the cut block.
        name: "pcapng-cut-after-a-non-packet-block",
        ext: "pcapng",
        build: |s| {
            let (o, len) = s.epb();
            let mut b = s.ng[..o].to_vec();
            for w in [0x0BAD_u32, 16, 0xC0FF_EE00, 16] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            b.extend_from_slice(&s.ng[o..o + len / 2]);
            at(b, o)
        },
        status: 3,
        reason: &["truncated pcapng dump file; tried to read "],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-block-length-not-multiple-of-4",
        ext: "pcapng",
        build: |s| at(s.epb_field(4, s.epb().1 as u32 + 1), s.epb().0),
        status: 3,
        reason: &["block in pcapng dump file has a length of ", " that is not a multiple of 4"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-block-length-below-12",
        ext: "pcapng",
        build: |s| at(s.epb_field(4, 8), s.epb().0),
        status: 3,
        reason: &["block in pcapng dump file has a length of 8 < 12"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-block-length-0xfffffff0",
        ext: "pcapng",
        build: |s| at(s.epb_field(4, 0xFFFF_FFF0), s.epb().0),
        status: 3,
        reason: &["pcapng block size 4294967280 > maximum 16777216"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-trailer-length-mismatch",
        ext: "pcapng",
        build: |s| at(s.epb_field(s.epb().1 - 4, s.epb().1 as u32 + 4), s.epb().0),
        status: 3,
        reason: &["block total length in header and trailer don't match"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-epb-caplen-beyond-block",
        ext: "pcapng",
        build: |s| at(s.epb_field(20, s.epb().1 as u32), s.epb().0),
        status: 3,
        reason: &["block of type 6 in pcapng dump file is too short"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-epb-caplen-0xffffffff",
        ext: "pcapng",
        build: |s| at(s.epb_field(20, u32::MAX), s.epb().0),
        status: 3,
        reason: &["invalid packet capture length 4294967295, bigger than snaplen of 262144"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-epb-unknown-interface",
        ext: "pcapng",
        build: |s| at(s.epb_field(8, 5), s.epb().0),
        status: 3,
        reason: &["a packet arrived on interface 5, but there's no Interface Description Block for that interface"],
        libpcap_words: true,
    },
    Case {
        name: "pcapng-unknown-link-type-65000",
        ext: "pcapng",
        build: |s| {
            let mut b = s.ng.clone();
            let idb = s.blocks[1].0;
            b[idb + 8..idb + 10].copy_from_slice(&65_000u16.to_le_bytes());
            whole(b)
        },
        status: 0,
        reason: &[],
        libpcap_words: true,
    },
];

/// What libpcap itself makes of a file: `Err` (its message) when it cannot open it,
/// else (link type, packets read, its message when it stopped on an error).
fn libpcap_reads(path: &Path) -> Result<(i32, u64, Option<String>), String> {
    let words = |e: pcap::Error| match e {
        pcap::Error::PcapError(s) => s,
        e => e.to_string(),
    };
    let mut cap = pcap::Capture::from_file(path).map_err(words)?;
    let dlt = cap.get_datalink().0;
    let mut n = 0u64;
    loop {
        match cap.next_packet() {
            Ok(_) => n += 1,
            Err(pcap::Error::NoMorePackets) => return Ok((dlt, n, None)),
            Err(e) => return Ok((dlt, n, Some(words(e)))),
        }
    }
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("mdmaudit-framing-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Everything one run of one case must show; problems are pushed to `bad`.
fn check_run(
    case: &Case,
    built: &Built,
    file: &str,
    libpcap: &Result<(i32, u64, Option<String>), String>,
    out: &std::process::Output,
    bad: &mut Vec<String>,
) {
    let mut fail = |what: String| bad.push(format!("{}: {what}", case.name));
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(case.status) {
        fail(format!(
            "exit status {:?}, expected {}: {err}",
            out.status.code(),
            case.status
        ));
        return;
    }
    // The status agrees with what libpcap makes of the file.
    let expected_by_libpcap = match libpcap {
        Err(_) => 2,
        Ok((_, _, Some(_))) => 3,
        Ok((_, _, None)) => 0,
    };
    if expected_by_libpcap != case.status {
        fail(format!(
            "the table says {}, libpcap says {libpcap:?}",
            case.status
        ));
    }
    // The message: names the file, gives the offset where it applies, the reason.
    if case.status == 0 {
        if !err.trim().is_empty() {
            fail(format!("a message for a complete read: {err}"));
        }
    } else {
        if !err.contains(file) {
            fail(format!("the message does not name {file}: {err}"));
        }
        for r in case.reason {
            if !err.contains(r) {
                fail(format!("the message lacks {r:?}: {err}"));
            }
        }
        let libpcap_says = match libpcap {
            Err(m) | Ok((_, _, Some(m))) => m.as_str(),
            Ok((_, _, None)) => "",
        };
        if case.libpcap_words && !err.contains(libpcap_says) {
            fail(format!("not in libpcap's words ({libpcap_says:?}): {err}"));
        }
        if let Some(o) = built.offset {
            if !err.contains(&format!("at byte {o},")) {
                fail(format!("the message lacks the offset {o}: {err}"));
            }
        }
    }
    if case.status == 2 {
        if !out.stdout.is_empty() {
            fail("a report for an unreadable file".into());
        }
        return;
    }
    // Packets were read: the report counts what libpcap reads before it stops.
    let Ok((dlt, packets, _)) = libpcap else {
        return;
    };
    let v: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            fail(format!("the report does not parse: {e}"));
            return;
        }
    };
    let n = Value::from(*packets);
    if v["capture"]["counters"]["packets"] != n || v["inputs"][0]["packets"] != n {
        fail(format!(
            "packets: capture {} / input {}, libpcap read {packets}",
            v["capture"]["counters"]["packets"], v["inputs"][0]["packets"]
        ));
    }
    let lt = v["inputs"][0]["linktype"].as_i64();
    if lt != Some(i64::from(*dlt)) {
        fail(format!("link type {lt:?}, libpcap says {dlt}"));
    }
    if v["inputs"][0]["linktype_supported"] == false {
        // Read, counted, not decoded: the report says which link type.
        let key = dlt.to_string();
        if v["capture"]["counters"]["unsupported_link_types"][&key] != n
            || v["inputs"][0]["linktype_name"] != format!("linktype {dlt}")
        {
            fail(format!(
                "the report does not name link type {dlt} for its {packets} packets: {} / {}",
                v["capture"]["counters"]["unsupported_link_types"], v["inputs"][0]["linktype_name"]
            ));
        }
    }
    let damaged = case.status == 3;
    if v["complete"] != !damaged {
        fail(format!("complete: {}", v["complete"]));
    }
    if damaged {
        let d = &v["damage"][0];
        if d["packets_read"] != n || d["file"] != file {
            fail(format!("damage record: {d}"));
        }
        if let Some(o) = built.offset {
            if d["offset"] != o {
                fail(format!("damage offset {}, expected {o}", d["offset"]));
            }
        }
        let reason = d["reason"].as_str().unwrap_or("");
        for r in case.reason {
            if !reason.contains(r) {
                fail(format!("the report's reason lacks {r:?}: {reason}"));
            }
        }
    } else if v["damage"].as_array().is_none_or(|a| !a.is_empty()) {
        fail(format!("damage on a complete read: {}", v["damage"]));
    }
}

#[test]
fn every_framing_case_gives_libpcaps_status_message_and_packet_count() {
    let src = Src::load();
    let dir = temp_dir();
    let mut bad = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for case in CASES {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        let built = (case.build)(&src);
        let path = dir.join(format!("{}.{}", case.name, case.ext));
        std::fs::write(&path, &built.bytes).expect("write the case");
        let file = path.to_str().expect("utf-8 path");
        let libpcap = libpcap_reads(&path);
        let mut outs = Vec::new();
        for reader in ["fast", "mapped", "libpcap"] {
            let out = run(&["audit", file, "--format", "json", "--reader", reader]);
            let before = bad.len();
            check_run(case, &built, file, &libpcap, &out, &mut bad);
            for b in bad.iter_mut().skip(before) {
                *b = format!("[--reader {reader}] {b}");
            }
            outs.push(out);
        }
        // Every reader gives the same report, message and status.
        for (name, other) in ["mapped", "libpcap"].iter().zip(outs.iter().skip(1)) {
            if outs[0].stdout != other.stdout
                || outs[0].stderr != other.stderr
                || outs[0].status.code() != other.status.code()
            {
                bad.push(format!(
                    "{}: the readers differ:\n  fast:    {:?} {}\n  {name}: {:?} {}",
                    case.name,
                    outs[0].status.code(),
                    String::from_utf8_lossy(&outs[0].stderr).trim(),
                    other.status.code(),
                    String::from_utf8_lossy(&other.stderr).trim()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
