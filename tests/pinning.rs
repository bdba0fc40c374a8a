//! An offline run with as many flow workers as CPUs pins each worker to a CPU of its
//! own while it reads (`threads::pin_worker`). The calling thread is worker 0: it must
//! get its affinity back, or the audit's and the report's helper threads, which
//! inherit it, would all share one CPU. Pinning changes where threads run, never
//! what they find.

use mdmaudit::engine::{run, EngineConfig, Input, ReaderKind, RunResult};
use mdmaudit::flow::FlowConfig;

/// The CPUs the calling thread may run on.
fn affinity() -> Vec<usize> {
    mdmaudit::threads::cpus().expect("sched_getaffinity")
}

fn run_on(path: &str, threads: usize, pin: bool) -> RunResult {
    let input = Input::open(path, 0, ReaderKind::Fast).expect("open the capture");
    let cfg = EngineConfig {
        flow: FlowConfig::default(),
        threads,
        max_records: 250_000,
        pin,
    };
    run(vec![input], cfg, None)
}

#[test]
fn a_pinned_run_gives_the_calling_thread_its_affinity_back_and_finds_the_same() {
    let before = affinity();
    // As many workers as CPUs: the case that pins (on one CPU nothing is pinned, and
    // the test still checks the affinity and the answers).
    let threads = before.len();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/apns-fallback.pcap");
    let mut pinned = run_on(path, threads, true);
    assert_eq!(affinity(), before, "affinity after a pinned run");
    let mut free = run_on(path, threads, false);
    assert!(pinned.capture.packets > 0);
    assert_eq!(pinned.capture.packets, free.capture.packets);
    let (mut a, mut b) = (pinned.take_records(), free.take_records());
    a.sort_by_key(|r| r.first_frame);
    b.sort_by_key(|r| r.first_frame);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
