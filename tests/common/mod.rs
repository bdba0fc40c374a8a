//! Shared helpers of the integration tests: run the built binary, find the shared
//! captures, read NDJSON flow records.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A path named `name` in a fresh directory of the system's temporary directory;
/// the directory and whatever the test left in it go when the value is dropped
/// (also when the test fails).
pub struct TempFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempFile {
    pub fn new(name: &str) -> TempFile {
        let dir = tempfile::Builder::new()
            .prefix("mdmaudit-test-")
            .tempdir()
            .expect("temporary directory");
        TempFile {
            path: dir.path().join(name),
            _dir: dir,
        }
    }
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mdmaudit")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/pcaps` beside the checkout (CI and developers have it there).
pub fn shared_pcaps() -> PathBuf {
    repo().join("..").join("shared").join("pcaps")
}

/// Capture files (pcap/pcapng) directly in `dir`, sorted.
pub fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            matches!(ext, "pcap" | "pcapng" | "cap") && p.is_file()
        })
        .collect();
    v.sort();
    v
}

/// Run the binary with a time limit; panics (naming the args) if it hangs.
pub fn run_with_timeout(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mdmaudit");
    let start = Instant::now();
    // Drain output in threads so a large report cannot block the child.
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut b);
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("mdmaudit {:?} still running after {:?}", args, limit);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t1.join().unwrap_or_default(),
        stderr: t2.join().unwrap_or_default(),
    }
}

pub fn run(args: &[&str]) -> Output {
    run_with_timeout(args, Duration::from_secs(60))
}

/// NDJSON records of an audit of `file`.
pub fn ndjson(file: &Path) -> Vec<Value> {
    let f = file.to_str().expect("utf-8 path");
    let out = run(&["audit", f, "--format", "ndjson", "--fail-on", "never"]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "{f}: exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each NDJSON line parses"))
        .collect()
}

pub fn flows(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["mdmaudit"]["record"] == "flow")
        .collect()
}

/// Lines of a TSV file without comments.
pub fn tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
