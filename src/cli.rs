//! Command line: flags parsed by clap into a raw layer, validated once into typed
//! configuration, then the run. Nothing below this module reads a flag by name.
//!
//! Exit status (SPEC section 6): 0 no finding reaches `--fail-on`; 1 one does; 2 usage
//! error, an input that cannot be read at all, or an invalid catalog or site file
//! (checked before any packet is read; the diagnostics go to standard error as
//! `file:line:col: message`, the line and a caret); 3 an input is damaged part-way
//! (the report of what was read is still written). 3 wins over 1 and 0.

use crate::audit::{self, AuditOptions, Severity};
use crate::catalog::Catalog;
use crate::engine::{self, EngineConfig, Input, ReaderKind};
use crate::flow::{FlowConfig, PortSet};
use crate::model::Transport;
use crate::report::{self, Format, ReportInput};
use crate::site::Site;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FINDINGS: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_DAMAGED: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "mdmaudit",
    version,
    about = "Audit MDM network requirements (Apple APNs, Google FCM, Microsoft WNS/Intune, ZENworks, BigFix, XenMobile) in packet captures",
    long_about = "Reads pcap/pcapng captures, rebuilds TCP/UDP flows, learns server names (TLS SNI, HTTP Host, DNS answers, catalog address ranges) and reports which MDM requirement is blocked, falling back, legacy, unexpected or missing, for which device, with the evidence frames and the firewall rule that would fix it.\n\nExit status: 0 no finding at or above --fail-on; 1 findings; 2 usage error, unreadable input or invalid catalog; 3 an input is damaged part-way (the report covers what was read).",
    after_help = "Examples:\n  mdmaudit audit branch-office.pcapng\n  mdmaudit audit a.pcap b.pcap --format json -o report.json\n  mdmaudit audit - --format ndjson < capture.pcap\n  mdmaudit rules explain courier.push.apple.com:5223"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Audit capture files (pcap, pcapng; '-' for standard input).
    Audit(AuditArgs),
    /// Inspect and validate the requirement catalog.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Capture live on interfaces; status view or NDJSON events; final report on
    /// SIGINT/SIGTERM, --duration or --packets.
    Live(crate::live::LiveArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
    Ndjson,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReaderArg {
    /// mdmaudit's own pcap/pcapng reader, copying 1 MiB at a time: regular files with
    /// pread(2), the workers reading ahead of the one that frames; standard input and
    /// pipes with read(2) ("read" is accepted too).
    #[value(alias = "read")]
    Fast,
    /// The same reader, a regular file through 16 MiB mapped windows instead (no
    /// copy, but slower than read(2) on the machines measured; see benches/README.md).
    Mapped,
    /// libpcap, one packet at a time (slower; for comparison).
    Libpcap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Use this catalog (a TOML file or a directory of them) instead of the built-in one.
    /// Repeat to combine several.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Add these catalog files to the built-in catalog (or to --rules).
    #[arg(long = "extra-rules", value_name = "PATH")]
    pub extra_rules: Vec<PathBuf>,
}

/// How the final report is shown and judged, shared by `audit` and `live`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Exit 1 when a finding of this severity or worse is present.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
    /// Text report: add the per-device view.
    #[arg(long)]
    pub devices: bool,
    /// Text report: list every flow.
    #[arg(long)]
    pub flows: bool,
    /// Colour in the text report.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

impl ReportArgs {
    /// Whether a finding reaches `--fail-on` (exit status 1).
    pub fn fails(&self, findings: &[crate::audit::Finding]) -> bool {
        let threshold = match self.fail_on {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
            FailOn::Never => return false,
        };
        findings.iter().any(|f| f.severity >= threshold)
    }

    /// Whether the text report is coloured: `--color`, or for `auto` a terminal on
    /// standard output (no `-o FILE`) and no `NO_COLOR`.
    pub fn colored(&self, to_file: bool, stdout_tty: bool) -> bool {
        match self.color {
            ColorArg::Always => true,
            ColorArg::Never => false,
            ColorArg::Auto => !to_file && stdout_tty && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// Flow-table caps and timeouts and evidence limits, shared by `audit` and `live`.
#[derive(Args, Debug, Clone)]
pub struct FlowArgs {
    /// Cap on concurrent flows; beyond it the least recently active are evicted (counted).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_flows: usize,
    /// Idle timeout of established TCP flows, seconds of packet time.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub tcp_idle: u64,
    /// Idle timeout of unanswered or refused TCP attempts, seconds of packet time.
    #[arg(long, default_value_t = 180, value_name = "SECS")]
    pub tcp_attempt_idle: u64,
    /// Idle timeout of UDP flows, seconds of packet time.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub udp_idle: u64,
    /// Client data segments examined per flow for a ClientHello or HTTP request
    /// before giving up (counted: hello_incomplete).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_hello_segments: u16,
    /// Cap on the memory of ClientHello reassembly buffers, all flows together
    /// (bytes; K, M, G suffixes not accepted). A flow that would pass it gives up on
    /// its hello and is judged on what it buffered (counted: hello_budget).
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub max_hello_bytes: usize,
    /// Cap on addresses remembered from DNS answers.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_dns_entries: usize,
    /// A failed attempt on the preferred port counts as the cause of a fallback
    /// connection by the same device up to this many seconds before it.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub fallback_window: u64,
    /// Evidence frames listed per finding (all are counted).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_evidence: usize,
}

impl FlowArgs {
    /// The flow table's configuration; the catalog's ports orient mid-stream flows.
    pub fn flow_config(&self, catalog: &Catalog) -> FlowConfig {
        let mut ports = PortSet::well_known();
        for r in catalog.requirements().iter() {
            for pr in r.ports.iter().chain(r.fallback.iter()) {
                for p in pr.start..=pr.end {
                    ports.insert(p);
                }
            }
        }
        FlowConfig {
            max_flows: self.max_flows.max(1),
            tcp_idle: secs(self.tcp_idle),
            tcp_attempt_idle: secs(self.tcp_attempt_idle),
            udp_idle: secs(self.udp_idle),
            max_dns_entries: self.max_dns_entries,
            max_hello_bytes: self.max_hello_bytes,
            max_hello_segments: self.max_hello_segments.max(1),
            service_ports: ports,
            ..FlowConfig::default()
        }
    }

    /// The fallback window, nanoseconds of packet time.
    pub fn fallback_window_ns(&self) -> i64 {
        secs(self.fallback_window)
    }
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Capture files, read in order; flows continue across files. '-' reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// Report format.
    #[arg(long, short = 'f', value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
    /// Write the report to this file (atomically: a temporary file, then rename).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Audit against these profiles only (repeatable); without it they are inferred
    /// from the capture and the report says so.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Site file (TOML): roles of the site's addresses (managed devices, MDM server,
    /// LDAP, SQL, gateway...), profiles, strict mode. See docs/site-file.md.
    #[arg(long = "site", value_name = "FILE")]
    pub site: Option<PathBuf>,
    /// Strict mode (needs --site): managed devices and the MDM server talking to a
    /// destination outside the catalog is a finding, as `strict = true` in the site file.
    #[arg(long, requires = "site")]
    pub strict: bool,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Finished flows kept in full for the verdicts and the flow list. Beyond it, flows
    /// with no name and no payload (SYN-only, refused: what a flood is made of) are
    /// folded, one record per device, transport, server port, server network and
    /// outcome standing for all of them (at most this many such records); flows with
    /// a name or data are kept up to twice the number; the rest is counted per port
    /// and outcome. The report says how many were folded or counted.
    #[arg(long, default_value_t = 250_000, value_name = "N")]
    pub max_records: usize,
    /// Decode and flow worker threads (default: the cores available); the audit's
    /// first pass over large flow lists and the JSON flow list use as many. The
    /// report is the same whatever the number.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Leave the flow workers to the scheduler instead of pinning each to a CPU of
    /// its own while reading (pinning happens only when the workers are as many as
    /// the CPUs the process may use).
    #[arg(long)]
    pub no_pin: bool,
    /// How capture files are read.
    #[arg(long, value_enum, default_value_t = ReaderArg::Fast)]
    pub reader: ReaderArg,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate a catalog (and a site file); errors name file, line and column.
    Check {
        /// Catalog files or directories (default: the built-in catalog).
        paths: Vec<PathBuf>,
        /// Also validate this site file against the catalog.
        #[arg(long, value_name = "FILE")]
        site: Option<PathBuf>,
    },
    /// Print the catalog as Markdown (docs/catalog.md is this output).
    Doc {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// The seed rows (tests/seed_rows.tsv) for the coverage table.
        #[arg(long, value_name = "FILE")]
        seed_rows: Option<PathBuf>,
    },
    /// Print the catalog.
    List {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// Only requirements of this profile.
        #[arg(long)]
        profile: Option<String>,
        #[arg(long, short = 'f', value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
    },
    /// Which requirements match HOST[:PORT][/udp] (a name or an address), and why.
    Explain {
        #[command(flatten)]
        catalog: CatalogArgs,
        /// `json`: one object per matching requirement (id, vendor, path, conditional...).
        #[arg(long, short = 'f', value_enum, default_value_t = FormatArg::Text)]
        format: FormatArg,
        /// e.g. courier.push.apple.com:5223, 17.57.146.20:443, mtalk.google.com:5228/udp
        target: String,
    },
}

/// Run the command line; returns the exit status. Meant for the binary, which exits
/// right after: an audit leaves its flow records to the end of the process rather
/// than freeing them one by one.
pub fn main() -> i32 {
    let _ = STARTED.set(std::time::Instant::now());
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
        }
    };
    match cli.command {
        Command::Audit(a) => run_audit(a),
        Command::Rules(r) => run_rules(r),
        Command::Live(l) => crate::live::run(l),
    }
}

/// When [`main`] was entered (for `MDMAUDIT_TIMINGS`).
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("mdmaudit: {msg}");
    EXIT_USAGE
}

/// Catalog and site diagnostics are printed as they are (`file:line:col: ...`).
fn fail_diagnostics(msg: impl std::fmt::Display) -> i32 {
    eprintln!("{msg}");
    EXIT_USAGE
}

/// The catalog the flags ask for, and a description of where it came from.
pub(crate) fn load_catalog(a: &CatalogArgs) -> Result<(Catalog, String), String> {
    let (base, mut desc) = if a.rules.is_empty() {
        (Catalog::builtin(), "built-in".to_string())
    } else {
        let c = Catalog::load(&a.rules).map_err(|e| e.to_string())?;
        let d = a
            .rules
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        (c, d)
    };
    if a.extra_rules.is_empty() {
        return Ok((base, desc));
    }
    for p in a.extra_rules.iter() {
        desc.push_str(&format!(" + {}", p.display()));
    }
    // Extra files may use the base catalog's profiles.
    let merged = base
        .extend_from_paths(&a.extra_rules)
        .map_err(|e| e.to_string())?;
    Ok((merged, desc))
}

/// Seconds to nanoseconds of packet time, saturating.
pub(crate) fn secs(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

fn run_audit(a: AuditArgs) -> i32 {
    keep_freed_memory();
    let (catalog, catalog_desc) = match load_catalog(&a.catalog) {
        Ok(c) => c,
        Err(e) => return fail_diagnostics(e),
    };
    // The site file is checked before any input is opened.
    let site = match &a.site {
        Some(path) => match Site::load(path, &catalog) {
            Ok(s) => Some(std::sync::Arc::new(s)),
            Err(e) => return fail_diagnostics(e),
        },
        None => None,
    };
    for p in a.profiles.iter() {
        if !catalog.profiles().iter().any(|x| &x.name == p) {
            let known: Vec<&str> = catalog.profiles().iter().map(|x| x.name.as_str()).collect();
            return fail(format!(
                "unknown profile '{p}' (the catalog has: {})",
                known.join(", ")
            ));
        }
    }
    if a.files.iter().filter(|f| f.as_str() == "-").count() > 1 {
        return fail("standard input ('-') can be read only once");
    }
    // Open every input before reading any: an unreadable one stops the run at once.
    let kind = match a.reader {
        ReaderArg::Fast => ReaderKind::Fast,
        ReaderArg::Mapped => ReaderKind::Mapped,
        ReaderArg::Libpcap => ReaderKind::Libpcap,
    };
    let mut inputs = Vec::new();
    for (i, f) in a.files.iter().enumerate() {
        match Input::open(f, i as u32, kind) {
            Ok(s) => inputs.push(s),
            Err(e) => return fail(e),
        }
    }
    let threads = match a.threads {
        Some(0) => return fail("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let cfg = a.flow.flow_config(&catalog);
    let stderr_tty = std::io::stderr().is_terminal();
    let mut last_report = std::time::Instant::now();
    let start = std::time::Instant::now();
    let mut progress = |_idx: usize, pkts: u64| {
        if last_report.elapsed().as_millis() >= 500 {
            last_report = std::time::Instant::now();
            let rate = pkts as f64 / start.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r{pkts} packets, {rate:.0} packets/s   ");
        }
    };
    let timings = std::env::var_os("MDMAUDIT_TIMINGS").is_some();
    let t_run = std::time::Instant::now();
    let f_run = usage();
    let run = engine::run(
        inputs,
        EngineConfig {
            flow: cfg,
            threads,
            max_records: a.max_records,
            pin: !a.no_pin,
        },
        if stderr_tty {
            Some(&mut progress)
        } else {
            None
        },
    );
    if stderr_tty && run.capture.packets >= 65536 {
        eprint!("\r\x1b[K");
    }
    let opts = AuditOptions {
        profiles: a.profiles.clone(),
        fallback_window: a.flow.fallback_window_ns(),
        max_evidence: a.flow.max_evidence,
        site,
        strict: a.strict,
        threads,
    };
    let span = match (run.capture.first_ts, run.capture.last_ts) {
        (Some(x), Some(y)) => Some((x, y)),
        _ => None,
    };
    let mut run = run;
    let parts = std::mem::take(&mut run.record_parts);
    let t_audit = std::time::Instant::now();
    let f_audit = usage();
    let audit = audit::audit_parts(&catalog, parts, &opts, span);
    let t_report = std::time::Instant::now();
    let f_report = usage();
    let color = a
        .report
        .colored(a.output.is_some(), std::io::stdout().is_terminal());
    let input = ReportInput {
        run: &run,
        audit: &audit,
        catalog: catalog_desc,
        catalog_requirements: catalog.requirements().len(),
        show_devices: a.report.devices,
        show_flows: a.report.flows,
        threads,
        color,
    };
    let format = match a.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Ndjson => Format::Ndjson,
    };
    let mut sink = report::sink_for(format);
    let written = match &a.output {
        Some(path) => write_atomically(path, |w| sink.write_report(&input, w)),
        None => write_stdout(|w| sink.write_report(&input, w)),
    };
    if timings {
        let f_end = usage();
        eprintln!(
            "mdmaudit: timings: start-up {:.4} s, packets {:.3} s, audit {:.3} s, report {:.3} s; \
             CPU: packets {:.3} s, audit {:.3} s, report {:.3} s; \
             page faults: packets {}, audit {}, report {}",
            STARTED.get().map_or(0.0, |s| (t_run - *s).as_secs_f64()),
            (t_audit - t_run).as_secs_f64(),
            (t_report - t_audit).as_secs_f64(),
            t_report.elapsed().as_secs_f64(),
            f_audit.1 - f_run.1,
            f_report.1 - f_audit.1,
            f_end.1 - f_report.1,
            f_audit.0.saturating_sub(f_run.0),
            f_report.0.saturating_sub(f_audit.0),
            f_end.0.saturating_sub(f_report.0),
        );
    }
    if let Err(e) = written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return fail(write_failed(a.output.as_deref(), &e));
        }
    }
    for i in run.inputs.iter() {
        if let Some(d) = &i.damage {
            eprintln!("mdmaudit: {d}; the report covers what was read");
        }
    }
    let code = if !run.complete() {
        EXIT_DAMAGED
    } else if a.report.fails(&audit.findings) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    };
    // The process ends next: freeing hundreds of thousands of flow records one by
    // one would only delay the exit (tens of milliseconds on large captures).
    std::mem::forget(audit);
    std::mem::forget(run);
    code
}

/// Lets glibc's allocator keep memory freed by one phase of an offline run for the
/// next instead of giving it back to the kernel at once.
///
/// By default glibc serves every block above a threshold (128 KiB, raised as such
/// blocks are freed) with its own mmap(2) and unmaps it on free: the flow tables,
/// read buffers and record segments the packets phase lets go of went back to the
/// kernel, and the audit's allocations then faulted in fresh pages again (a fault
/// costs about 1.2 us on the VMs measured). A fixed threshold of 32 MiB (glibc's
/// largest) keeps such blocks in the heap for reuse. 200 MB capture: the audit's
/// page faults 3,000 -> 700 and whole runs about 5% shorter (wall and CPU); main
/// and handshake captures level within the noise; peak RSS of the main capture 75 ->
/// 95 MB, 10 M concurrent flows unchanged (benches/README.md). Live capture, which
/// runs for days, keeps glibc's defaults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before
    // this run starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// The process's minor page faults (first touches of memory) and CPU time (user +
/// system, in seconds) so far, for `MDMAUDIT_TIMINGS`; zeros where getrusage(2) is
/// not available.
fn usage() -> (u64, f64) {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given, which is plain data.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return (
                u64::try_from(ru.ru_minflt).unwrap_or(0),
                secs(ru.ru_utime) + secs(ru.ru_stime),
            );
        }
    }
    (0, 0.0)
}

/// Bytes per write(2) of a report.
const WRITE_PIECE: usize = 32 << 10;

/// Hands the bytes on to `W` at most [`WRITE_PIECE`] at a time.
///
/// The size of a write(2) decides the size of the page-cache folios the kernel
/// gives a file written to (ext4 and xfs use large folios), and on the VMs measured
/// (Linux 6.18, free memory reported to the host) large blocks of free memory are
/// dear: the host often has to fault them back in page by page. Writing a 93 MB
/// file after a 3-second pause took 0.15-0.23 s in pieces of 256 KiB to 4 MiB,
/// 0.08-0.17 s in 64 KiB and 0.03-0.05 s in 8-32 KiB pieces (dd); back to back it
/// was 0.02-0.04 s in any size, with outliers of 0.25-0.30 s for the large ones.
/// The price is a system call per 32 KiB (about 3,000 for that file).
struct Pieces<W>(W);

impl<W: Write> Write for Pieces<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf.get(..WRITE_PIECE).unwrap_or(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Blocks reserved ahead of the bytes written by [`Reserving`].
const RESERVE_STEP: u64 = 16 << 20;

/// A new report file whose disk blocks are reserved ahead of the writes, in steps of
/// [`RESERVE_STEP`] (fallocate(2) with FALLOC_FL_KEEP_SIZE: the file's size still
/// follows what is written). Without it ext4 reserves ("delayed allocation") and
/// accounts every 4 KiB block inside each write(2): 39% of the report phase's
/// samples were the kernel's, an eighth of them on the copy itself. With it the
/// report phase of the main capture (93 MB of JSON) took 68 -> 62.5 ms at 1 thread
/// and 40 -> 34.5 ms at 2 (medians of 8 and 12 alternating runs), that of the
/// handshake capture (185 MB) 80.5 -> 73.5 ms at 2 (8). The blocks reserved past
/// the end are given back when the report is complete. Where the file system cannot
/// reserve (tmpfs can, NFS may not) the writes simply go on.
struct Reserving {
    file: std::fs::File,
    reserved: u64,
    written: u64,
    /// fallocate failed once: not tried again.
    unsupported: bool,
}

impl Reserving {
    fn new(file: std::fs::File) -> Reserving {
        Reserving {
            file,
            reserved: 0,
            written: 0,
            unsupported: false,
        }
    }

    /// Reserve the next step when `len` more bytes would pass the blocks reserved.
    fn reserve(&mut self, len: usize) {
        if self.unsupported || self.written.saturating_add(len as u64) <= self.reserved {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let (Ok(at), Ok(step)) = (
                libc::off_t::try_from(self.reserved),
                libc::off_t::try_from(RESERVE_STEP),
            ) else {
                self.unsupported = true;
                return;
            };
            // SAFETY: fallocate on a file descriptor we own; it changes no bytes of
            // the file (KEEP_SIZE), only which blocks are allocated past its end.
            let r = unsafe {
                libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, at, step)
            };
            if r == 0 {
                self.reserved = self.reserved.saturating_add(RESERVE_STEP);
            } else {
                self.unsupported = true;
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.unsupported = true;
        }
    }

    /// Give back the blocks reserved past the last byte written.
    fn finish(self) -> std::io::Result<()> {
        if self.reserved > self.written {
            self.file.set_len(self.written)?;
        }
        Ok(())
    }
}

impl Write for Reserving {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.reserve(buf.len());
        let n = self.file.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Why the report could not be written, naming its file (`None`: standard output).
pub(crate) fn write_failed(output: Option<&std::path::Path>, e: &std::io::Error) -> String {
    match output {
        Some(path) => format!("cannot write the report to {}: {e}", path.display()),
        None => format!("cannot write the report: {e}"),
    }
}

/// Write to standard output, in pieces of at most [`WRITE_PIECE`] bytes.
pub(crate) fn write_stdout(
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(WRITE_PIECE, Pieces(stdout.lock()));
    f(&mut w)?;
    w.flush()
}

/// Write through a temporary file in the same directory, then rename over `path`.
pub(crate) fn write_atomically(
    path: &std::path::Path,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // A device, a FIFO or anything else that is not a regular file (-o /dev/null,
    // -o /dev/stdout) is written in place: renaming over it would replace it.
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() {
            let mut w = std::io::BufWriter::with_capacity(
                WRITE_PIECE,
                Pieces(std::fs::OpenOptions::new().write(true).open(path)?),
            );
            f(&mut w)?;
            return w.flush();
        }
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Readers never see a half-written report. It is not fsync'd: the report is
    // not a database, and flushing 100 MB of JSON to disk cost a second or more of
    // every run (the kernel writes it back as usual).
    let res = (|| {
        let file = Reserving::new(std::fs::File::create(&tmp)?);
        let mut w = std::io::BufWriter::with_capacity(WRITE_PIECE, Pieces(file));
        f(&mut w)?;
        let Pieces(file) = w.into_inner().map_err(|e| e.into_error())?;
        file.finish()?;
        replace(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Put the finished file `tmp` at `path`, atomically: a reader of `path` sees the old
/// file or the new one, never neither.
///
/// On Linux an existing `path` is swapped with `tmp` (renameat2 with
/// RENAME_EXCHANGE) and the old file, now at `tmp`, is then removed. A plain rename
/// over an existing file makes ext4 (with its default `auto_da_alloc`) allocate
/// and submit for writeback every block of the new file inside the rename, to
/// make up for a missing fsync: 30-40 ms for the 93 MB report of the benchmark
/// capture, more than a tenth of the whole run. The report is not fsync'd anyway
/// (see [`write_atomically`]), so that half-measure buys nothing here; the kernel
/// writes the file back as usual.
fn replace(tmp: &std::path::Path, path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        if let (Ok(from), Ok(to)) = (
            std::ffi::CString::new(tmp.as_os_str().as_bytes()),
            std::ffi::CString::new(path.as_os_str().as_bytes()),
        ) {
            // SAFETY: both paths are NUL-terminated strings that outlive the call.
            let r = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if r == 0 {
                // `tmp` now names the old file. Failing to remove it leaves a hidden
                // stale file, not a wrong report.
                let _ = std::fs::remove_file(tmp);
                return Ok(());
            }
            // No file at `path` yet (ENOENT), or a file system or kernel without
            // the exchange (EINVAL, ENOSYS): a plain rename does it.
        }
    }
    std::fs::rename(tmp, path)
}

fn run_rules(r: RulesCommand) -> i32 {
    match r {
        RulesCommand::Check { paths, site } => {
            let res = if paths.is_empty() {
                Catalog::try_builtin()
            } else {
                Catalog::load(&paths)
            };
            let c = match res {
                Ok(c) => c,
                Err(e) => return fail_diagnostics(e),
            };
            println!(
                "catalog ok: {} requirements, {} profiles",
                c.requirements().len(),
                c.profiles().len()
            );
            if let Some(path) = site {
                match Site::load(&path, &c) {
                    Ok(s) => println!(
                        "site file ok: {} roles, {} profiles, {} allow entries{}",
                        s.roles.len(),
                        s.profiles.len(),
                        s.allow.len(),
                        if s.strict { ", strict" } else { "" }
                    ),
                    Err(e) => return fail_diagnostics(e),
                }
            }
            EXIT_OK
        }
        RulesCommand::Doc { catalog, seed_rows } => {
            let (c, _) = match load_catalog(&catalog) {
                Ok(c) => c,
                Err(e) => return fail_diagnostics(e),
            };
            let rows = match &seed_rows {
                Some(p) => match std::fs::read_to_string(p) {
                    Ok(t) => Some((p.display().to_string(), t)),
                    Err(e) => return fail(format!("cannot read {}: {e}", p.display())),
                },
                None => None,
            };
            match c.render_markdown(rows.as_ref().map(|(n, t)| (n.as_str(), t.as_str()))) {
                Ok(md) => print!("{md}"),
                Err(e) => return fail(e),
            }
            EXIT_OK
        }
        RulesCommand::List {
            catalog,
            profile,
            format,
        } => {
            let (c, _) = match load_catalog(&catalog) {
                Ok(c) => c,
                Err(e) => return fail_diagnostics(e),
            };
            if let Some(p) = &profile {
                if !c.profiles().iter().any(|x| &x.name == p) {
                    return fail(format!("unknown profile '{p}'"));
                }
            }
            match format {
                FormatArg::Text => print!("{}", c.render_list(profile.as_deref())),
                _ => {
                    let reqs: Vec<_> = c
                        .requirements()
                        .iter()
                        .filter(|r| profile.as_ref().is_none_or(|p| r.profiles.contains(p)))
                        .collect();
                    match serde_json::to_string_pretty(&reqs) {
                        Ok(s) => println!("{s}"),
                        Err(e) => return fail(e),
                    }
                }
            }
            EXIT_OK
        }
        RulesCommand::Explain {
            catalog,
            format,
            target,
        } => {
            let (c, _) = match load_catalog(&catalog) {
                Ok(c) => c,
                Err(e) => return fail_diagnostics(e),
            };
            let (host, port, transport) = match parse_target(&target) {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let ex = c.explain(&host, port, transport);
            if format != FormatArg::Text {
                let rows: Vec<serde_json::Value> = ex
                    .iter()
                    .map(|e| {
                        let r = c.requirement(e.req);
                        serde_json::json!({
                            "id": e.id,
                            "vendor": r.map(|r| r.vendor.as_str()),
                            "product": r.map(|r| r.product.as_str()),
                            "role": r.map(|r| r.role.as_str()),
                            "by": e.by,
                            "path": e.path,
                            "conditional": e.conditional,
                            "text": e.text,
                        })
                    })
                    .collect();
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail(e),
                }
                return EXIT_OK;
            }
            if ex.is_empty() {
                println!("{target}: no requirement of the catalog matches");
            } else {
                for e in ex.iter() {
                    println!("{}", e.text);
                }
            }
            EXIT_OK
        }
    }
}

/// `HOST[:PORT][/udp]`, with `[v6]:port` for IPv6 addresses.
pub fn parse_target(t: &str) -> Result<(String, Option<u16>, Transport), String> {
    let (rest, transport) = match t.rsplit_once('/') {
        Some((r, "udp")) => (r, Transport::Udp),
        Some((r, "tcp")) => (r, Transport::Tcp),
        Some((_, x)) => return Err(format!("'{t}': unknown transport '{x}' (tcp or udp)")),
        None => (t, Transport::Tcp),
    };
    let bad_port = |p: &str| format!("'{t}': bad port '{p}'");
    if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{t}': missing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad_port(p))?),
            None if after.is_empty() => None,
            None => return Err(format!("'{t}': unexpected '{after}'")),
        };
        return Ok((addr.to_string(), port, transport));
    }
    if rest.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((rest.to_string(), None, transport));
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            Some(p.parse::<u16>().map_err(|_| bad_port(p))?),
            transport,
        )),
        None => Ok((rest.to_string(), None, transport)),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::{write_atomically, Pieces, WRITE_PIECE};
    use std::io::{Read, Write};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mdmaudit-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Records the size of every write it is given.
    struct Sizes(Vec<usize>, Vec<u8>);

    impl Write for Sizes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_reach_the_file_in_pieces() {
        let data: Vec<u8> = (0..3 * WRITE_PIECE + 5).map(|i| i as u8).collect();
        let mut w = std::io::BufWriter::with_capacity(WRITE_PIECE, Pieces(Sizes(vec![], vec![])));
        w.write_all(b"head").unwrap();
        w.write_all(&data).unwrap();
        w.write_all(b"tail").unwrap();
        let Pieces(Sizes(sizes, bytes)) = w.into_inner().map_err(|_| ()).unwrap();
        assert!(sizes.iter().all(|&n| n <= WRITE_PIECE), "{sizes:?}");
        assert_eq!(bytes.len(), data.len() + 8);
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[4..4 + data.len()], &data[..]);
        assert_eq!(&bytes[4 + data.len()..], b"tail");
    }

    #[test]
    fn blocks_reserved_ahead_are_given_back_at_the_end() {
        use std::os::unix::fs::MetadataExt;
        let d = scratch("reserve");
        let p = d.join("report.json");
        // A little over one reservation step, so that a second one is made and most
        // of it is past the end.
        let data: Vec<u8> = (0..super::RESERVE_STEP as usize + 100_000)
            .map(|i| (i % 251) as u8)
            .collect();
        write_atomically(&p, |w| w.write_all(&data)).unwrap();
        assert!(std::fs::read(&p).unwrap() == data, "contents differ");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), data.len() as u64);
        // st_blocks counts 512-byte units: at most the data rounded up to 64 KiB
        // (what any file system here allocates for it), not a second 16 MiB step.
        let allocated = m.blocks() * 512;
        assert!(
            allocated <= (data.len() as u64).next_multiple_of(64 << 10),
            "{allocated} bytes allocated for {} written",
            data.len()
        );
        assert_eq!(names(&d), ["report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writes_a_new_file_and_leaves_nothing_else() {
        let d = scratch("new");
        let p = d.join("report.json");
        write_atomically(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names(&d), ["report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn replaces_an_existing_file_whole() {
        let d = scratch("replace");
        let p = d.join("report.json");
        std::fs::write(&p, b"the old report, longer than the new one").unwrap();
        // A reader that opened the old report keeps reading the old report.
        let mut old = std::fs::File::open(&p).unwrap();
        write_atomically(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mut s = String::new();
        old.read_to_string(&mut s).unwrap();
        assert_eq!(s, "the old report, longer than the new one");
        assert_eq!(names(&d), ["report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let d = scratch("fail");
        let p = d.join("report.json");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomically(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("formatting failed"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(&d), ["report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_is_replaced_not_followed() {
        let d = scratch("link");
        let target = d.join("elsewhere.json");
        std::fs::write(&target, b"untouched").unwrap();
        let p = d.join("report.json");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_atomically(&p, |w| w.write_all(b"new")).unwrap();
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert_eq!(names(&d), ["elsewhere.json", "report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
