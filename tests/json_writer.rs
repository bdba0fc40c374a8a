//! The flow list is written by a hand-written JSON writer (`report::write_flow_json`)
//! for speed; `report::flow_out` is the same record as a serde structure, the
//! reference. Every flow of every capture in `../shared/pcaps` (real, malformed and
//! tcpdump's test files: odd names, IPv6, ICMP) and of the bundled scenarios gives the same bytes both ways.

mod common;

use common::*;
use mdmaudit::audit::{audit, AuditOptions};
use mdmaudit::catalog::Catalog;
use mdmaudit::engine::{run, EngineConfig, Input, ReaderKind};
use mdmaudit::flow::FlowConfig;
use mdmaudit::report::{flow_out, write_flow_json};

#[test]
fn hand_written_flow_json_equals_serde() {
    let catalog = Catalog::builtin();
    let mut caps = captures_in(&repo().join("pcaps"));
    for dir in ["real", "malformed", "tcpdump-tests"] {
        caps.extend(captures_in(&shared_pcaps().join(dir)));
    }
    let (mut flows, mut differ) = (0usize, Vec::new());
    for cap in caps {
        let path = cap.to_str().expect("utf-8 path").to_string();
        let Ok(input) = Input::open(&path, 0, ReaderKind::Fast) else {
            continue;
        };
        let cfg = EngineConfig {
            flow: FlowConfig::default(),
            threads: 1,
            max_records: 250_000,
        };
        let mut res = run(vec![input], cfg, None);
        let span = res.capture.first_ts.zip(res.capture.last_ts);
        let records = res.take_records();
        let a = audit(&catalog, records, &AuditOptions::default(), span);
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
