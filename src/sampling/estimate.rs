//! What the observed writes stand for: each closed window's writes, weighted by how long it and
//! the gap after it lasted over how long it was attached (Horvitz–Thompson), with the bias a
//! closed-loop writer slowed by the probes brings, and the sampling error's bound. This is where
//! estimates from per-window observations belong.
use std::time::Duration;

use super::ThreadWrites;

/// A budget window, closed and waiting for the gap after it to end.
#[derive(Clone, Copy)]
pub struct ClosedWindow {
    /// When its probes went live (kernel clock).
    pub start_ns: u64,
    /// How long they were live.
    pub on: Duration,
    pub writes: u64,
    /// `closed_loop_factor` of its writes.
    pub closed_loop: f64,
}

/// Estimated writes so far: the middle of the two estimates (writers unaffected by the probes,
/// writers slowed by them) and half their difference.
#[derive(Clone, Copy, Default)]
pub struct Estimate {
    pub mid: f64,
    pub spread: f64,
}

impl Estimate {
    pub fn add(&mut self, unaffected: f64, closed_loop: f64) {
        self.mid += unaffected * (1.0 + closed_loop) / 2.0;
        self.spread += unaffected * (closed_loop - 1.0) / 2.0;
    }
}

/// Adds a finished window's writes, weighted by how long it and the gap after it lasted until
/// `until_ns` (the next window's start, or now), over how long it was attached.
pub fn settle(pending: &mut Option<ClosedWindow>, total: &mut Estimate, until_ns: u64) {
    if let Some(w) = pending.take() {
        let cycle = until_ns.saturating_sub(w.start_ns) as f64 / 1e9;
        total.add(
            w.writes as f64 * cycle / w.on.as_secs_f64().max(1e-9),
            w.closed_loop,
        );
    }
}

/// How much a window's writes may understate the target's own rate. A thread that writes in a
/// closed loop (each write follows the last as soon as it returns) is slowed by the probes: it
/// spent a fraction s = rate × cost of the window in them, so unprobed it would write 1 / (1 − s)
/// times as often. A thread driven from outside (requests, timers) keeps its rate. Which kind a
/// thread is cannot be seen, so the estimate takes the middle of the two and states half the
/// difference as its bias bound. Each thread's rate is its writes over the time from its first
/// to its last write (n writes span n − 1 gaps); `on_s` stands in for a thread with one write.
/// Returns the closed-loop factor over the window's writes (≥ 1).
pub fn closed_loop_factor(
    threads: impl Iterator<Item = ThreadWrites>,
    on_s: f64,
    cost_s: f64,
) -> f64 {
    let (mut writes, mut unprobed) = (0.0, 0.0);
    for t in threads {
        let n = t.writes as f64;
        let span = if t.writes > 1 && t.last_ns > t.first_ns {
            (t.last_ns - t.first_ns) as f64 / 1e9 * n / (n - 1.0)
        } else {
            on_s
        };
        let s = (n / span.max(1e-9) * cost_s).min(0.999);
        writes += n;
        unprobed += n / (1.0 - s);
    }
    if writes > 0.0 {
        unprobed / writes
    } else {
        1.0
    }
}

/// A 3-sigma bound on the error of `observed / coverage` as an estimate of a count, for writes
/// sampled in time windows covering `coverage` of the time (binomial thinning).
pub fn error_bound(observed: f64, coverage: f64) -> f64 {
    if coverage >= 1.0 {
        return 0.0;
    }
    let c = coverage.max(1e-9);
    3.0 * ((observed.max(1.0)) * (1.0 - c)).sqrt() / c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_factor_grows_with_the_time_threads_spend_in_probes() {
        // n writes spread evenly over 1 s (n − 1 gaps of 1/n s).
        let over_1s = |n: u64| ThreadWrites {
            writes: n,
            first_ns: 0,
            last_ns: 1_000_000_000 * (n - 1) / n,
        };
        // 1000 writes in 1 s at 1 µs: 0.1 % of the time in probes.
        let light = closed_loop_factor([over_1s(1000)].into_iter(), 9.0, 1e-6);
        assert!((light - 1.0 / 0.999).abs() < 1e-9);
        // A tight loop: 800k writes/s at 1.2 µs = 96 % in probes → 25× unprobed.
        let tight = closed_loop_factor([over_1s(800_000)].into_iter(), 9.0, 1.2e-6);
        assert!((tight - 25.0).abs() < 1e-6, "{tight}");
        // The same writes spread over 8 threads: each one 12 % in probes.
        let spread = closed_loop_factor([over_1s(100_000); 8].into_iter(), 9.0, 1.2e-6);
        assert!((spread - 1.0 / 0.88).abs() < 1e-9);
        // One write: the window's length stands in for its span.
        let one = ThreadWrites {
            writes: 1,
            first_ns: 5,
            last_ns: 5,
        };
        assert!((closed_loop_factor([one].into_iter(), 1.0, 0.5) - 2.0).abs() < 1e-9);
        assert_eq!(closed_loop_factor(std::iter::empty(), 1.0, 1e-6), 1.0);
    }

    #[test]
    fn error_bound_shrinks_with_coverage() {
        assert_eq!(error_bound(100.0, 1.0), 0.0);
        assert!(error_bound(100.0, 0.5) < error_bound(100.0, 0.1));
    }
}
