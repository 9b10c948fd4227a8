//! What a live loop reads at a budget window's edges, and what one window observed. A window is
//! the time the BPF window gate was open (`window_open`: probes attached, writes recorded); its
//! edges are read right after opening and right before closing the gate, so its writes and the
//! target's CPU time between the edges belong to exactly the same span. The probe hits between
//! edges (window or not: every hit costs the target a trap) say how much of that CPU time the
//! probes took. Nothing here is per record: in-kernel counters drained at the window's close feed
//! the same observations. Its system calls and wakeups are read at the edges too: what marks
//! the target's progress without a probe in the way.
use std::time::Instant;

pub use crate::probe::calibrate::ProbeCosts;

/// Probe hits so far, by kind (the probes' counters; window open or not: every hit costs the
/// target a trap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    /// Map operations' probes (writes, deletes, clears; `sync.Map` methods' entries and RETs).
    pub write: u64,
    pub grow: u64,
    pub grow_ret: u64,
    /// ...of the write hits, `sync.Map` methods' RETs (single-stepped).
    pub sync_ret: u64,
}

impl Hits {
    /// Calibrated seconds of probe time for the hits since `earlier` (see [`Span::probe_s`]).
    pub fn probe_s_since(&self, earlier: &Hits, c: &ProbeCosts) -> f64 {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
        let sync_rets = d(self.sync_ret, earlier.sync_ret);
        (d(self.write, earlier.write) - sync_rets).max(0.0) * c.write_s
            + sync_rets * c.ret_s
            + d(self.grow, earlier.grow) * c.grow_s
            + d(self.grow_ret, earlier.grow_ret) * c.ret_s
    }
}

/// The tracer's counters and the target's CPU clock at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    pub at: Instant,
    /// The target's CPU time (all threads), seconds.
    pub cpu_s: f64,
    pub hits: Hits,
    /// Seconds the write program's body ran so far, and its runs (timed in windows only).
    pub program_s: f64,
    pub program_runs: u64,
    /// Writes recorded so far (in windows only).
    pub writes: u64,
    /// The target's read/write system calls, the bytes they moved and its voluntary context
    /// switches so far (progress clocks that no probe slows: see `estimate`).
    pub syscalls: u64,
    pub io_bytes: u64,
    pub wakeups: u64,
}

/// What happened between two edges.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Span {
    pub wall_s: f64,
    /// The target's CPU time.
    pub cpu_s: f64,
    /// The probes' time at their calibrated costs (the real one is this × the in-place factor,
    /// see `estimate::CostFactor`).
    pub probe_s: f64,
    /// The write program's timed runs and their time (windows: for the in-place factor).
    pub program_runs: u64,
    pub program_s: f64,
    /// Writes recorded.
    pub writes: u64,
    /// The target's read/write system calls, the bytes they moved and its voluntary context
    /// switches.
    pub syscalls: u64,
    pub io_bytes: u64,
    pub wakeups: u64,
}

impl Span {
    pub fn between(from: &Edge, to: &Edge, costs: &ProbeCosts) -> Span {
        Span {
            wall_s: to.at.saturating_duration_since(from.at).as_secs_f64(),
            cpu_s: (to.cpu_s - from.cpu_s).max(0.0),
            probe_s: to.hits.probe_s_since(&from.hits, costs),
            program_runs: to.program_runs.saturating_sub(from.program_runs),
            program_s: (to.program_s - from.program_s).max(0.0),
            writes: to.writes.saturating_sub(from.writes),
            syscalls: to.syscalls.saturating_sub(from.syscalls),
            io_bytes: to.io_bytes.saturating_sub(from.io_bytes),
            wakeups: to.wakeups.saturating_sub(from.wakeups),
        }
    }

    pub fn add(&mut self, o: &Span) {
        self.wall_s += o.wall_s;
        self.cpu_s += o.cpu_s;
        self.probe_s += o.probe_s;
        self.program_runs += o.program_runs;
        self.program_s += o.program_s;
        self.writes += o.writes;
        self.syscalls += o.syscalls;
        self.io_bytes += o.io_bytes;
        self.wakeups += o.wakeups;
    }

    /// The target's own CPU time in the span: its CPU time less the probes' at the in-place
    /// cost factor `factor` (negative where the factor overstates them).
    pub fn natural_cpu_s(&self, factor: f64) -> f64 {
        self.cpu_s - factor * self.probe_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_span_charges_each_kind_of_hit_its_own_cost() {
        let t0 = Instant::now();
        let costs = ProbeCosts {
            write_s: 1e-6,
            grow_s: 2e-6,
            ret_s: 10e-6,
            program_s: 0.5e-6,
            write_single_stepped: false,
        };
        let a = Edge {
            at: t0,
            cpu_s: 1.0,
            hits: Hits {
                write: 100,
                grow: 10,
                grow_ret: 1,
                sync_ret: 0,
            },
            program_s: 0.0,
            program_runs: 0,
            writes: 90,
            syscalls: 5,
            io_bytes: 500,
            wakeups: 2,
        };
        let b = Edge {
            at: t0 + Duration::from_millis(500),
            cpu_s: 1.25,
            hits: Hits {
                write: 1100,
                grow: 20,
                grow_ret: 3,
                sync_ret: 100,
            },
            program_s: 0.0005,
            program_runs: 900,
            writes: 1090,
            syscalls: 205,
            io_bytes: 40_500,
            wakeups: 102,
        };
        let s = Span::between(&a, &b, &costs);
        assert!((s.wall_s - 0.5).abs() < 1e-9);
        assert!((s.cpu_s - 0.25).abs() < 1e-12);
        // 900 writes × 1 µs + 100 sync.Map RETs × 10 µs + 10 entries × 2 µs + 2 RETs × 10 µs.
        assert!((s.probe_s - 1.94e-3).abs() < 1e-12, "{}", s.probe_s);
        assert_eq!((s.program_runs, s.writes), (900, 1000));
        assert_eq!((s.syscalls, s.io_bytes, s.wakeups), (200, 40_000, 100));
        // A clock read that went backwards (a thread's runtime folded in late) is no time.
        assert_eq!(Span::between(&b, &a, &costs).cpu_s, 0.0);
    }
}
