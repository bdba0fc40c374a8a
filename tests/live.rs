//! `mdmaudit live` against real traffic between two network namespaces joined by a
//! veth pair: a TLS server (openssl s_server) on 5223 and 443, 5223 dropped by an
//! nftables rule (or, where nftables is unavailable, closed so the kernel sends RST),
//! a client with SNI `courier.push.apple.com`. The live final report must equal the
//! offline audit of the traffic it captured (`--write`), and a scenario capture
//! replayed onto the veth with tcpreplay must get the offline verdicts.
//!
//! Needs root (namespaces, capture); skipped with a message otherwise. The error
//! messages (no capture rights, missing interface) are tested without root too.
//! Addresses: 203.0.113.0/24 only, inside namespaces this test creates and deletes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mdmaudit"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh")
}

fn must(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two namespaces and a veth pair; deleted (with every process started in them) on
/// drop, also when the test fails.
struct Lab {
    client: String,
    server: String,
    veth_c: String,
    veth_s: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = std::process::id() % 100_000;
        let lab = Lab {
            client: format!("mdl-{tag}c-{id}"),
            server: format!("mdl-{tag}s-{id}"),
            veth_c: format!("mv{tag}c{id}"),
            veth_s: format!("mv{tag}s{id}"),
            children: Vec::new(),
            dir: std::env::temp_dir().join(format!("mdmaudit-live-{tag}-{id}")),
        };
        let _ = std::fs::remove_dir_all(&lab.dir);
        std::fs::create_dir_all(&lab.dir).expect("temp dir");
        for ns in [&lab.client, &lab.server] {
            must(&format!("ip netns add {ns}"));
            must(&format!("ip -n {ns} link set lo up"));
            let _ = sh(&format!(
                "ip netns exec {ns} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
            ));
        }
        must(&format!(
            "ip link add {} netns {} type veth peer name {} netns {}",
            lab.veth_c, lab.client, lab.veth_s, lab.server
        ));
        must(&format!(
            "ip -n {} addr add 203.0.113.10/24 dev {}",
            lab.client, lab.veth_c
        ));
        must(&format!(
            "ip -n {} addr add 203.0.113.20/24 dev {}",
            lab.server, lab.veth_s
        ));
        must(&format!("ip -n {} link set {} up", lab.client, lab.veth_c));
        must(&format!("ip -n {} link set {} up", lab.server, lab.veth_s));
        lab
    }

    fn spawn_in(&mut self, ns: &str, args: &[&str], out: Option<&Path>) -> u32 {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c.stdin(Stdio::null());
        match out {
            Some(p) => c.stdout(std::fs::File::create(p).expect("out file")),
            None => c.stdout(Stdio::null()),
        };
        c.stderr(Stdio::piped());
        let child = c.spawn().expect("spawn in namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = sh(&format!("ip netns pids {ns} | xargs -r kill -9"));
            let _ = sh(&format!("ip netns del {ns}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skip_unless_root(what: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {what}: needs root (network namespaces and live capture); run `sudo -E cargo test --test live`");
        return true;
    }
    for t in ["ip", "openssl"] {
        if !have(t) {
            eprintln!("SKIPPED {what}: `{t}` is not installed");
            return true;
        }
    }
    false
}

/// Wait for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Wait until `path` exists (the live capture is up once its pcapng is written).
fn wait_file(path: &Path) {
    let t = Instant::now();
    while !path.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // libpcap is open before the file is created; give the socket a moment.
    std::thread::sleep(Duration::from_millis(300));
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("report");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Start `mdmaudit live` in the client namespace; returns the child index.
fn start_live(lab: &mut Lab, extra: &[&str], report: &Path, pcap: &Path) -> usize {
    let mut args: Vec<String> = vec![
        bin().display().to_string(),
        "live".into(),
        "-i".into(),
        lab.veth_c.clone(),
        "-f".into(),
        "json".into(),
        "-o".into(),
        report.display().to_string(),
        "-w".into(),
        pcap.display().to_string(),
        "--status-interval".into(),
        "1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ns = lab.client.clone();
    lab.spawn_in(&ns, &argv, None);
    wait_file(pcap);
    lab.children.len() - 1
}

/// SIGINT the live run and wait for its report; returns its exit code.
fn stop_live(lab: &mut Lab, idx: usize) -> i32 {
    let child = &mut lab.children[idx];
    // `ip netns exec` execs the command: the child's pid is mdmaudit's.
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let st = wait_exit(child, Duration::from_secs(15)).expect("live exits after SIGINT");
    if !st.success() && st.code() != Some(1) {
        let mut err = String::new();
        if let Some(e) = child.stderr.as_mut() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("live exited with {st}: {err}");
    }
    st.code().unwrap_or(-1)
}

fn offline(files: &[&Path], extra: &[&str]) -> (i32, serde_json::Value) {
    let o = Command::new(bin())
        .arg("audit")
        .args(files)
        .args(["-f", "json"])
        .args(extra)
        .output()
        .expect("run audit");
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "offline audit output: {e}: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

/// (rule, verdict, device) of every finding.
fn verdicts(v: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["rule"]["id"].as_str().unwrap_or("").to_string(),
                        f["mdmaudit"]["verdict"].as_str().unwrap_or("").to_string(),
                        f["source"]["ip"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// rule -> status of the requirements the traffic touched.
fn statuses(v: &serde_json::Value) -> Vec<(String, String)> {
    v["requirements"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["flows"].as_u64().unwrap_or(0) > 0)
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or("").to_string(),
                        r["status"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const LAB_RULES: &str = r#"
[[requirement]]
id = "lab.apns.device"
vendor = "Apple"
product = "APNs (test lab address)"
role = "device-to-cloud"
addresses = ["203.0.113.20/32"]
transport = "tcp"
ports = ["5223"]
fallback = ["443"]
required = false
profiles = ["apple-devices"]
purpose = "The test server stands in for APNs."
source = ["tests/live.rs"]
"#;

#[test]
fn live_fallback_equals_offline_and_replay_matches() {
    if skip_unless_root("live_fallback_equals_offline_and_replay_matches") {
        return;
    }
    let mut lab = Lab::new("a");
    let dir = lab.dir.clone();
    let rules = dir.join("lab.toml");
    std::fs::write(&rules, LAB_RULES).expect("rules");
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    must(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=courier.push.apple.com -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let server = lab.server.clone();
    for port in ["443", "5223"] {
        let (k, c) = (key.display().to_string(), cert.display().to_string());
        lab.spawn_in(
            &server,
            &[
                "openssl", "s_server", "-quiet", "-www", "-accept", port, "-key", &k, "-cert", &c,
            ],
            None,
        );
    }
    // 5223 is dropped by a real firewall rule; without nftables, closed (RST).
    let nft = sh(&format!(
        "ip netns exec {server} nft -f - <<'EOF'\ntable inet lab {{\n  chain input {{\n    type filter hook input priority 0;\n    tcp dport 5223 drop\n  }}\n}}\nEOF"
    ));
    let firewall = if nft.status.success() {
        "nftables drop"
    } else {
        eprintln!(
            "nftables unavailable ({}); closing 5223 instead (RST)",
            String::from_utf8_lossy(&nft.stderr).trim()
        );
        let _ = lab.children.get_mut(1).map(|c| c.kill());
        "closed port"
    };
    std::thread::sleep(Duration::from_millis(500));

    // 1. Real traffic, live, then the same capture offline.
    let report = dir.join("live.json");
    let pcap = dir.join("live.pcapng");
    let rules_s = rules.display().to_string();
    let idx = start_live(&mut lab, &["--extra-rules", &rules_s], &report, &pcap);
    let client = lab.client.clone();
    let sc = |port: &str, wait: u32| {
        format!(
            "ip netns exec {client} timeout {wait} openssl s_client -connect 203.0.113.20:{port} -servername courier.push.apple.com </dev/null >/dev/null 2>&1"
        )
    };
    let _ = sh(&sc("5223", 4)); // SYN, retransmitted at 1 s and 3 s, dropped
    let ok = sh(&sc("443", 10));
    assert!(ok.status.success(), "TLS on 443 must succeed");
    std::thread::sleep(Duration::from_millis(500));
    let live_code = stop_live(&mut lab, idx);
    let live = json(&report);
    let (off_code, off) = offline(&[&pcap], &["--extra-rules", &rules_s]);
    assert_eq!(live_code, off_code, "same exit status live and offline");
    assert_eq!(
        live["findings"], off["findings"],
        "live findings equal the offline audit of the same traffic"
    );
    assert_eq!(live["requirements"], off["requirements"]);
    assert_eq!(live["flows"], off["flows"]);
    let fb = live["findings"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|f| {
                f["rule"]["id"] == "lab.apns.device" && f["mdmaudit"]["verdict"] == "fallback"
            })
        })
        .unwrap_or_else(|| panic!("a fallback finding ({firewall}): {:#}", live["findings"]));
    let failed: Vec<_> = fb["mdmaudit"]["evidence"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["port"] == 5223 && x["failed"] == true)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !failed.is_empty(),
        "the fallback carries the blocked 5223 attempts: {fb:#}"
    );
    assert!(
        fb["mdmaudit"]["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["port"] == 443 && x["failed"] == false)),
        "and the 443 connection"
    );
    let live_counters = &live["capture"]["counters"]["live"]["interfaces"][0];
    assert!(
        live_counters["received"].as_u64().unwrap_or(0) > 0,
        "{live_counters}"
    );
    assert_eq!(live_counters["queue_dropped"], 0);

    // 2. A scenario capture replayed onto the veth at a fixed rate.
    if !have("tcpreplay") {
        eprintln!("SKIPPED the tcpreplay half: tcpreplay is not installed");
        return;
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/apns-fallback.pcap");
    let report2 = dir.join("replay.json");
    let pcap2 = dir.join("replay.pcapng");
    let idx2 = start_live(&mut lab, &[], &report2, &pcap2);
    must(&format!(
        "ip netns exec {server} tcpreplay -q --pps 200 -i {} {}",
        lab.veth_s,
        scenario.display()
    ));
    std::thread::sleep(Duration::from_millis(500));
    stop_live(&mut lab, idx2);
    let live2 = json(&report2);
    let (_, off2) = offline(&[&scenario], &[]);
    assert_eq!(
        live2["capture"]["counters"]["packets"], off2["capture"]["counters"]["packets"],
        "every replayed packet was captured"
    );
    assert_eq!(
        verdicts(&live2),
        verdicts(&off2),
        "live verdicts = offline verdicts"
    );
    assert_eq!(statuses(&live2), statuses(&off2));
    assert!(verdicts(&off2)
        .iter()
        .any(|(r, v, _)| r == "apple.apns.device" && v == "fallback"));
}

#[test]
fn missing_interface_lists_the_available_ones() {
    let o = Command::new(bin())
        .args(["live", "-i", "nosuchif0", "--duration", "1"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("interface 'nosuchif0' not found; available interfaces:"),
        "{err}"
    );
    assert!(err.contains("lo"), "lists the loopback among them: {err}");
}

#[test]
fn no_capture_rights_says_what_to_do() {
    // As root, drop the capture capabilities first; as a user, we already lack them.
    let o = if is_root() {
        if !have("capsh") {
            eprintln!("SKIPPED no_capture_rights_says_what_to_do: capsh is not installed");
            return;
        }
        Command::new("capsh")
            .args([
                "--drop=cap_net_raw,cap_net_admin",
                "--",
                "-c",
                &format!("exec {} live -i lo --duration 1", bin().display()),
            ])
            .output()
            .expect("run capsh")
    } else {
        Command::new(bin())
            .args(["live", "-i", "lo", "--duration", "1"])
            .output()
            .expect("run")
    };
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        eprintln!("SKIPPED no_capture_rights_says_what_to_do: this process can capture without privileges");
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot capture on interface 'lo': permission denied"),
        "{err}"
    );
    assert!(
        err.contains("run as root") && err.contains("setcap cap_net_raw,cap_net_admin=eip"),
        "{err}"
    );
}
