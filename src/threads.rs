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
//!
//! The flow workers of an offline run are also pinned one to a CPU while they read
//! ([`pin_worker`]) when they are as many as the CPUs.

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
        if current_cpu() != Some(parent) {
            return;
        }
        let Some(all) = affinity::get() else {
            return;
        };
        let others = affinity::without(&all, parent);
        if affinity::members(&others).next().is_none() {
            return;
        }
        if affinity::set(&others) {
            affinity::set(&all);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

/// Keeps the calling thread on one CPU until dropped, then gives it back the
/// affinity it had (see [`pin_worker`]).
pub struct Pinned {
    #[cfg(target_os = "linux")]
    before: Option<libc::cpu_set_t>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(before) = self.before.take() {
            affinity::set(&before);
        }
    }
}

/// Pin worker `n` of `workers` (the calling thread) to the `n`-th CPU it may run
/// on, when there are two workers or more and exactly as many such CPUs; otherwise
/// (or off Linux, or when a call fails) nothing changes. The guard restores the
/// affinity.
///
/// Workers that hand chunks to each other wake each other all the time, and Linux
/// tends to queue the woken thread on its waker's CPU: on the 2-vCPU VMs measured,
/// the two flow workers were seen sharing one CPU for milliseconds while the other
/// idled (`perf sched timehist`: a worker runnable for 3.3 ms beside an idle CPU).
/// When the workers are as many as the CPUs, each has one of its own anyway, so
/// pinning takes no choice away from the scheduler. 200 MB benchmark capture, 2
/// threads, medians of 30 alternating runs: packets phase 27 -> 25 ms (75th
/// percentile 30 -> 27 ms); the main and handshake captures were level.
pub fn pin_worker(n: usize, workers: usize) -> Pinned {
    #[cfg(target_os = "linux")]
    {
        let unpinned = Pinned { before: None };
        if workers < 2 || n >= workers {
            return unpinned;
        }
        let Some(all) = affinity::get() else {
            return unpinned;
        };
        let mut members = affinity::members(&all);
        if members.clone().count() != workers {
            return unpinned;
        }
        let Some(cpu) = members.nth(n) else {
            return unpinned;
        };
        if !affinity::set(&affinity::only(cpu)) {
            return unpinned;
        }
        Pinned { before: Some(all) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (n, workers);
        Pinned {}
    }
}

/// The CPUs the calling thread may run on (its affinity set), in increasing order;
/// None where the system does not say.
pub fn cpus() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        affinity::get().map(|set| affinity::members(&set).collect())
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The calling thread's CPU affinity set (sched_getaffinity(2) and the CPU_* macros),
/// behind safe functions.
#[cfg(target_os = "linux")]
mod affinity {
    pub(super) type Set = libc::cpu_set_t;

    const SIZE: usize = std::mem::size_of::<Set>();

    /// The calling thread's set, if the system says.
    pub(super) fn get() -> Option<Set> {
        // SAFETY: cpu_set_t is plain data (all-zero is the empty set); the call gets
        // its true size and only writes it.
        unsafe {
            let mut set: Set = std::mem::zeroed();
            (libc::sched_getaffinity(0, SIZE, &mut set) == 0).then_some(set)
        }
    }

    /// Make `set` the calling thread's; false when the system refuses.
    pub(super) fn set(set: &Set) -> bool {
        // SAFETY: the call reads `set` (of its true size) and changes only the
        // calling thread's affinity.
        unsafe { libc::sched_setaffinity(0, SIZE, set) == 0 }
    }

    /// The CPUs of `set`, in increasing order.
    pub(super) fn members(set: &Set) -> impl Iterator<Item = usize> + Clone + '_ {
        // SAFETY: CPU_ISSET only reads the set, for c below CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize).filter(move |&c| unsafe { libc::CPU_ISSET(c, set) })
    }

    /// `set` without CPU `cpu`.
    pub(super) fn without(set: &Set, cpu: usize) -> Set {
        let mut rest = *set;
        if cpu < libc::CPU_SETSIZE as usize {
            // SAFETY: CPU_CLR only writes the set (it would index past it for CPUs
            // beyond CPU_SETSIZE, hence the check).
            unsafe { libc::CPU_CLR(cpu, &mut rest) };
        }
        rest
    }

    /// The set of CPU `cpu` alone (empty for a CPU beyond CPU_SETSIZE).
    pub(super) fn only(cpu: usize) -> Set {
        // SAFETY: all-zero is the empty set; CPU_SET only writes the set, for a CPU
        // below CPU_SETSIZE (checked: it would index past it otherwise).
        unsafe {
            let mut one: Set = std::mem::zeroed();
            if cpu < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut one);
            }
            one
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn affinity() -> Vec<usize> {
        cpus().expect("sched_getaffinity")
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
    fn workers_as_many_as_the_cpus_are_pinned_one_each_then_restored() {
        let before = affinity();
        let cpus = before.len();
        if cpus < 2 {
            return; // nothing to pin on one CPU
        }
        for n in 0..cpus {
            let pinned = pin_worker(n, cpus);
            assert_eq!(affinity(), vec![before[n]], "worker {n}");
            drop(pinned);
            assert_eq!(affinity(), before);
        }
        // Fewer or more workers than CPUs, one worker, or a worker out of range:
        // the scheduler keeps its choice.
        for (n, workers) in [(0, cpus - 1), (0, cpus + 1), (0, 1), (cpus, cpus)] {
            let _kept = pin_worker(n, workers);
            assert_eq!(affinity(), before, "worker {n} of {workers}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn cpu_sets_take_any_cpu_number() {
        let all = affinity::get().unwrap();
        let members = |s: &affinity::Set| affinity::members(s).collect::<Vec<_>>();
        let first = members(&all)[0];
        assert!(!members(&affinity::without(&all, first)).contains(&first));
        assert_eq!(members(&affinity::only(first)), [first]);
        // CPU numbers past the set's capacity are not in it (and do not panic).
        let past = libc::CPU_SETSIZE as usize + 3;
        assert_eq!(members(&affinity::without(&all, past)), members(&all));
        assert!(members(&affinity::only(past)).is_empty());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn leaving_a_cpu_restores_the_affinity() {
        let before = affinity();
        leave_cpu(current_cpu());
        assert_eq!(affinity(), before);
    }
}
