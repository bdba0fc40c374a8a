//! The file readers and the thread counts agree: every capture in `../shared/pcaps`
//! (real, malformed and tcpdump's 800-odd test files) gives a byte-identical report,
//! the same messages and the same exit status through our reader (read(2), the
//! default, and mapped windows) and through libpcap, and with 1 or 2 worker threads.

mod common;

use common::*;
use std::time::Duration;

/// Captures whose timestamps libpcap cannot represent: a sub-second field of one
/// second or more, which libpcap scales in 32-bit arithmetic (it wraps), while
/// mdmaudit adds it as written.
const TIMESTAMP_WRAP: &[&str] = &[
    "timestamp_invalid_micro.pcap",
    "timestamp_invalid_nano.pcap",
    "tcpdump__timestamp_invalid_micro.pcap",
    "rx_serviceid_oobr.pcap",
];

#[test]
fn fast_reader_libpcap_and_thread_counts_give_identical_reports() {
    let mut problems = Vec::new();
    let mut n = 0;
    for dir in ["real", "malformed", "tcpdump-tests"] {
        for cap in captures_in(&shared_pcaps().join(dir)) {
            let f = cap.to_str().expect("utf-8 path");
            let name = cap.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let limit = Duration::from_secs(10);
            let base = ["audit", f, "--format", "json", "--fail-on", "never"];
            let with = |extra: &[&str]| {
                let mut a = base.to_vec();
                a.extend_from_slice(extra);
                run_with_timeout(&a, limit)
            };
            let fast1 = with(&["--threads", "1"]);
            let fast2 = with(&["--threads", "2"]);
            n += 1;
            if fast1.stdout != fast2.stdout || fast1.status.code() != fast2.status.code() {
                problems.push(format!("{f}: --threads 1 and 2 differ"));
            }
            let mapped1 = with(&["--threads", "1", "--reader", "mapped"]);
            if fast1.stdout != mapped1.stdout
                || fast1.status.code() != mapped1.status.code()
                || fast1.stderr != mapped1.stderr
            {
                problems.push(format!("{f}: read(2) and mapped differ"));
            }
            if TIMESTAMP_WRAP.contains(&name) {
                continue;
            }
            let pcap = with(&["--threads", "1", "--reader", "libpcap"]);
            if fast1.stdout != pcap.stdout
                || fast1.status.code() != pcap.status.code()
                || fast1.stderr != pcap.stderr
            {
                problems.push(format!(
                    "{f}: fast reader and libpcap differ (status {:?}/{:?})\n  {}\n  {}",
                    fast1.status.code(),
                    pcap.status.code(),
                    String::from_utf8_lossy(&fast1.stderr).trim(),
                    String::from_utf8_lossy(&pcap.stderr).trim()
                ));
            }
        }
    }
    assert!(n > 900, "captures compared: {n}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
