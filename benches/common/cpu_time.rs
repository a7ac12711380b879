//! On-CPU time of the calling thread, so benches on a shared 2-core machine
//! measure work done rather than time spent waiting for a core.

use std::time::Duration;

/// Nanoseconds this thread has run on a CPU (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_nanoseconds() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid pointer.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return None;
    }
    Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
}

/// Runs `work` `iterations` times and returns the thread CPU time it took,
/// for criterion's `iter_custom`.
#[allow(dead_code)]
pub fn cpu_time_of(iterations: u64, mut work: impl FnMut()) -> Duration {
    let start = thread_cpu_nanoseconds().unwrap_or(0);
    for _ in 0..iterations {
        work();
    }
    let end = thread_cpu_nanoseconds().unwrap_or(0);
    Duration::from_nanos(end.saturating_sub(start).max(1))
}
