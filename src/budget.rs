//! The bound on finished flow records kept for the audit (`--max-records`).
//!
//! Every finished flow becomes a [`FlowRecord`] that the audit judges and the report
//! lists. A flood of millions of connection attempts would make that list, not the
//! flow table, the thing that exhausts memory. So a run keeps at most `limit` records
//! in full; beyond it, *bare* records — no name, no payload byte either way, no ICMP
//! error: SYN-only, refused and handshake-only flows, what a flood is made of — are
//! folded: one record per (device, transport, server port, server network — a /16
//! of public IPv4, a /24 of private IPv4, a /48 of IPv6 — outcome) stands for all of
//! them (`folded` counts the others), so a device's
//! blocked attempts still show and still explain its fallback. At most `limit`
//! folded records are made; flows that fit none are counted per (transport, server
//! port, outcome) only. Flows that matter (a name, a byte of data) are kept up to
//! twice the limit, so a flood cannot push out the APNs fallback it hides; past that
//! they are counted only. Every flow counted only is in the report's summary.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::flow::{FlowRecord, FrameRef, Outcome};
use crate::model::{Nanos, Transport};

/// Flows of one (transport, server port, outcome) that were counted, not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SummaryRow {
    pub transport: Transport,
    pub server_port: u16,
    pub outcome: Outcome,
    pub flows: u64,
    /// Flows of the row that carried a name or payload (kept only up to twice the
    /// limit).
    pub flows_with_content: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_ts: Nanos,
    pub last_ts: Nanos,
    /// The first frame of the earliest summarized flow of the row.
    pub first_frame: FrameRef,
}

impl SummaryRow {
    fn merge(&mut self, o: &SummaryRow) {
        self.flows = self.flows.saturating_add(o.flows);
        self.flows_with_content = self.flows_with_content.saturating_add(o.flows_with_content);
        self.packets = self.packets.saturating_add(o.packets);
        self.bytes = self.bytes.saturating_add(o.bytes);
        if (o.first_ts, o.first_frame) < (self.first_ts, self.first_frame) {
            self.first_ts = o.first_ts;
            self.first_frame = o.first_frame;
        }
        self.last_ts = self.last_ts.max(o.last_ts);
    }
}

type Key = (Transport, u16, Outcome);

/// What bare records are folded by: device, transport, server port, the server's
/// network (see [`server_net`]), outcome.
type FoldKey = (IpAddr, Transport, u16, [u8; 6], Outcome);

/// The server network folded flows share: a /16 of public IPv4 space (a cloud
/// service spreads its front ends over one; Apple's 17/8 and Google's ranges keep
/// their identity), a /24 of private IPv4 space (one site's servers stay apart), a
/// /48 of IPv6.
pub fn server_net(ip: IpAddr) -> [u8; 6] {
    let mut net = [0u8; 6];
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            let n = if a.is_private() || a.is_loopback() || a.is_link_local() {
                3
            } else {
                2
            };
            if let (Some(dst), Some(src)) = (net.get_mut(..n), o.get(..n)) {
                dst.copy_from_slice(src);
            }
            net[5] = 4;
        }
        IpAddr::V6(a) => {
            if let Some(src) = a.octets().get(..6) {
                net.copy_from_slice(src);
            }
        }
    }
    net
}

fn fold_key(r: &FlowRecord) -> FoldKey {
    (
        r.client.ip(),
        r.transport,
        r.server.port(),
        server_net(r.server.ip()),
        r.outcome,
    )
}

/// Records kept in full, folded, and the counted rest.
#[derive(Debug)]
pub struct RecordBudget {
    limit: usize,
    folds: std::collections::HashMap<FoldKey, FlowRecord, foldhash::fast::RandomState>,
    summary: BTreeMap<Key, SummaryRow>,
    summarized: u64,
    /// Flows folded into another record, and the records they were folded into.
    folded_flows: u64,
    fold_records: u64,
}

/// A record that says nothing a same-port, same-outcome neighbour does not: no name,
/// no payload, no ICMP error.
pub fn is_bare(r: &FlowRecord) -> bool {
    r.name.is_none()
        && !r.name_from_hello
        && r.client_payload == 0
        && r.server_payload == 0
        && r.icmp.is_none()
}

impl RecordBudget {
    /// Keep at most `limit` records in full (twice that for records with content).
    pub fn new(limit: usize) -> RecordBudget {
        RecordBudget {
            limit: limit.max(1),
            folds: Default::default(),
            summary: BTreeMap::new(),
            summarized: 0,
            folded_flows: 0,
            fold_records: 0,
        }
    }

    /// Apply the bound to `records[from..]`, the records finished since the last call:
    /// those over the budget are removed from `records` and counted.
    pub fn apply(&mut self, records: &mut Vec<FlowRecord>, from: usize) {
        self.apply_after(records, from, 0);
    }

    /// [`RecordBudget::apply`] when `before` records are kept elsewhere already (the
    /// full segments of a worker's records).
    pub fn apply_after(&mut self, records: &mut Vec<FlowRecord>, from: usize, before: usize) {
        if before.saturating_add(records.len()) <= self.limit {
            return;
        }
        let hard = self.limit.saturating_mul(2);
        let mut kept = from.min(records.len());
        let mut i = kept;
        while let Some(r) = records.get(i) {
            let bare = is_bare(r);
            let total = before.saturating_add(kept);
            let keep = total < self.limit || (total < hard && !bare);
            if keep {
                // `kept <= i < len`: both indices are in bounds.
                records.swap(kept, i);
                kept = kept.saturating_add(1);
            } else if bare {
                self.fold(r);
            } else {
                self.count(r);
            }
            i = i.saturating_add(1);
        }
        records.truncate(kept);
    }

    /// Fold a bare record into its device's record of the same kind, or count it.
    fn fold(&mut self, r: &FlowRecord) {
        let key = fold_key(r);
        if let Some(f) = self.folds.get_mut(&key) {
            self.folded_flows = self.folded_flows.saturating_add(1);
            f.folded = f.folded.saturating_add(1).saturating_add(r.folded);
            f.last_ts = f.last_ts.max(r.last_ts);
            f.client_packets = f.client_packets.saturating_add(r.client_packets);
            f.client_bytes = f.client_bytes.saturating_add(r.client_bytes);
            f.server_packets = f.server_packets.saturating_add(r.server_packets);
            f.server_bytes = f.server_bytes.saturating_add(r.server_bytes);
            f.syn_retransmits = f.syn_retransmits.saturating_add(r.syn_retransmits);
            f.client_flags |= r.client_flags;
            f.server_flags |= r.server_flags;
            if (r.first_ts, r.first_frame) < (f.first_ts, f.first_frame) {
                f.first_ts = r.first_ts;
                f.first_frame = r.first_frame;
            }
        } else if self.folds.len() < self.limit {
            self.folds.insert(key, r.clone());
        } else {
            self.count(r);
        }
    }

    /// End of the run: the folded records join the kept ones.
    pub fn finish(&mut self, records: &mut Vec<FlowRecord>) {
        let mut folded: Vec<FlowRecord> = self.folds.drain().map(|(_, r)| r).collect();
        self.fold_records = self.fold_records.saturating_add(folded.len() as u64);
        folded.sort_unstable_by_key(|r| r.first_frame);
        records.append(&mut folded);
    }

    /// Flows folded into another record (they count in the verdicts through it).
    pub fn folded_flows(&self) -> u64 {
        self.folded_flows
    }

    /// Records that stand for folded flows.
    pub fn fold_records(&self) -> u64 {
        self.fold_records
    }

    fn count(&mut self, r: &FlowRecord) {
        self.summarized = self.summarized.saturating_add(1);
        let row = SummaryRow {
            transport: r.transport,
            server_port: r.server.port(),
            outcome: r.outcome,
            flows: 1,
            flows_with_content: u64::from(!is_bare(r)),
            packets: r.client_packets.saturating_add(r.server_packets),
            bytes: r.client_bytes.saturating_add(r.server_bytes),
            first_ts: r.first_ts,
            last_ts: r.last_ts,
            first_frame: r.first_frame,
        };
        match self
            .summary
            .entry((r.transport, r.server.port(), r.outcome))
        {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(row);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(&row),
        }
    }

    /// Flows counted but not kept.
    pub fn summarized(&self) -> u64 {
        self.summarized
    }

    /// Merge another shard's summary into this one.
    pub fn merge(&mut self, o: RecordBudget) {
        self.summarized = self.summarized.saturating_add(o.summarized);
        self.folded_flows = self.folded_flows.saturating_add(o.folded_flows);
        self.fold_records = self.fold_records.saturating_add(o.fold_records);
        for (k, row) in o.summary {
            match self.summary.entry(k) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(row);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&row),
            }
        }
    }

    /// The summary rows, most flows first.
    pub fn rows(&self) -> Vec<SummaryRow> {
        let mut rows: Vec<SummaryRow> = self.summary.values().cloned().collect();
        rows.sort_by(|a, b| {
            b.flows.cmp(&a.flows).then_with(|| {
                (a.transport, a.server_port, a.outcome).cmp(&(
                    b.transport,
                    b.server_port,
                    b.outcome,
                ))
            })
        });
        rows
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::flow::{EndReason, FrameRef};
    use std::net::SocketAddr;

    fn rec(i: u64, port: u16, payload: u64) -> FlowRecord {
        FlowRecord {
            transport: Transport::Tcp,
            client: SocketAddr::from(([10, 0, 0, 1], 40000)),
            server: SocketAddr::from(([17, 57, 144, 1], port)),
            first_ts: i as Nanos,
            last_ts: i as Nanos + 1,
            client_packets: 1,
            client_bytes: 60,
            server_packets: 0,
            server_bytes: 0,
            client_payload: payload,
            server_payload: 0,
            outcome: Outcome::Unanswered,
            rtt_ns: None,
            ttfb_ns: None,
            syn_retransmits: 0,
            client_flags: 2,
            server_flags: 0,
            name: None,
            name_source: None,
            name_from_hello: false,
            app: None,
            hello: None,
            first_frame: FrameRef { file: 0, frame: i },
            icmp: None,
            one_direction: false,
            ended_by: EndReason::EndOfCapture,
            folded: 0,
        }
    }

    #[test]
    fn bare_records_over_the_limit_are_folded_content_kept_to_twice() {
        let mut b = RecordBudget::new(4);
        let mut v: Vec<FlowRecord> = (1..=7).map(|i| rec(i, 5223, 0)).collect();
        b.apply(&mut v, 0);
        // Four kept; the other three folded into one record.
        assert_eq!(v.len(), 4);
        assert_eq!((b.summarized(), b.folded_flows()), (0, 2));
        let from = v.len();
        v.extend((8..=12).map(|i| rec(i, 443, 100)));
        b.apply(&mut v, from);
        // Content records kept up to 2 x 4 = 8, the rest counted.
        assert_eq!(v.len(), 8);
        assert_eq!(b.summarized(), 1);
        let rows = b.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].server_port,
                rows[0].flows,
                rows[0].flows_with_content
            ),
            (443, 1, 1)
        );
        assert_eq!(rows[0].first_frame.frame, 12);
        b.finish(&mut v);
        assert_eq!(b.fold_records(), 1);
        let frames: Vec<(u64, u64)> = v.iter().map(|r| (r.first_frame.frame, r.folded)).collect();
        assert_eq!(
            frames,
            vec![
                (1, 0),
                (2, 0),
                (3, 0),
                (4, 0),
                (8, 0),
                (9, 0),
                (10, 0),
                (11, 0),
                (5, 2)
            ]
        );
        // Another server port of the same device is a fold of its own; once the
        // fold capacity (limit) is full further kinds are counted only.
        let from = v.len();
        v.extend((0..5).map(|k| rec(13 + k, 5228 + k as u16, 0)));
        b.apply(&mut v, from);
        assert_eq!(b.summarized(), 2);
    }

    /// Records kept in earlier segments count against the limit as if they were in
    /// the same vector.
    #[test]
    fn records_in_earlier_segments_count_against_the_limit() {
        let batches: Vec<Vec<FlowRecord>> = vec![
            (1..=3).map(|i| rec(i, 5223, 0)).collect(),
            (4..=6).map(|i| rec(i, 443, 100)).collect(),
            (7..=12).map(|i| rec(i, 443 + (i % 2) as u16, i % 3)).collect(),
        ];
        // One vector.
        let mut one = RecordBudget::new(4);
        let mut all = Vec::new();
        for batch in &batches {
            let from = all.len();
            all.extend(batch.iter().cloned());
            one.apply(&mut all, from);
        }
        // A segment per batch.
        let mut seg = RecordBudget::new(4);
        let mut parts: Vec<Vec<FlowRecord>> = Vec::new();
        let mut before = 0;
        for batch in &batches {
            let mut v = batch.clone();
            seg.apply_after(&mut v, 0, before);
            before += v.len();
            parts.push(v);
        }
        let joined: Vec<FlowRecord> = parts.into_iter().flatten().collect();
        assert_eq!(joined, all);
        assert!(joined.len() < 12);
        assert_eq!(
            (seg.summarized(), seg.folded_flows()),
            (one.summarized(), one.folded_flows())
        );
    }

    #[test]
    fn under_the_limit_nothing_changes() {
        let mut b = RecordBudget::new(10);
        let mut v: Vec<FlowRecord> = (1..=5).map(|i| rec(i, 5223, 0)).collect();
        b.apply(&mut v, 0);
        assert_eq!(v.len(), 5);
        assert_eq!(b.summarized(), 0);
        assert!(b.rows().is_empty());
    }
}
