//! A small snaplen must not cost server names: real captures cut to 256 and 400
//! bytes per packet (as `editcap -s` would, rewritten here with the `pcap-file`
//! crate) give the same set of SNIs as at full length, and the cut packets are
//! counted.

mod common;

use common::*;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

fn cut_copy(src: &Path, snaplen: usize) -> TempFile {
    let name = src.file_name().unwrap().to_str().unwrap();
    let dst = TempFile::new(&format!("s{snaplen}-{name}"));
    let magic = std::fs::read(src).unwrap()[..4].to_vec();
    let input = std::fs::File::open(src).unwrap();
    let output = std::fs::File::create(&dst).unwrap();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(input).unwrap();
        let mut w =
            PcapNgWriter::with_section_header(output, r.section().clone().into_owned()).unwrap();
        while let Some(b) = r.next_block() {
            let b = b.unwrap();
            match b {
                Block::EnhancedPacket(mut epb) => {
                    if epb.data.len() > snaplen {
                        epb.data = Cow::Owned(epb.data[..snaplen].to_vec());
                    }
                    w.write_block(&Block::EnhancedPacket(epb)).unwrap();
                }
                Block::SectionHeader(_) => {}
                other => {
                    w.write_block(&other).unwrap();
                }
            }
        }
    } else {
        let mut r = PcapReader::new(input).unwrap();
        let mut header = r.header();
        header.snaplen = snaplen as u32;
        let mut w = PcapWriter::with_header(output, header).unwrap();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            let keep = p.data.len().min(snaplen);
            let cut = PcapPacket::new(p.timestamp, p.orig_len, &p.data[..keep]);
            w.write_packet(&cut).unwrap();
        }
    }
    dst
}

fn snis(file: &Path) -> (BTreeSet<String>, u64) {
    let f = file.to_str().unwrap();
    let out = run(&["audit", f, "--format", "json", "--fail-on", "never"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let set = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|fl| {
            fl["tls"]["client"]["server_name"].as_str().map(|s| {
                format!(
                    "{}:{} {}",
                    fl["source"]["ip"].as_str().unwrap_or(""),
                    fl["source"]["port"],
                    s
                )
            })
        })
        .collect();
    let cut = v["capture"]["counters"]["truncated_by_snaplen"]
        .as_u64()
        .unwrap_or(0);
    (set, cut)
}

#[test]
fn server_names_survive_snaplen_256_and_400() {
    for name in ["ndpi__alexa-app.pcapng", "ndpi__tunnelbear.pcap"] {
        let src = shared_pcaps().join("real").join(name);
        let (full, full_cut) = snis(&src);
        assert!(full.len() >= 15, "{name}: {} names", full.len());
        assert_eq!(full_cut, 0);
        for snaplen in [256, 400] {
            let cut_file = cut_copy(&src, snaplen);
            let (cut, counted) = snis(&cut_file);
            assert_eq!(cut, full, "{name} at snaplen {snaplen}");
            assert!(counted > 0, "{name}: truncated packets counted");
        }
    }
}
