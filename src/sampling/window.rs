//! A budget window's observations: per thread, its writes and the kernel times of its first and
//! last write (how long the probes were really live, and how much a closed-loop writer was
//! slowed by them).
use std::collections::HashMap;
use std::time::Duration;

/// One thread's writes in a budget window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWrites {
    pub writes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl ThreadWrites {
    /// Kernel times of the first and last of these writes (`None` without timestamps).
    pub fn span<'a>(threads: impl IntoIterator<Item = &'a ThreadWrites>) -> Option<(u64, u64)> {
        threads
            .into_iter()
            .filter(|t| t.first_ns != 0)
            .map(|t| (t.first_ns, t.last_ns))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

/// Threads told apart per window; the rest count under thread 0.
const MAX_THREADS: usize = 4096;

/// Per thread, the writes seen since the last [`WindowWrites::take`].
#[derive(Default)]
pub struct WindowWrites {
    threads: HashMap<u32, ThreadWrites>,
}

impl WindowWrites {
    /// One write of thread `tid` at kernel time `ts_ns` (0 without timestamps).
    pub fn observe(&mut self, tid: u32, ts_ns: u64) {
        let tid = if self.threads.len() < MAX_THREADS || self.threads.contains_key(&tid) {
            tid
        } else {
            0
        };
        let t = self.threads.entry(tid).or_insert(ThreadWrites {
            writes: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
        });
        t.writes += 1;
        t.last_ns = ts_ns;
    }

    /// The writes per thread seen since the last call.
    pub fn take(&mut self) -> HashMap<u32, ThreadWrites> {
        std::mem::take(&mut self.threads)
    }
}

/// When a window's probes were really live, on the kernel clock: (start, length). Breakpoints go
/// in somewhere inside the attach call and come out somewhere inside the detach call (tens of
/// ms here), which is long next to a window of 25 ms. The writes' own kernel timestamps narrow
/// it down: a write seen before the attach call returned proves the probes were live then, and
/// likewise at the end; without such evidence the window is the part surely live.
pub fn active_window(
    attach: (u64, u64),
    detach: (u64, u64),
    writes: Option<(u64, u64)>,
) -> (u64, Duration) {
    let (start, end) = match writes {
        Some((first, last)) => (
            first.clamp(attach.0, attach.1),
            last.clamp(detach.0, detach.1),
        ),
        None => (attach.1, detach.0),
    };
    (
        start,
        Duration::from_nanos(end.saturating_sub(start).max(1_000)),
    )
}

#[cfg(test)]
mod tests {
    use super::ThreadWrites;

    #[test]
    fn the_span_of_a_window_runs_from_the_first_to_the_last_write_of_any_thread() {
        let t = |first_ns, last_ns| ThreadWrites {
            writes: 2,
            first_ns,
            last_ns,
        };
        assert_eq!(ThreadWrites::span(&[t(30, 90), t(10, 50)]), Some((10, 90)));
        // Without timestamps (exact mode) there is no span.
        assert_eq!(ThreadWrites::span(&[t(0, 0)]), None);
        assert_eq!(ThreadWrites::span(&[]), None);
    }
}
