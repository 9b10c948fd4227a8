//! The sampling state machine a live loop runs. It holds no probes: the loop asks
//! [`Sampler::step`] what to do, does it, and reports back with the [`Edge`] it read (the
//! target's CPU clock and the probe counters) right after opening a window's gate or right before
//! closing it. It plans the duty cycle, charges every window, gap and margin to the estimator,
//! and says what the observed counts stand for at any moment ([`Sampler::extrapolation`]).
//! Exact mode never closes its window and extrapolates nothing. While a window may stay open
//! (the probes cost less than the budget), it is marked every `MARK_EVERY` instead: its gate
//! closes for a moment (so that its records can all be taken in, however fast the target
//! writes) and opens again; the estimator and the duty cycle see the load, and a rising load
//! closes it.
use std::time::{Duration, Instant};

use super::duty::{DutyCycle, MAX_OFF};
use super::estimate::{Clock, CostFactor, Estimator, Extrapolation, Open};
use super::window::{Edge, Hits, ProbeCosts, Span};
use super::Mode;

/// What the loop should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stay,
    /// Attach the probes if they are not, read an edge, open the gate: [`Sampler::opened`].
    Open,
    /// Read an edge, close the gate (then detach): [`Sampler::closed`].
    Close,
    /// Read an edge, close the gate and open it again at once, the probes staying attached:
    /// [`Sampler::marked`], [`Sampler::opened`].
    Mark,
    /// Read an edge in a gap: [`Sampler::replan`].
    Replan,
}

/// How often an open window with no end planned is marked (a load that starts is seen within
/// this), and the first time.
const MARK_EVERY: Duration = Duration::from_millis(250);
const FIRST_MARK: Duration = Duration::from_millis(100);

/// Probe time a window kept open may always spend (before the target's CPU time is known).
const MIN_SPEND_S: f64 = 5e-4;

/// A window overspends (and ends at once) past this many times its planned probe time.
const BURST: f64 = 2.0;

enum State {
    /// Since this edge; until the planned end, if any.
    Open { since: Edge, until: Option<Instant> },
    /// Detached since this edge, until it is time to open again: when the gap has repaid the
    /// window before it (`repays`: its length and probe time), planned at `planned` with the
    /// target's CPU rate known then.
    Closed {
        since: Edge,
        until: Instant,
        repays: (Duration, f64),
        planned: Instant,
    },
}

/// A window just closed: what it saw, and whether it was a census (no end planned: see
/// `estimate`'s doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClosedWindow {
    pub span: Span,
    pub census: bool,
}

pub struct Sampler {
    mode: Mode,
    costs: ProbeCosts,
    duty: DutyCycle,
    est: Estimator,
    state: State,
    /// Natural CPU seconds inside closed windows, and outside them (closed gaps).
    natural_in: f64,
    natural_out: f64,
}

impl Sampler {
    /// A sampler whose first window opened at `first` (its gate just opened).
    pub fn new(mode: Mode, overhead_percent: f64, costs: ProbeCosts, first: Edge) -> Sampler {
        Sampler {
            mode,
            costs,
            duty: DutyCycle::new(overhead_percent),
            est: Estimator::default(),
            state: State::Open {
                since: first,
                until: None,
            },
            natural_in: 0.0,
            natural_out: 0.0,
        }
    }

    /// The cost factor in place so far.
    fn factor(&self, open: Option<&Span>) -> CostFactor {
        CostFactor::of(&self.est.window_time(open), &self.costs)
    }

    /// Probe time the open window spent up to `hits` (at the cost factor in place).
    fn spent_in_window(&self, since: &Edge, hits: &Hits) -> f64 {
        hits.probe_s_since(&since.hits, &self.costs) * self.factor(None).mid
    }

    /// Probe time a window kept open (no end planned) opened at `since` may spend by `now`.
    fn census_allowance(&self, since: &Edge, now: Instant) -> f64 {
        // A window kept open while the probes cost less than the budget ends as soon as a load
        // that starts has spent what a gap of MAX_OFF repays: not at the next mark, which would
        // put the budget in debt for many seconds of gaps (and leave the estimates few windows).
        let repaid = now.saturating_duration_since(since.at) + MAX_OFF;
        self.duty.allowed_probe_s(repaid).max(MIN_SPEND_S)
    }

    /// Probe time a planned window may spend before it ends early (a burst).
    fn burst_allowance(&self) -> f64 {
        let planned = self.duty.planned_probe_s().unwrap_or(f64::INFINITY);
        BURST * planned.max(1e-4)
    }

    /// What to do at `now`, with `hits` probe hits so far (the probes' counters: the records
    /// taken in may lag behind a fast writer).
    pub fn step(&self, now: Instant, hits: &Hits) -> Step {
        if self.mode == Mode::Exact {
            return Step::Stay;
        }
        match &self.state {
            State::Open { since, until } => {
                let plan = self.duty.plan();
                let spent = self.spent_in_window(since, hits);
                let Some(until) = until else {
                    if spent > self.census_allowance(since, now) {
                        return Step::Close;
                    }
                    // The first mark comes soon: a target the probes load heavily must not pay
                    // for a whole second of them before the plan knows.
                    let every = if self.est.windows() == 0 {
                        FIRST_MARK
                    } else {
                        MARK_EVERY
                    };
                    return match plan {
                        Some(_) => Step::Close,
                        None if now >= since.at + every => Step::Mark,
                        None => Step::Stay,
                    };
                };
                // A burst can spend the window's budget early: end it at once then.
                if now >= *until || spent > self.burst_allowance() {
                    Step::Close
                } else {
                    Step::Stay
                }
            }
            State::Closed { until, .. } if now >= *until => Step::Open,
            // A long gap is planned again with the CPU rate it measured: a target that got busier
            // since (a load that just started) repays sooner.
            State::Closed { planned, .. } if now >= *planned + MAX_OFF => Step::Replan,
            State::Closed { .. } => Step::Stay,
        }
    }

    /// While a window is open in budget mode: how many more probe hits it may take at `now`
    /// before the loop must look whether to close it (`None`: no window open, or exact mode).
    /// A window with no end planned may spend what a gap of `MAX_OFF` repays; a planned one
    /// `BURST` times its planned probe time. Each hit is taken as the dearest kind there is: a
    /// single-stepped RET where `sync_rets` are probed. (Planned windows had no alarm: the loop
    /// looked every 20 ms, and a sync.Map loop's 20 ms window, planned at 2.5 ms of probes by
    /// a rate its census window diluted, spent 16 ms, the budget of 50 s of its CPU time.)
    pub fn hits_left(&self, now: Instant, hits: &Hits, sync_rets: bool) -> Option<u64> {
        let State::Open { since, until } = &self.state else {
            return None;
        };
        if self.mode == Mode::Exact {
            return None;
        }
        let allowance = match until {
            None => self.census_allowance(since, now),
            Some(_) => self.burst_allowance(),
        };
        let left = allowance - self.spent_in_window(since, hits);
        let per_hit_s = match sync_rets {
            true => self.costs.write_s.max(self.costs.ret_s),
            false => self.costs.write_s,
        };
        let per_hit = per_hit_s * self.factor(None).mid;
        Some(if left <= 0.0 || per_hit <= 0.0 {
            1
        } else {
            (left / per_hit).ceil().min(u64::MAX as f64) as u64
        })
    }

    /// The window's gate just opened, at `edge` (the probes attached before it).
    pub fn opened(&mut self, edge: Edge) {
        if let State::Closed { since, repays, .. } = &self.state {
            let gap = Span::between(since, &edge, &self.costs);
            // A detached gap's hits are its edges' (a mark's moment keeps the probes on).
            if !repays.0.is_zero() {
                self.duty.cycle_edges(self.factor(None).mid * gap.probe_s);
            }
            let x = gap.natural_cpu_s(self.factor(None).mid);
            self.natural_out += x.max(0.0);
            self.duty.natural(x, gap.wall_s);
            self.est.add_gap(&gap);
        }
        let until = self.duty.plan().map(|(on, _)| edge.at + on);
        self.state = State::Open { since: edge, until };
    }

    /// Ends the window at `edge` (read just before its gate closed) and records it; returns it
    /// (for per-map observations).
    fn end_window(&mut self, edge: &Edge) -> ClosedWindow {
        let State::Open { since, until } = &self.state else {
            return ClosedWindow::default();
        };
        let census = until.is_none();
        let w = Span::between(since, edge, &self.costs);
        let m = self.factor(Some(&w)).mid;
        let x = w.natural_cpu_s(m);
        self.natural_in += x.max(0.0);
        self.duty.window(m * w.probe_s, w.wall_s);
        // A window's natural CPU is the difference of two near numbers when probes take most of
        // it: the gaps tell the natural rate then (until the first gap, its CPU time stands in).
        if w.probe_s * m < 0.5 * w.cpu_s {
            self.duty.natural(x, w.wall_s);
        } else if !self.duty.knows_natural() {
            self.duty.natural(w.cpu_s, w.wall_s);
        }
        self.est.close_window(&w, census);
        ClosedWindow { span: w, census }
    }

    /// The gate is about to close at `edge`; the probes are detached next.
    pub fn closed(&mut self, edge: Edge) -> ClosedWindow {
        let closed = self.end_window(&edge);
        let w = &closed.span;
        let m = self.factor(None).mid;
        let off = self
            .duty
            .gap_after(Duration::from_secs_f64(w.wall_s), m * w.probe_s);
        let off = match self.duty.plan() {
            Some((_, planned)) => off.max(planned),
            None => off,
        };
        self.state = State::Closed {
            since: edge,
            until: edge.at + off,
            repays: (Duration::from_secs_f64(w.wall_s), m * w.probe_s),
            planned: edge.at,
        };
        closed
    }

    /// The gap so far, read at `edge`: its end planned again with the target's CPU rate in it.
    pub fn replan(&mut self, edge: &Edge) {
        let m = self.factor(None).mid;
        let State::Closed {
            since,
            until,
            repays,
            planned,
        } = &mut self.state
        else {
            return;
        };
        let gap = Span::between(since, edge, &self.costs);
        self.duty.natural(gap.natural_cpu_s(m), gap.wall_s);
        *until = since.at + self.duty.gap_after(repays.0, repays.1);
        *planned = edge.at;
    }

    /// The open window was marked at `edge` (read just before its gate closed for a moment, the
    /// probes staying attached): the window ends here, and the next opens at once ([`opened`]),
    /// the moment between them a gap whose probe hits cost.
    ///
    /// [`opened`]: Sampler::opened
    pub fn marked(&mut self, edge: Edge) -> ClosedWindow {
        let w = self.end_window(&edge);
        self.state = State::Closed {
            since: edge,
            until: edge.at,
            repays: (Duration::ZERO, 0.0),
            planned: edge.at,
        };
        w
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Whether a window is open with no end planned (exact mode, or a target the budget allows
    /// to be watched all the time): nothing is due but its marks.
    pub fn open_ended(&self) -> bool {
        matches!(self.state, State::Open { until: None, .. })
    }

    /// What observed counts stand for at `now` (an edge read now).
    pub fn extrapolation(&self, now: &Edge) -> Extrapolation {
        if self.mode == Mode::Exact {
            return Extrapolation::EXACT;
        }
        match &self.state {
            State::Open { since, until } => {
                let open = Span::between(since, now, &self.costs);
                let open = match until {
                    Some(_) => Open::Planned(&open),
                    None => Open::Census(&open),
                };
                self.est.extrapolation(Some(open), None, &self.costs)
            }
            State::Closed { since, .. } => {
                let gap = Span::between(since, now, &self.costs);
                self.est.extrapolation(None, Some(&gap), &self.costs)
            }
        }
    }

    /// The target's progress so far by each clock ([`Clock::index`]): observed (in windows) and
    /// in all.
    pub fn progress(&self, now: &Edge) -> [(f64, f64); 3] {
        let m = self.factor(None).mid;
        let (since, open) = match &self.state {
            State::Open { since, .. } => (since, true),
            State::Closed { since, .. } => (since, false),
        };
        let s = Span::between(since, now, &self.costs);
        let x = s.natural_cpu_s(m).max(0.0);
        let observed = self.natural_in + if open { x } else { 0.0 };
        let natural = (observed, self.natural_in + self.natural_out + x);
        let (w, g) = if open {
            (Some(&s), None)
        } else {
            (None, Some(&s))
        };
        let [io_bytes, wakeups] = self.est.event_ticks(w, g);
        let mut by_clock = [(0.0, 0.0); 3];
        by_clock[Clock::IoBytes.index()] = io_bytes;
        by_clock[Clock::Wakeups.index()] = wakeups;
        by_clock[Clock::NaturalCpu.index()] = natural;
        by_clock
    }

    /// Estimated slowdown of the target, in percent.
    pub fn overhead_percent(&self) -> f64 {
        match self.mode {
            Mode::Exact => 0.0,
            Mode::Budget => self.duty.estimated_overhead() * 100.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write probe costs 1 µs, a RET 10 µs.
    fn costs() -> ProbeCosts {
        ProbeCosts {
            write_s: 1e-6,
            grow_s: 1e-6,
            ret_s: 10e-6,
            program_s: 0.0,
            write_single_stepped: false,
        }
    }

    fn edge(at: Instant, write: u64, sync_ret: u64) -> Edge {
        Edge {
            at,
            cpu_s: 0.0,
            hits: Hits {
                write,
                sync_ret,
                ..Hits::default()
            },
            program_s: 0.0,
            program_runs: 0,
            writes: 0,
            syscalls: 0,
            io_bytes: 0,
            wakeups: 0,
        }
    }

    #[test]
    fn a_kept_open_window_closes_right_after_the_hits_its_alarm_allows() {
        let costs = costs();
        let t0 = Instant::now();
        let s = Sampler::new(Mode::Budget, 1.0, costs, edge(t0, 100, 0));
        let now = t0 + Duration::from_millis(10);
        let hits = |write: u64, sync_ret: u64| edge(now, 100 + write, sync_ret).hits;

        // Write hits only: the alarm's count is exactly what the window may still spend.
        let left = s.hits_left(now, &hits(0, 0), false).unwrap();
        assert!(left > 1, "{left}");
        assert_ne!(s.step(now, &hits(left - 1, 0)), Step::Close);
        assert_eq!(s.step(now, &hits(left + 1, 0)), Step::Close);

        // With sync.Map RETs probed, every hit counts as one: the alarm rings no later than a
        // window made only of RETs must close.
        let rets = s.hits_left(now, &hits(0, 0), true).unwrap();
        assert!(rets < left, "{rets} {left}");
        assert_eq!(s.step(now, &hits(rets + 1, rets + 1)), Step::Close);
        assert_ne!(s.step(now, &hits(rets - 1, rets - 1)), Step::Close);

        // Spent already: one more hit rings it.
        assert_eq!(s.hits_left(now, &hits(10 * left, 0), false), Some(1));
        // Exact mode has no alarm.
        let exact = Sampler::new(Mode::Exact, 1.0, costs, edge(t0, 0, 0));
        assert_eq!(exact.hits_left(now, &hits(0, 0), false), None);
    }

    #[test]
    fn a_planned_window_closes_right_after_the_hits_its_burst_allows() {
        let costs = costs();
        let t0 = Instant::now();
        // A target on one core whose census window took 50,000 write hits in 100 ms (50 ms of
        // probes): it closes, and the gap repays it.
        let at = |t: Duration, write: u64| Edge {
            cpu_s: t.as_secs_f64(),
            ..edge(t0 + t, write, 0)
        };
        let mut s = Sampler::new(Mode::Budget, 1.0, costs, at(Duration::ZERO, 0));
        let census_end = at(Duration::from_millis(100), 50_000);
        assert_eq!(s.step(census_end.at, &census_end.hits), Step::Close);
        s.closed(census_end);
        let mut t = Duration::from_millis(100);
        let opened = loop {
            t += Duration::from_millis(1);
            assert!(t < Duration::from_secs(60), "the gap never ended");
            let e = at(t, 50_000);
            match s.step(e.at, &e.hits) {
                Step::Replan => s.replan(&e),
                Step::Open => {
                    s.opened(e);
                    break e;
                }
                _ => {}
            }
        };
        assert!(s.is_open() && !s.open_ended(), "a planned window");
        let left = s.hits_left(opened.at, &opened.hits, false).unwrap();
        let hits = |n: u64| at(t, 50_000 + n).hits;
        assert!(left > 1, "{left}");
        assert_eq!(s.step(opened.at, &hits(left - 1)), Step::Stay);
        assert_eq!(s.step(opened.at, &hits(left + 1)), Step::Close);
    }
}
