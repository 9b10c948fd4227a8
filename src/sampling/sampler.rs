//! The sampling state machine a live loop runs: when to attach and detach the probes (the duty
//! cycle within the overhead budget, a window ended early by a burst, the gap that repays a
//! window's probe time), and what the writes observed so far stand for (coverage and bias of
//! the estimates). It holds no probes: the loop asks [`Sampler::step`] what to do, does it, and
//! reports back with the kernel-clock bounds of the attach or detach call and the window's
//! per-thread writes. Exact mode never detaches.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::duty::{gap_to_repay, DutyCycle, MIN_ON, PERIOD};
use super::estimate::{closed_loop_factor, settle, ClosedWindow, Estimate};
use super::window::active_window;
use super::{Mode, ThreadWrites};

/// What the loop should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stay,
    Attach,
    Detach,
}

/// How much of the target's writes were observed, as the estimates see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coverage {
    /// Observed ÷ estimated writes (1.0 in exact mode).
    pub fraction: f64,
    /// What the estimator cannot tell, as a fraction of each estimate (closed-loop writers).
    pub bias: f64,
}

impl Coverage {
    pub const EXACT: Coverage = Coverage {
        fraction: 1.0,
        bias: 0.0,
    };
}

pub struct Sampler {
    mode: Mode,
    /// Allowed slowdown, in percent.
    overhead: f64,
    /// Seconds one probed write costs the target.
    cost_s: f64,
    duty: DutyCycle,
    attached: bool,
    started: Instant,
    /// The window being measured (or the gap): when it started and when it is due to end.
    window_start: Instant,
    window_end: Instant,
    /// When the current window's probes went in (kernel clock, before and after the attach).
    attach_bounds: (u64, u64),
    /// Attached time of the closed windows.
    attached_total: Duration,
    /// Writes observed when the last window closed.
    writes_at_window: u64,
    /// The window closed last, waiting for its gap to end.
    pending: Option<ClosedWindow>,
    /// Estimated writes of the settled windows.
    settled: Estimate,
    last_closed_loop: f64,
    /// What the open window stands for: its cycle over its attached part.
    window_scale: f64,
    planned_cycle: Duration,
}

impl Sampler {
    /// A sampler whose probes went in between the kernel times `attach_bounds`, `started` being
    /// just after. `cost_s` is the calibrated cost of one probed write (unused in exact mode).
    pub fn new(
        mode: Mode,
        overhead_percent: f64,
        cost_s: f64,
        attach_bounds: (u64, u64),
        started: Instant,
    ) -> Sampler {
        Sampler {
            mode,
            overhead: overhead_percent,
            cost_s,
            duty: DutyCycle::new(overhead_percent, cost_s),
            attached: true,
            started,
            window_start: started,
            window_end: started + MIN_ON.max(Duration::from_millis(100)),
            attach_bounds,
            attached_total: Duration::ZERO,
            writes_at_window: 0,
            pending: None,
            settled: Estimate::default(),
            last_closed_loop: 1.0,
            window_scale: 1.0,
            planned_cycle: PERIOD,
        }
    }

    /// What to do at `now`, with `writes` observed since the start.
    pub fn step(&self, now: Instant, writes: u64) -> Step {
        if self.mode == Mode::Exact {
            return Step::Stay;
        }
        if self.attached {
            // A burst can spend the whole cycle's budget early: end the window at once then.
            let spent = writes.saturating_sub(self.writes_at_window) as f64 * self.cost_s;
            let burst = spent >= self.overhead / 100.0 * self.planned_cycle.as_secs_f64();
            if now >= self.window_end || burst {
                return Step::Detach;
            }
        } else if now >= self.window_end {
            return Step::Attach;
        }
        Step::Stay
    }

    /// The probes came out between the kernel times `detach` (the step decided at `now`);
    /// `writes` observed since the start, `threads` the window's writes per thread.
    pub fn detached(
        &mut self,
        now: Instant,
        detach: (u64, u64),
        writes: u64,
        threads: HashMap<u32, ThreadWrites>,
    ) {
        let (active_start, on) = active_window(
            self.attach_bounds,
            detach,
            ThreadWrites::span(threads.values()),
        );
        self.attached_total += on;
        let window_writes = writes - self.writes_at_window;
        self.duty.observe(window_writes, on);
        self.last_closed_loop =
            closed_loop_factor(threads.into_values(), on.as_secs_f64(), self.cost_s);
        let (next_on, off) = self.duty.plan();
        let off = off.max(gap_to_repay(
            window_writes,
            self.cost_s,
            self.overhead,
            now - self.window_start,
        ));
        // Horvitz–Thompson: this window stands for itself and the gap after it, for as long as
        // that gap really lasts (settled when the next window starts).
        self.pending = Some(ClosedWindow {
            start_ns: active_start,
            on,
            writes: window_writes,
            closed_loop: self.last_closed_loop,
        });
        // Records that arrive late (consumed during the gap) count for the next window.
        self.writes_at_window = writes;
        self.window_scale = (next_on + off).as_secs_f64() / next_on.as_secs_f64().max(1e-9);
        self.planned_cycle = next_on + off;
        // With no gap, the next window starts at once.
        self.window_end = now + off;
        self.attached = false;
    }

    /// The probes went in between the kernel times `attach`; `now` just after.
    pub fn attached(&mut self, attach: (u64, u64), now: Instant) {
        self.attach_bounds = attach;
        settle(&mut self.pending, &mut self.settled, attach.1);
        self.window_start = now;
        self.window_end = now + self.duty.plan().0;
        self.attached = true;
    }

    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Time the probes were attached since the start.
    pub fn attached_time(&self, now: Instant) -> Duration {
        self.attached_total
            + if self.attached {
                now - self.window_start
            } else {
                Duration::ZERO
            }
    }

    /// What `writes` observed so far stand for at `now` (`now_ns` on the kernel clock); `done`
    /// when the trace ends now (then the open window stands for itself only).
    pub fn coverage(&self, writes: u64, now: Instant, now_ns: u64, done: bool) -> Coverage {
        if self.mode == Mode::Exact {
            return Coverage::EXACT;
        }
        // The open window stands for the gap planned after it, unless the trace ends now.
        let mut total = self.settled;
        if self.attached {
            let scale = if done { 1.0 } else { self.window_scale };
            let open = writes.saturating_sub(self.writes_at_window) as f64 * scale;
            total.add(open, self.last_closed_loop);
        }
        let mut provisional = self.pending;
        settle(&mut provisional, &mut total, now_ns);
        if writes > 0 && total.mid > 0.0 {
            Coverage {
                fraction: (writes as f64 / total.mid).clamp(1e-6, 1.0),
                bias: total.spread / total.mid,
            }
        } else {
            // Before any write: the attached-time fraction.
            let elapsed = (now - self.started).as_secs_f64().max(1e-9);
            let c = self.attached_time(now).as_secs_f64() / elapsed;
            Coverage {
                fraction: c.clamp(1e-6, 1.0),
                bias: 0.0,
            }
        }
    }

    /// Estimated slowdown of the target, in percent.
    pub fn overhead_percent(&self) -> f64 {
        self.duty.estimated_overhead() * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn threads(writes: u64, first_ns: u64, last_ns: u64) -> HashMap<u32, ThreadWrites> {
        HashMap::from([(
            1,
            ThreadWrites {
                writes,
                first_ns,
                last_ns,
            },
        )])
    }

    #[test]
    fn exact_mode_stays_attached_and_covers_everything() {
        let t0 = Instant::now();
        let s = Sampler::new(Mode::Exact, 1.0, 1e-6, (0, 0), t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(s.step(later, 1_000_000_000), Step::Stay);
        assert_eq!(s.coverage(5, later, 0, false), Coverage::EXACT);
        assert_eq!(s.attached_time(later), Duration::from_secs(60));
    }

    #[test]
    fn a_budget_cycle_detaches_then_attaches_and_estimates_from_the_window() {
        let t0 = Instant::now();
        // 1 µs per write at a 1 % budget.
        let mut s = Sampler::new(Mode::Budget, 1.0, 1e-6, (0, MS), t0);
        assert_eq!(s.step(t0 + Duration::from_millis(50), 100), Step::Stay);
        // The first window ends after 100 ms.
        let end = t0 + Duration::from_millis(100);
        assert_eq!(s.step(end, 1000), Step::Detach);
        // 100k writes/s seen: 10 % of the time in probes unsampled, so cover a tenth.
        s.detached(
            end,
            (100 * MS, 101 * MS),
            10_000,
            threads(10_000, MS, 100 * MS),
        );
        assert!(!s.is_attached());
        assert_eq!(s.step(end + Duration::from_millis(1), 10_000), Step::Stay);
        let gap_end = end + Duration::from_secs(1);
        assert_eq!(s.step(gap_end, 10_000), Step::Attach);
        s.attached(((1100) * MS, 1101 * MS), gap_end);
        // The window stood for itself and its gap: 10k writes live for 99 ms (first to last
        // write), then the gap until 1101 ms; a closed-loop writer spent 10 % of it in probes.
        let c = s.coverage(10_000, gap_end, 1101 * MS, false);
        let unaffected = 10_000.0 * (1101.0 - 1.0) / 99.0;
        let slowed = 1.0 / (1.0 - 10_000.0 / 0.099 * 1e-6);
        let expected = unaffected * (1.0 + slowed) / 2.0;
        assert!(
            (10_000.0 / c.fraction - expected).abs() / expected < 0.01,
            "coverage {c:?}"
        );
        let bias = (slowed - 1.0) / (slowed + 1.0);
        assert!((c.bias - bias).abs() < 0.001, "{c:?}");
        assert!(s.overhead_percent() > 0.0 && s.overhead_percent() <= 1.0 + 1e-9);
    }

    #[test]
    fn a_burst_ends_the_window_early() {
        let t0 = Instant::now();
        let s = Sampler::new(Mode::Budget, 1.0, 1e-3, (0, 0), t0);
        // 1 ms per write: ten writes spend the 1 s cycle's 10 ms budget.
        assert_eq!(s.step(t0 + Duration::from_millis(1), 9), Step::Stay);
        assert_eq!(s.step(t0 + Duration::from_millis(1), 10), Step::Detach);
    }

    #[test]
    fn before_any_write_coverage_is_the_attached_time() {
        let t0 = Instant::now();
        let mut s = Sampler::new(Mode::Budget, 1.0, 1e-6, (0, 0), t0);
        let end = t0 + Duration::from_millis(100);
        s.detached(end, (100 * MS, 100 * MS), 0, HashMap::new());
        let now = t0 + Duration::from_millis(400);
        let c = s.coverage(0, now, 400 * MS, false);
        assert!((c.fraction - 0.25).abs() < 0.01, "{c:?}");
    }
}
