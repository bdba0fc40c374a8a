//! The offline run: packet sources in order, each frame decoded and handed to the flow
//! table, every frame and every problem counted.
//!
//! This module owns the counters a reader needs to trust a report (SPEC section 3,
//! "nothing is lost silently"). It does not judge flows (that is `audit`) and does not
//! format anything (that is `report`).

use crate::capture::{linktype_name, Damage, PacketSource};
use crate::decode::{self, linktype, Skip};
use crate::flow::{FlowConfig, FlowRecord, FlowStats, FlowTable, FrameRef, PacketCtx};
use crate::model::Nanos;
use serde::Serialize;
use std::collections::BTreeMap;

/// Per-input summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputSummary {
    pub file: String,
    pub linktype: u32,
    pub linktype_name: String,
    pub linktype_supported: bool,
    pub packets: u64,
    pub bytes: u64,
    /// Set when reading stopped part-way.
    pub damage: Option<Damage>,
}

/// Counters over all inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CaptureStats {
    pub packets: u64,
    /// Bytes on the wire (pcap `len`).
    pub bytes: u64,
    /// Bytes present in the capture (pcap `caplen`).
    pub captured_bytes: u64,
    /// Frames decoded to a TCP/UDP segment or a quoting ICMP error.
    pub decoded: u64,
    /// Frames not decoded, by reason (see `decode::Skip`).
    pub not_decoded: BTreeMap<String, u64>,
    /// Frames whose captured length is shorter than their length on the wire.
    pub truncated_by_snaplen: u64,
    /// TCP segments whose payload the snaplen cut.
    pub tcp_payload_truncated: u64,
    /// First fragments of fragmented IP packets (later fragments are in `not_decoded`).
    pub ip_first_fragments: u64,
    /// Frames reached through a tunnel (IP-in-IP, GRE, GTP-U).
    pub tunnelled: u64,
    /// Frames of link types we do not decode, by link type number.
    pub unsupported_link_types: BTreeMap<u32, u64>,
    pub first_ts: Option<Nanos>,
    pub last_ts: Option<Nanos>,
}

/// What an offline run produced, before the audit.
#[derive(Debug)]
pub struct RunResult {
    pub inputs: Vec<InputSummary>,
    pub capture: CaptureStats,
    pub flow_stats: FlowStats,
    pub records: Vec<FlowRecord>,
}

impl RunResult {
    /// Whether every input was read to its end.
    pub fn complete(&self) -> bool {
        self.inputs.iter().all(|i| i.damage.is_none())
    }
}

/// Progress callback: (input index, packets so far in it).
pub type Progress<'a> = &'a mut dyn FnMut(usize, u64);

/// Read every source in order; flows continue across files.
pub fn run(
    sources: Vec<Box<dyn PacketSource>>,
    cfg: FlowConfig,
    mut progress: Option<Progress<'_>>,
) -> RunResult {
    let mut table = FlowTable::new(cfg);
    let mut records = Vec::new();
    let mut cap = CaptureStats::default();
    let mut skipped = [0u64; Skip::ALL.len()];
    let mut inputs = Vec::new();
    for (idx, mut src) in sources.into_iter().enumerate() {
        let lt = src.linktype();
        let supported = linktype::is_supported(lt);
        let mut summary = InputSummary {
            file: src.name().to_string(),
            linktype: lt,
            linktype_name: linktype_name(lt),
            linktype_supported: supported,
            packets: 0,
            bytes: 0,
            damage: None,
        };
        let mut frame: u64 = 0;
        loop {
            let pkt = match src.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(d) => {
                    summary.damage = Some(d);
                    break;
                }
            };
            frame += 1;
            summary.packets += 1;
            summary.bytes += u64::from(pkt.wire_len);
            cap.packets += 1;
            cap.bytes += u64::from(pkt.wire_len);
            cap.captured_bytes += pkt.data.len() as u64;
            if (pkt.data.len() as u64) < u64::from(pkt.wire_len) {
                cap.truncated_by_snaplen += 1;
            }
            cap.first_ts = Some(cap.first_ts.map_or(pkt.ts, |t| t.min(pkt.ts)));
            cap.last_ts = Some(cap.last_ts.map_or(pkt.ts, |t| t.max(pkt.ts)));
            if frame % 65536 == 0 {
                if let Some(p) = progress.as_mut() {
                    p(idx, frame);
                }
            }
            if !supported {
                skipped[Skip::UnsupportedLinkType.index()] += 1;
                *cap.unsupported_link_types.entry(lt).or_default() += 1;
                continue;
            }
            match decode::decode(lt, pkt.data) {
                Ok(d) => {
                    cap.decoded += 1;
                    if d.fragment {
                        cap.ip_first_fragments += 1;
                    }
                    if d.tunnels > 0 {
                        cap.tunnelled += 1;
                    }
                    if let decode::L4::Tcp(t) = &d.l4 {
                        if t.truncated() {
                            cap.tcp_payload_truncated += 1;
                        }
                    }
                    let ctx = PacketCtx {
                        ts: pkt.ts,
                        frame: FrameRef {
                            file: idx as u32,
                            frame,
                        },
                        wire_len: pkt.wire_len,
                    };
                    table.process(&ctx, &d, &mut records);
                }
                Err(s) => skipped[s.index()] += 1,
            }
        }
        inputs.push(summary);
    }
    table.finish(&mut records);
    for s in Skip::ALL {
        cap.not_decoded
            .insert(s.as_str().to_string(), skipped[s.index()]);
    }
    RunResult {
        inputs,
        capture: cap,
        flow_stats: table.stats().clone(),
        records,
    }
}
