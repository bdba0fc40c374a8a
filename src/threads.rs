//! Starting a helper thread on a free CPU at once.
//!
//! On the 2-vCPU VMs we measure on, Linux often queues a new thread on the CPU of
//! the thread that created it, even though the other CPU is idle, and the new thread
//! then waits there for the load balancer: 0.05 to 4 ms (a scheduler tick), spread
//! evenly, in a C test that spawned a thread from a busy one 12 times.
//!
//! [`spawn_scoped`] therefore yields the CPU right after creating the thread, so that
//! a thread queued behind its creator runs now, and the new thread's first act is
//! to step off its creator's CPU if that is where it landed: it narrows its
//! affinity to the other CPUs it may use, which moves it at once, and puts its
//! affinity back as it was. In the same C test every thread ran within 0.03-0.10 ms
//! and its creator was back at work within 0.09 ms. In offline runs of the 200 MB
//! benchmark capture the second flow worker started 0.13-0.15 ms into the packets
//! phase in 10 runs out of 10, against 0.09-3.7 ms before (3 runs out of 4 over
//! 2.6 ms). The run spawns helpers three times (flow workers, the audit's threaded
//! steps, the report's formatters), each from a busy thread.

use std::thread::{Scope, ScopedJoinHandle};

/// Spawn `f` on a named scoped thread that starts on a CPU other than the caller's
/// when one is free to it (see the module documentation).
pub fn spawn_scoped<'scope, 'env, F, T>(
    scope: &'scope Scope<'scope, 'env>,
    name: String,
    f: F,
) -> std::io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    let parent = current_cpu();
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, move || {
            leave_cpu(parent);
            f()
        })?;
    yield_cpu();
    Ok(handle)
}

/// The CPU the calling thread runs on, if the system says.
fn current_cpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu has no preconditions.
        let c = unsafe { libc::sched_getcpu() };
        usize::try_from(c).ok()
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Let another thread queued on this CPU run now.
fn yield_cpu() {
    #[cfg(unix)]
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// If the calling thread runs on CPU `parent`, move it to another CPU of its
/// affinity set, then restore that set. Nothing happens when it already runs
/// elsewhere, when `parent` is its only CPU, or when the calls fail.
fn leave_cpu(parent: Option<usize>) {
    #[cfg(target_os = "linux")]
    {
        let Some(parent) = parent else {
            return;
        };
        if current_cpu() != Some(parent) || parent >= libc::CPU_SETSIZE as usize {
            return;
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: cpu_set_t is plain data (all-zero is the empty set); the calls get
        // its true size and only touch the calling thread's affinity.
        unsafe {
            let mut all: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut all) != 0 {
                return;
            }
            let mut others = all;
            libc::CPU_CLR(parent, &mut others);
            if libc::CPU_COUNT(&others) == 0 {
                return;
            }
            if libc::sched_setaffinity(0, size, &others) == 0 {
                libc::sched_setaffinity(0, size, &all);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn affinity() -> Vec<usize> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as in leave_cpu.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_helper_keeps_its_affinity_and_returns_its_result() {
        let before = affinity();
        let inside = std::thread::scope(|s| {
            let h = spawn_scoped(s, "test-helper".into(), || {
                let name = std::thread::current().name().map(str::to_string);
                (affinity(), name)
            })
            .unwrap();
            h.join().unwrap()
        });
        // Stepping off the creator's CPU is temporary: the helper ends with the
        // affinity it was given.
        assert_eq!(inside.0, before);
        assert_eq!(inside.1.as_deref(), Some("test-helper"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn leaving_a_cpu_restores_the_affinity() {
        let before = affinity();
        leave_cpu(current_cpu());
        assert_eq!(affinity(), before);
    }
}
