//! Budget mode's duty cycle: keep the target's slowdown under a budget by attaching the probes
//! only part of the time. From the write rate measured while attached and the calibrated cost of
//! one probed write, it picks the attached fraction (coverage) of each period, and adapts as
//! the rate changes. Attaching costs ~6 ms and detaching ~30–40 ms of the tracer's wall time on
//! this kernel, so windows are at least `MIN_ON` long and periods at least `PERIOD`.
use std::time::Duration;

/// Length of one attach/detach cycle at full load.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Shortest attached window worth its attach/detach cost.
pub const MIN_ON: Duration = Duration::from_millis(25);
/// Longest detached gap: hot keys must still surface within seconds.
pub const MAX_OFF: Duration = Duration::from_secs(4);

#[derive(Clone, Debug)]
pub struct DutyCycle {
    /// Allowed slowdown as a fraction (0.01 for 1 %).
    budget: f64,
    /// Seconds one probed write costs the target.
    cost_s: f64,
    /// Writes per second while attached (smoothed).
    rate: Option<f64>,
}

impl DutyCycle {
    pub fn new(overhead_percent: f64, cost_s: f64) -> Self {
        DutyCycle {
            budget: (overhead_percent / 100.0).max(0.0),
            cost_s: cost_s.max(1e-9),
            rate: None,
        }
    }

    /// Records a window: `writes` observed while attached for `attached`.
    pub fn observe(&mut self, writes: u64, attached: Duration) {
        let secs = attached.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let now = writes as f64 / secs;
        // React fast to increases (protect the target), slowly to decreases.
        self.rate = Some(match self.rate {
            Some(r) if now < r => 0.5 * r + 0.5 * now,
            _ => now,
        });
    }

    /// The attached fraction that spends exactly the budget at the measured rate (1.0 when idle).
    pub fn coverage(&self) -> f64 {
        match self.rate {
            None => MIN_ON.as_secs_f64() / PERIOD.as_secs_f64(),
            Some(r) if r * self.cost_s <= self.budget => 1.0,
            Some(r) => (self.budget / (r * self.cost_s)).clamp(0.0, 1.0),
        }
    }

    /// Estimated slowdown (fraction) of the target at this coverage and rate.
    pub fn estimated_overhead(&self) -> f64 {
        self.rate.unwrap_or(0.0) * self.cost_s * self.coverage()
    }

    /// The next window: (attached, detached) durations.
    pub fn plan(&self) -> (Duration, Duration) {
        let c = self.coverage();
        if c >= 1.0 {
            return (PERIOD, Duration::ZERO);
        }
        let on = PERIOD.mul_f64(c).max(MIN_ON);
        let off = on.mul_f64((1.0 - c) / c.max(1e-6)).min(MAX_OFF);
        (on, off)
    }

    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
}

/// The gap that must follow a window so that the probe time it cost the target (`writes` ×
/// `cost_s`) stays within the budget of the whole cycle. The rate-based plan can undershoot:
/// breakpoints go live before and die after the window the tracer measures, so the rate it sees
/// is low, most of all for a thread that does nothing but write. At most `MAX_OFF`.
pub fn gap_to_repay(writes: u64, cost_s: f64, overhead_percent: f64, on: Duration) -> Duration {
    let budget = (overhead_percent / 100.0).max(1e-6);
    let cycle = writes as f64 * cost_s / budget;
    Duration::from_secs_f64((cycle - on.as_secs_f64()).clamp(0.0, MAX_OFF.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_rates_stay_attached_and_high_rates_are_sampled_within_budget() {
        let mut d = DutyCycle::new(1.0, 2e-6);
        d.observe(1000, Duration::from_secs(1)); // 1000/s × 2 µs = 0.2 % < 1 %
        assert_eq!(d.coverage(), 1.0);
        assert_eq!(d.plan().1, Duration::ZERO);
        d.observe(1_000_000, Duration::from_secs(1)); // 1M/s × 2 µs = 200 % → 0.5 % coverage
        assert!((d.coverage() - 0.005).abs() < 1e-9);
        assert!((d.estimated_overhead() - 0.01).abs() < 1e-9);
        let (on, off) = d.plan();
        assert!(on >= MIN_ON && off <= MAX_OFF);
        assert!(on.as_secs_f64() / (on + off).as_secs_f64() <= 0.01 + 1e-9 || off == MAX_OFF);
    }

    #[test]
    fn rate_drops_are_followed_slowly_and_rises_at_once() {
        let mut d = DutyCycle::new(1.0, 1e-6);
        d.observe(100_000, Duration::from_secs(1));
        d.observe(0, Duration::from_secs(1));
        assert_eq!(d.rate(), Some(50_000.0));
        d.observe(400_000, Duration::from_secs(1));
        assert_eq!(d.rate(), Some(400_000.0));
    }

    #[test]
    fn a_window_that_spent_more_than_its_share_is_repaid_by_its_gap() {
        // 20 000 writes at 1.5 µs = 30 ms of probes: at 1 %, a 3 s cycle.
        let gap = gap_to_repay(20_000, 1.5e-6, 1.0, Duration::from_millis(40));
        assert!((gap.as_secs_f64() - 2.96).abs() < 1e-9);
        assert_eq!(
            gap_to_repay(10, 1.5e-6, 1.0, Duration::from_millis(40)),
            Duration::ZERO
        );
        assert_eq!(
            gap_to_repay(10_000_000, 1.5e-6, 1.0, Duration::from_millis(40)),
            MAX_OFF
        );
    }
}
