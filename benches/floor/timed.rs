//! timed: runs one command and prints how long it took, for `benches/compare.sh`.
//!
//!   timed RESULT STDOUT STDERR -- CMD [ARG...]
//!
//! Writes one line to RESULT: `WALL USER SYS MAXRSS_KB EXIT`, wall time from the
//! monotonic clock read just before the child is started and just after wait4(2)
//! returns, user and system CPU time and peak RSS from wait4(2)'s rusage of that
//! child alone.
//!
//! The script used to take the wall time with `date +%s%N` around `/usr/bin/time`;
//! the second `date` and `time`'s own fork and exec were inside the interval, about
//! 2.8 ms a run (timing `true`), which is nothing on a 0.3 s run but 6-8% of the
//! 200 MB capture's and a quarter of `cat`'s on it. Here only the spawn of the
//! measured program itself is inside the interval (about 0.5 ms for `true`), as it
//! is for a user running it. Peak RSS is as `time` reports it: the child's largest
//! resident set, which before exec is this small process's own (2-3 MB).

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 || args[3] != "--" {
        eprintln!("usage: timed RESULT STDOUT STDERR -- CMD [ARG...]");
        return ExitCode::from(2);
    }
    let open = |p: &str| match File::create(p) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("timed: {p}: {e}");
            std::process::exit(2);
        }
    };
    let (out, err) = (open(&args[1]), open(&args[2]));
    let mut cmd = Command::new(&args[4]);
    cmd.args(&args[5..])
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let t0 = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("timed: {}: {e}", args[4]);
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, filled in by wait4 for the child we started.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: waits for our own child; status and ru are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = t0.elapsed().as_secs_f64();
    if r != pid {
        eprintln!("timed: wait4: {}", std::io::Error::last_os_error());
        return ExitCode::from(2);
    }
    // Reaped above; dropping a `Child` neither waits nor signals.
    drop(child);
    let st = std::process::ExitStatus::from_raw(status);
    let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let line = format!(
        "{wall:.6} {:.6} {:.6} {} {code}\n",
        secs(ru.ru_utime),
        secs(ru.ru_stime),
        ru.ru_maxrss
    );
    if let Err(e) = std::fs::write(&args[0], line) {
        eprintln!("timed: {}: {e}", args[0]);
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
