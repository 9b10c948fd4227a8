//! What the observed writes stand for. Budget windows sample the target's time; the estimate is
//! a ratio estimator on a *progress clock*: something the target does at a fixed number per
//! write whether the probes slow it or not, counted in the windows and outside them,
//!
//!   estimate = observed × (clock over all time) / (clock in the windows).
//!
//! Wall time is no such clock: a closed-loop server (clients wait for each answer) or a loop
//! that never sleeps makes fewer writes per second while the probes slow it. The clocks, in the
//! order they are trusted ([`Clock`]):
//! - the **bytes** the target's read/write system calls moved (`/proc/PID/io`), where it makes
//!   such calls: a server reads each request and writes each answer, the same bytes however
//!   slow it runs. Not the calls themselves: a slowed server finds the next request waiting
//!   more often and skips a read that would have come back empty (tests/go/kvserver under
//!   `ab -c 4`: 2.36-2.45 calls per request untraced, 2.20 traced, which read 8-9 % high);
//! - its **wakeups** (voluntary context switches): a loop paced by a timer or a queue sleeps a
//!   number of times per unit of work (measured +9 % more writes per wakeup traced, a paced
//!   loop's steps grow a little longer);
//! - its **natural CPU time**, CPU time − probe hits × their cost, for a loop that neither
//!   sleeps nor calls the system. The cost is calibrated (`probe::calibrate`) and set against
//!   the write program's run time measured in place ([`CostFactor`]): the uncertainty of that
//!   factor is a bias the bound adds in full, evaluated at both ends (for a loop that spends
//!   nearly all its window time in probes it dominates, and the bound says so).
//!
//! A clock is used when the windows saw enough of it ([`MIN_CLOCK_EVENTS`], or fewer where the
//! probes may have taken all of the windows' CPU time and natural CPU time cannot say) and it
//! drives the target outside them ([`MIN_EVENTS_PER_CPU_S`]); its measured bias is added to the
//! bound in full. The sampling error comes from the windows themselves: the residuals of each
//! window's count around the ratio (cluster sampling of the timeline), as a dispersion relative
//! to Poisson thinning, never below it, with Student's t for few windows.
//!
//! Two strata: a window kept open while the probes cost less than the budget (no end planned:
//! an idle target, or one before its load starts) is a **census** of its time, its counts exact;
//! the windows the duty cycle planned sample the rest (themselves and every gap). Once a planned
//! window closed (having seen enough of its clock, see [`MIN_SAMPLE_EVENTS`]), the ratio comes
//! from planned windows alone and scales only what they and the gaps stand for; census counts
//! are added as they are. Until then the census windows are the sample, and one alone gets a
//! bound as wide as its unknown spread. (A census window that saw a program start or a load
//! begin has writes per tick unlike the steady state's: counted among the samples it skewed
//! every estimate, 15-35 % low for a paced loop under `top`.)
use super::window::{ProbeCosts, Span};

/// The natural CPU time a write takes at least: keeps a window whose CPU time the probes
/// (seemingly) took whole from standing for infinitely many writes.
const MIN_WRITE_S: f64 = 5e-9;

/// Relative error of the calibration itself (timed on this host, in this process) as a measure
/// of a hit's cost in the target: a tight loop's estimates (bench/budget_accuracy.py, where
/// probes take ~97 % of a window's CPU time and the estimate rests on the cost to a percent)
/// came out 2-10x low with 0.1, i.e. the hits cost the loop 10-20 % more than calibrated.
const CALIBRATION_ERROR: f64 = 0.25;

/// How much more a single-stepped probe hit may cost in place than in the calibration (measured
/// up to ~4× in a multi-threaded server): its factor is taken in the middle, ± this.
const SINGLE_STEP_SPREAD: f64 = 0.6;

/// How much a probe hit costs the target in place, relative to the calibration: the write
/// program's body time in place against the calibration's, applied either to the body alone
/// (additive) or to the whole cost (as if the trap slowed alike): the middle of the two, their
/// half-difference plus the calibration's own error as the uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostFactor {
    pub mid: f64,
    /// Relative uncertainty of `mid`.
    pub rel_err: f64,
}

impl CostFactor {
    /// From the windows' write hits and program time, against `costs`.
    pub fn of(windows: &Span, costs: &ProbeCosts) -> CostFactor {
        let (mut mid, mut err) = (1.0, 2.0 * CALIBRATION_ERROR);
        if windows.program_runs > 0 && windows.program_s > 0.0 && costs.program_s > 0.0 {
            let in_place = windows.program_s / windows.program_runs as f64;
            let additive = 1.0 + (in_place - costs.program_s) / costs.write_s.max(1e-12);
            let proportional = in_place / costs.program_s;
            mid = (additive + proportional) / 2.0;
            err = (proportional - additive).abs() / 2.0 / mid + CALIBRATION_ERROR;
        }
        if costs.write_single_stepped {
            err += SINGLE_STEP_SPREAD;
        }
        CostFactor {
            mid: mid.max(0.1),
            rel_err: err,
        }
    }

    /// The factor at its low and high ends.
    fn ends(&self) -> [f64; 2] {
        [
            self.mid * (1.0 - self.rel_err).max(0.0),
            self.mid * (1.0 + self.rel_err),
        ]
    }
}

/// What the target's progress is counted by (see the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    IoBytes,
    Wakeups,
    NaturalCpu,
}

impl Clock {
    /// The event clocks, in the order they are trusted.
    const EVENTS: [Clock; 2] = [Clock::IoBytes, Clock::Wakeups];

    /// How far writes per tick may differ in and out of windows (measured, see the module's
    /// doc, and doubled): added to the bound in full. Natural CPU time's, on top of the cost
    /// factor's uncertainty: a loop that spins between writes paced by the wall clock gives
    /// the probes' time to its spinning, not its writes, and it was measured 6-9 % low
    /// (tests/budget.rs, `run --mode budget` on `workload -rate`).
    fn bias(self) -> f64 {
        match self {
            Clock::IoBytes => 0.05,
            Clock::Wakeups => 0.2,
            Clock::NaturalCpu => 0.1,
        }
    }

    /// The ticks of an event clock in `s`.
    fn ticks(self, s: &Span) -> f64 {
        match self {
            Clock::IoBytes => s.io_bytes as f64,
            Clock::Wakeups => s.wakeups as f64,
            Clock::NaturalCpu => 0.0,
        }
    }

    /// The events that say whether an event clock drives the target (for bytes: the calls).
    fn events(self, s: &Span) -> f64 {
        match self {
            Clock::IoBytes => s.syscalls as f64,
            clock => clock.ticks(s),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// What it counts, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::IoBytes => "I/O bytes",
            Clock::Wakeups => "wakeups",
            Clock::NaturalCpu => "CPU time",
        }
    }
}

/// The windows must have seen at least this many events of an event clock to use it...
pub const MIN_CLOCK_EVENTS: u64 = 50;
/// ...and outside them the target must tick at least this often per second of its CPU time: a
/// target driven by its events sleeps between them (a server: 28,000 system calls per CPU
/// second; a loop paced by a timer: 51,000 wakeups), while a loop that never sleeps is woken
/// by the clock, not by its work (150 wakeups per CPU second), and runs slower in windows
/// between the same wakeups.
pub const MIN_EVENTS_PER_CPU_S: f64 = 2000.0;

/// Where the probes may have taken all of the windows' CPU time (natural CPU time cannot count),
/// an event clock is used, and planned windows are the sample, once they saw this many of its
/// events instead of [`MIN_CLOCK_EVENTS`]. (A paced sync.Map loop at 1 %, whose budget pays for
/// one 20 ms window in a few seconds: 35 wakeups in its planned window; mixed with the census
/// window in which the load began, its estimates read 2.5-5× low, outside their bounds.
/// Elsewhere planned windows with so few events, few of them, made bounds of 100× the count:
/// tests/go/kvserver under a closed-loop load.)
const MIN_SAMPLE_EVENTS: f64 = 10.0;

/// Sums over closed windows of one count (a map, or all writes) and of its products with the
/// windows' CPU time, probe time and event ticks: what the count's residuals around the ratio
/// need.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    n: f64,
    nn: f64,
    nc: f64,
    nh: f64,
    /// Σ n × ticks, per event clock.
    ne: [f64; 2],
}

impl Moments {
    /// `n` of the count in window `w`.
    pub fn add(&mut self, n: u64, w: &Span) {
        let n = n as f64;
        self.n += n;
        self.nn += n * n;
        self.nc += n * w.cpu_s;
        self.nh += n * w.probe_s;
        for (ne, clock) in self.ne.iter_mut().zip(Clock::EVENTS) {
            *ne += n * clock.ticks(w);
        }
    }
}

/// A window with less CPU time than this and no write saw an idle target: it says nothing about
/// how writes vary with CPU time, and does not count as a degree of freedom.
const IDLE_CPU_S: f64 = 1e-3;

/// Sums over closed windows of one kind: what the ratio and its residuals need.
#[derive(Clone, Debug, Default)]
struct Windows {
    count: u32,
    /// Windows that saw the target busy (see `IDLE_CPU_S`).
    busy: u32,
    /// ΣC², ΣC·H, ΣH² (C: CPU time, H: calibrated probe time).
    cc: f64,
    ch: f64,
    hh: f64,
    /// Per event clock: Σ ticks².
    ee: [f64; 2],
    span: Span,
    /// All operations, window by window.
    total: Moments,
}

impl Windows {
    fn add(&mut self, w: &Span) {
        self.count += 1;
        if w.writes > 0 || w.cpu_s >= IDLE_CPU_S {
            self.busy += 1;
        }
        self.cc += w.cpu_s * w.cpu_s;
        self.ch += w.cpu_s * w.probe_s;
        self.hh += w.probe_s * w.probe_s;
        for (ee, clock) in self.ee.iter_mut().zip(Clock::EVENTS) {
            *ee += clock.ticks(w) * clock.ticks(w);
        }
        self.span.add(w);
        self.total.add(w.writes, w);
    }
}

/// The window open now, if any, and its kind.
#[derive(Clone, Copy, Debug)]
pub enum Open<'a> {
    /// Planned by the duty cycle: a sample.
    Planned(&'a Span),
    /// No end planned: a census.
    Census(&'a Span),
}

impl<'a> Open<'a> {
    fn span(self) -> &'a Span {
        match self {
            Open::Planned(s) | Open::Census(s) => s,
        }
    }
}

/// The windows and gaps so far.
#[derive(Clone, Debug, Default)]
pub struct Estimator {
    /// Every closed window: the cost factor's evidence, and the sample until a planned window
    /// closed.
    all: Windows,
    /// Closed planned windows: the sample of all but the census.
    planned: Windows,
    /// Operations recorded in closed census windows.
    census_ops: u64,
    /// Outside windows: closed gaps, and the margins around windows (probes attached, window
    /// closed: their hits cost, their writes are not recorded).
    gaps: Span,
}

/// One count's (a map's) operations window by window, by stratum: its dispersion and the share
/// of it a census counted exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Strata {
    /// Writes in every closed window, and in planned ones.
    all: Moments,
    planned: Moments,
    /// Operations in closed census windows.
    census_ops: u64,
    /// Writes and operations when the last window closed.
    at_window: (u64, u64),
}

impl Strata {
    /// A window `w` closed with the count at `writes` writes and `ops` operations.
    pub fn close_window(&mut self, (writes, ops): (u64, u64), w: &Span, census: bool) {
        let n = writes.saturating_sub(self.at_window.0);
        self.all.add(n, w);
        if census {
            self.census_ops += ops.saturating_sub(self.at_window.1);
        } else {
            self.planned.add(n, w);
        }
        self.at_window = (writes, ops);
    }

    /// Operations a census counted, with the census window open now (at `ops`) if `x` says so.
    pub fn census_ops(&self, ops: u64, x: &Extrapolation) -> u64 {
        self.census_ops
            + if x.census_open {
                ops.saturating_sub(self.at_window.1)
            } else {
                0
            }
    }
}

impl Estimator {
    /// A window closed: `census` if it had no end planned.
    pub fn close_window(&mut self, w: &Span, census: bool) {
        self.all.add(w);
        if census {
            self.census_ops += w.writes;
        } else {
            self.planned.add(w);
        }
    }

    pub fn add_gap(&mut self, g: &Span) {
        self.gaps.add(g);
    }

    pub fn windows(&self) -> u32 {
        self.all.count
    }

    /// Every window so far (closed, and `open` if one is), for the cost factor.
    pub fn window_time(&self, open: Option<&Span>) -> Span {
        let mut all = self.all.span;
        if let Some(o) = open {
            all.add(o);
        }
        all
    }

    /// The windows that are the sample (planned ones if `stratified`, else all), with the
    /// window open now counted in if it is one of them, and all outside windows with the gap
    /// running (`gap`) counted in.
    fn sample(
        &self,
        stratified: bool,
        open: Option<Open>,
        gap: Option<&Span>,
    ) -> (&Windows, Span, Span) {
        let sample = if stratified { &self.planned } else { &self.all };
        let mut windows = sample.span;
        match open {
            Some(Open::Planned(o)) => windows.add(o),
            Some(Open::Census(o)) if !stratified => windows.add(o),
            _ => {}
        }
        let mut outside = self.gaps;
        if let Some(g) = gap {
            outside.add(g);
        }
        (sample, windows, outside)
    }

    /// How many events of a clock the windows must see to count by it: [`MIN_CLOCK_EVENTS`], or
    /// [`MIN_SAMPLE_EVENTS`] where the probes may have taken all of their CPU time (at the cost
    /// factor's high end), since natural CPU time leaves nothing to count by there (a paced
    /// sync.Map loop whose single-stepped RETs take nearly all of a window: estimates 170× high).
    fn enough_events(windows: &Span, factor: &CostFactor) -> f64 {
        let [_, high] = factor.ends();
        if windows.natural_cpu_s(high) > windows.writes as f64 * MIN_WRITE_S {
            MIN_CLOCK_EVENTS as f64
        } else {
            MIN_SAMPLE_EVENTS
        }
    }

    /// The first event clock the windows saw enough of and that drives the target outside
    /// them, else natural CPU time (see the module's doc); enough is `enough`
    /// ([`Estimator::enough_events`]).
    fn clock(windows: &Span, outside: &Span, enough: f64) -> Clock {
        Clock::EVENTS
            .into_iter()
            .find(|c| {
                c.events(windows) >= enough
                    && c.events(outside) >= MIN_EVENTS_PER_CPU_S * outside.cpu_s
            })
            .unwrap_or(Clock::NaturalCpu)
    }

    /// The ticks of every event clock (observed in windows of either kind, and in all): with
    /// the window open so far (`open`) or the gap running so far (`gap`) counted in.
    pub fn event_ticks(&self, open: Option<&Span>, gap: Option<&Span>) -> [(f64, f64); 2] {
        let windows = self.window_time(open);
        let mut outside = self.gaps;
        if let Some(g) = gap {
            outside.add(g);
        }
        Clock::EVENTS.map(|c| (c.ticks(&windows), c.ticks(&windows) + c.ticks(&outside)))
    }

    /// What observed counts stand for now: with the window open now (`open`) or the gap
    /// running so far (`gap`) counted in.
    pub fn extrapolation(
        &self,
        open: Option<Open>,
        gap: Option<&Span>,
        costs: &ProbeCosts,
    ) -> Extrapolation {
        let every = self.window_time(open.map(Open::span));
        let factor = CostFactor::of(&every, costs);
        let (_, _, outside) = self.sample(false, open, gap);
        // Whether a clock drives the target, every window tells; planned windows are the
        // sample once they saw enough of it on their own (see the module's doc).
        let enough = Self::enough_events(&every, &factor);
        let clock = Self::clock(&every, &outside, enough);
        let (_, planned, _) = self.sample(true, open, gap);
        let stratified = self.planned.busy > 0
            && match clock {
                Clock::NaturalCpu => true,
                c => c.events(&planned) >= enough,
            };
        let (sample, windows, outside) = self.sample(stratified, open, gap);
        let (scale, bias_scale) = match clock {
            Clock::NaturalCpu => Self::natural_cpu_scale(&windows, &outside, &factor),
            Clock::IoBytes => Self::event_scale(clock, &windows, &outside),
            Clock::Wakeups => Self::wakeup_scale(&windows, &outside),
        };
        let census_open = stratified && matches!(open, Some(Open::Census(_)));
        let census = self.census_ops
            + match open {
                Some(Open::Census(o)) if census_open => o.writes,
                _ => 0,
            };
        let observed = self.all.span.writes + open.map_or(0, |o| o.span().writes);
        let mut e = Extrapolation {
            scale,
            bias_scale,
            clock,
            windows: sample.busy,
            factor,
            sums: [
                sample.span.cpu_s,
                sample.span.probe_s,
                sample.cc,
                sample.ch,
                sample.hh,
            ],
            ticks: Clock::EVENTS.map(|c| c.ticks(&sample.span)),
            ticks_squared: sample.ee,
            total_dispersion: 1.0,
            stratified,
            probes_took_windows: enough < MIN_CLOCK_EVENTS as f64,
            census_open,
            census_share: if stratified && observed > 0 {
                census as f64 / observed as f64
            } else {
                0.0
            },
        };
        e.total_dispersion = e.dispersion(&sample.total);
        e
    }

    /// The scale by an event clock, and how far its bias may move it.
    fn event_scale(clock: Clock, windows: &Span, outside: &Span) -> (f64, f64) {
        let (inside, out) = (clock.ticks(windows), clock.ticks(outside));
        let scale = (inside + out) / inside;
        (
            scale,
            if scale > 1.0 {
                scale * clock.bias()
            } else {
                0.0
            },
        )
    }

    /// The scale of a target driven by its wakeups: between what its wakeups and the wall
    /// clock say, as far as they differ. A loop paced by a timer (or by arrivals at a fixed
    /// rate) makes as many writes per second however much the probes slow each step, but
    /// fewer, longer steps, each with more writes: its wakeups over-count what the windows
    /// stand for, the wall clock is right. One woken for each piece of work (a consumer whose
    /// producer waits) makes the same writes per wakeup, fewer per second: its wakeups are
    /// right, the wall clock under-counts. (A paced sync.Map loop whose delete probes are
    /// single-stepped: wakeups +30-60 %, the wall clock within a few percent.)
    fn wakeup_scale(windows: &Span, outside: &Span) -> (f64, f64) {
        let (by_wakeups, bias) = Self::event_scale(Clock::Wakeups, windows, outside);
        if windows.wall_s <= 0.0 {
            return (by_wakeups, bias);
        }
        let by_wall = (windows.wall_s + outside.wall_s) / windows.wall_s;
        let (lo, hi) = (by_wakeups.min(by_wall), by_wakeups.max(by_wall));
        let scale = (lo + hi) / 2.0;
        (
            scale,
            if scale > 1.0 {
                (hi - lo) / 2.0 + scale * Clock::Wakeups.bias()
            } else {
                0.0
            },
        )
    }

    /// The scale by natural CPU time, and how far the cost factor's uncertainty may move it.
    fn natural_cpu_scale(windows: &Span, outside: &Span, factor: &CostFactor) -> (f64, f64) {
        let scale_at = |m: f64| -> f64 {
            let x_in = windows
                .natural_cpu_s(m)
                .max(windows.writes as f64 * MIN_WRITE_S)
                .max(1e-12);
            let x_out = outside.natural_cpu_s(m).max(0.0);
            (x_in + x_out) / x_in
        };
        let scale = if outside.cpu_s > 0.0 || outside.wall_s > 0.0 {
            scale_at(factor.mid)
        } else {
            1.0
        };
        let bias = factor
            .ends()
            .iter()
            .map(|&m| (scale_at(m) - scale).abs())
            .fold(0.0, f64::max);
        let bias = bias + scale * Clock::NaturalCpu.bias();
        (scale, if scale > 1.0 { bias } else { 0.0 })
    }
}

/// What observed counts stand for at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extrapolation {
    /// Estimated ÷ observed (1 ÷ coverage).
    pub scale: f64,
    /// How far `scale` may be off for the clock's bias (or the cost factor's uncertainty).
    pub bias_scale: f64,
    /// What the target's progress was counted by.
    pub clock: Clock,
    /// Closed windows that saw the target busy (degrees of freedom of the dispersions).
    pub windows: u32,
    pub factor: CostFactor,
    /// ΣC, ΣH, ΣC², ΣC·H, ΣH² over closed windows.
    sums: [f64; 5],
    /// Per event clock over closed windows: Σ ticks, Σ ticks².
    ticks: [f64; 2],
    ticks_squared: [f64; 2],
    /// Dispersion of all writes (see [`Extrapolation::dispersion`]).
    pub total_dispersion: f64,
    /// Whether planned windows are the sample and census windows count as they are (see the
    /// module's doc); whether the window open now is a census.
    pub stratified: bool,
    /// Whether the probes may have taken all of the windows' CPU time (at the cost factor's
    /// high end): the target ran in them unlike outside.
    pub probes_took_windows: bool,
    pub census_open: bool,
    /// The share of the observed counts a census counted (all of them: for one map's,
    /// [`Extrapolation::with_census`]): these are exact, the rest is scaled.
    pub census_share: f64,
}

impl Extrapolation {
    /// Exact mode, or a trace that never left its first window.
    pub const EXACT: Extrapolation = Extrapolation {
        scale: 1.0,
        bias_scale: 0.0,
        clock: Clock::NaturalCpu,
        windows: 0,
        factor: CostFactor {
            mid: 1.0,
            rel_err: 0.0,
        },
        sums: [0.0; 5],
        ticks: [0.0; 2],
        ticks_squared: [0.0; 2],
        total_dispersion: 1.0,
        stratified: false,
        probes_took_windows: false,
        census_open: false,
        census_share: 0.0,
    };

    /// For a count of `ops` operations of which a census counted `census_ops`.
    pub fn with_census(&self, census_ops: u64, ops: u64) -> Extrapolation {
        Extrapolation {
            census_share: if self.stratified && ops > 0 {
                (census_ops as f64 / ops as f64).min(1.0)
            } else {
                0.0
            },
            ..*self
        }
    }

    /// Fraction of the target's writes observed.
    pub fn coverage(&self) -> f64 {
        1.0 / self.estimate(1.0).max(1.0)
    }

    /// What `observed` stands for: its census share as it is, the rest scaled.
    pub fn estimate(&self, observed: f64) -> f64 {
        observed * (self.census_share + (1.0 - self.census_share) * self.scale)
    }

    /// A count's dispersion in the sample (see [`Extrapolation::dispersion`]).
    pub fn dispersion_of(&self, s: &Strata) -> f64 {
        self.dispersion(if self.stratified { &s.planned } else { &s.all })
    }

    /// How much a count's window-to-window spread exceeds Poisson thinning's: Σ residual² ÷
    /// Σ expected (residual: the window's count − ratio × its clock), at least 1.
    pub fn dispersion(&self, m: &Moments) -> f64 {
        let k = f64::from(self.windows);
        let (x, xx, nx) = match self.clock {
            Clock::NaturalCpu => {
                let [c, h, cc, ch, hh] = self.sums;
                let f = self.factor.mid;
                (c - f * h, cc - 2.0 * f * ch + f * f * hh, m.nc - f * m.nh)
            }
            clock => {
                let i = clock.index();
                (self.ticks[i], self.ticks_squared[i], m.ne[i])
            }
        };
        if self.windows < 2 || x <= 0.0 || m.n <= 0.0 {
            return 1.0;
        }
        let r = m.n / x;
        let residual = (m.nn - 2.0 * r * nx + r * r * xx).max(0.0);
        (residual / (r * x) * k / (k - 1.0)).max(1.0)
    }

    /// The error bound of `observed × scale`, for a count whose dispersion is `dispersion`
    /// (a map's, or for a key or site `1 + share × (map's − 1)`): 3 sigma of Poisson thinning,
    /// Student's t (99.7 %) for the excess dispersion, plus the cost factor's bias in full; of
    /// the part a census did not count. A sample of one census window alone whose probes took
    /// all of its CPU time is no sample of the load: its bound is Student's t for no degree of
    /// freedom times Poisson's.
    ///
    /// The thinning term is a score interval's upper half-width, not `3 √observed`: a count a
    /// few windows saw 4 times may stand for a mean of 12 (observed 4 of 955 writes at 1.3 %
    /// coverage, in CI), and √4 would say ±6 where the mean's own spread is ±10.
    pub fn bound(&self, observed: f64, dispersion: f64) -> f64 {
        if self.scale <= 1.0 || self.census_share >= 1.0 {
            return 0.0;
        }
        let observed = observed * (1.0 - self.census_share);
        let t = student_t_9985(self.windows.saturating_sub(1));
        // The squared multiplier of the observed count's variance, f × mean (f: the share of
        // the mean thinning leaves out), and where the mean's upper limit lies above it.
        let q = if self.stratified || self.windows >= 2 || !self.probes_took_windows {
            9.0 + t * t * (dispersion - 1.0).max(0.0)
        } else {
            // One census window is the whole sample, the probes took (nearly) all of its CPU
            // time, and it is the window in which the load began (its alarm closed it): its
            // spread is unknown, and its rate may be far from the load's (a paced sync.Map
            // loop's estimates read 5× low with Poisson's bound). Where the probes took a small
            // part, one census window counts well (a server's first requests, by their bytes).
            t * t
        };
        let f = 1.0 - 1.0 / self.scale;
        let upper = q * f / 2.0 + (q * f * observed + (q * f / 2.0).powi(2)).sqrt();
        upper * self.scale + observed * self.bias_scale
    }
}

/// Student's t quantile at 0.9985 (two-sided 99.7 %, "3 sigma") for `df` degrees of freedom.
fn student_t_9985(df: u32) -> f64 {
    const T: [f64; 12] = [
        212.2, 18.22, 8.89, 6.43, 5.32, 4.72, 4.35, 4.10, 3.92, 3.79, 3.68, 3.60,
    ];
    match df {
        0 => T[0],
        1..=12 => T[df as usize - 1],
        13..=20 => 3.45,
        21..=40 => 3.22,
        _ => 3.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs() -> ProbeCosts {
        ProbeCosts {
            write_s: 1e-6,
            grow_s: 1e-6,
            ret_s: 10e-6,
            program_s: 0.4e-6,
            write_single_stepped: false,
        }
    }

    /// A window of `writes` writes at `natural_s` natural CPU each (1 µs of probe each, the
    /// program's body running `program_s` each).
    fn window(writes: u64, natural_s: f64, program_s: f64) -> Span {
        let n = writes as f64;
        Span {
            wall_s: 0.1,
            cpu_s: n * (natural_s + 1e-6 + program_s - 0.4e-6),
            probe_s: n * 1e-6,
            program_runs: writes,
            program_s: n * program_s,
            writes,
            ..Span::default()
        }
    }

    fn gap(cpu_s: f64) -> Span {
        Span {
            wall_s: 1.0,
            cpu_s,
            ..Span::default()
        }
    }

    #[test]
    fn the_cost_factor_is_one_where_the_program_runs_as_in_the_calibration() {
        let f = CostFactor::of(&window(1000, 1e-5, 0.4e-6), &costs());
        assert!((f.mid - 1.0).abs() < 1e-9);
        assert!((f.rel_err - CALIBRATION_ERROR).abs() < 1e-9);
        // Twice the body time: +0.4 µs on 1 µs (1.4×) or 2× the whole: 1.7 ± 0.3.
        let f = CostFactor::of(&window(1000, 1e-5, 0.8e-6), &costs());
        assert!((f.mid - 1.7).abs() < 1e-9, "{f:?}");
        assert!((f.rel_err - (0.3 / 1.7 + CALIBRATION_ERROR)).abs() < 1e-9);
    }

    #[test]
    fn counts_scale_by_natural_cpu_whatever_the_windows_cost() {
        // Windows: 1000 writes at 9 µs natural + 1 µs probe; gaps: 9 ms of CPU each, i.e. the
        // same natural rate (1000 writes per 9 ms). Coverage is a half, the scale 2.
        let mut e = Estimator::default();
        for _ in 0..10 {
            e.close_window(&window(1000, 9e-6, 0.4e-6), false);
            e.add_gap(&gap(9e-3));
        }
        let x = e.extrapolation(None, None, &costs());
        assert!((x.scale - 2.0).abs() < 1e-9, "{x:?}");
        assert!((x.coverage() - 0.5).abs() < 1e-9);
        assert_eq!(x.estimate(10_000.0), 20_000.0);
        // Identical windows: Poisson's dispersion (the floor).
        assert_eq!(x.total_dispersion, 1.0);
        // The bound: 3 sigma of thinning (√(n·s·(s−1))) plus the cost factor's bias and the
        // clock's (10 % of the scale).
        let b = x.bound(10_000.0, 1.0);
        let poisson = 3.0 * (10_000.0f64 * 2.0).sqrt();
        let clock = 10_000.0 * 2.0 * Clock::NaturalCpu.bias();
        assert!(
            b > poisson + clock && b < poisson + clock + 10_000.0 * 0.05,
            "{b}"
        );
    }

    #[test]
    fn a_loop_that_only_writes_has_a_bias_bound_as_wide_as_its_uncertainty() {
        // 25 ns natural, 1 µs probe: the windows' natural CPU is 2.4 % of their CPU time, and
        // a 10 % uncertain probe cost makes it anything from 0 to 6.5 %.
        let mut e = Estimator::default();
        for _ in 0..10 {
            e.close_window(&window(10_000, 25e-9, 0.4e-6), false);
            e.add_gap(&gap(2.5e-3 * 40.0));
        }
        let x = e.extrapolation(None, None, &costs());
        let truth_scale = 1.0 + 2.5e-3 * 40.0 / (10_000.0 * 25e-9);
        assert!((x.scale - truth_scale).abs() / truth_scale < 1e-6);
        assert!(x.bias_scale > x.scale, "honestly wide: {x:?}");
        // Never an infinite estimate.
        assert!(x.bias_scale.is_finite());
    }

    #[test]
    fn bursty_windows_widen_the_bound() {
        let (mut steady, mut bursty) = (Estimator::default(), Estimator::default());
        for i in 0..10 {
            steady.close_window(&window(1000, 9e-6, 0.4e-6), false);
            // The same CPU time, but half the windows see 1500 writes and half 500.
            let mut w = window(1000, 9e-6, 0.4e-6);
            w.writes = if i % 2 == 0 { 1500 } else { 500 };
            bursty.close_window(&w, false);
            steady.add_gap(&gap(9e-3));
            bursty.add_gap(&gap(9e-3));
        }
        let (s, b) = (
            steady.extrapolation(None, None, &costs()),
            bursty.extrapolation(None, None, &costs()),
        );
        assert_eq!(s.total_dispersion, 1.0);
        // Residuals of ±500 around 1000 expected: 250 000 / 1000 × 10/9.
        assert!((b.total_dispersion - 277.78).abs() < 0.1, "{b:?}");
        // The sampling part of the bound (without the biases, alike for both).
        let sampling = |x: &Extrapolation, d: f64| x.bound(10_000.0, d) - 10_000.0 * x.bias_scale;
        assert!(sampling(&b, b.total_dispersion) > 5.0 * sampling(&s, 1.0));
    }

    #[test]
    fn idle_windows_are_no_degrees_of_freedom() {
        let (mut busy, mut with_idle) = (Estimator::default(), Estimator::default());
        for i in 0..3 {
            let mut w = window(1000, 9e-6, 0.4e-6);
            w.writes = if i % 2 == 0 { 1500 } else { 500 };
            for e in [&mut busy, &mut with_idle] {
                e.close_window(&w, false);
                e.add_gap(&gap(9e-3));
            }
            with_idle.close_window(
                &Span {
                    wall_s: 1.0,
                    ..Span::default()
                },
                false,
            );
        }
        let (b, i) = (
            busy.extrapolation(None, None, &costs()),
            with_idle.extrapolation(None, None, &costs()),
        );
        assert_eq!((b.windows, i.windows), (3, 3));
        assert_eq!(
            b.bound(3500.0, b.total_dispersion),
            i.bound(3500.0, i.total_dispersion)
        );
    }

    #[test]
    fn nothing_outside_the_windows_is_exact() {
        let mut e = Estimator::default();
        e.close_window(&window(1000, 9e-6, 0.4e-6), false);
        let x = e.extrapolation(None, None, &costs());
        assert_eq!((x.scale, x.bound(1000.0, 1.0)), (1.0, 0.0));
    }

    #[test]
    fn a_server_is_counted_by_its_io_bytes_however_much_the_probes_cost_it() {
        // Closed loop: 2 system calls and 300 bytes per request, 10 writes per request. In windows the probes
        // slow it to a third of the requests per second, and each hit costs it 3× the
        // calibration (which natural CPU time cannot know); in gaps it runs at full speed.
        let mut e = Estimator::default();
        for _ in 0..10 {
            let mut w = window(1000, 9e-6, 0.4e-6);
            w.cpu_s += w.probe_s * 2.0;
            // Slowed, it skips some empty reads: fewer calls per request, the same bytes.
            w.syscalls = 150;
            w.io_bytes = 100 * 300;
            e.close_window(&w, false);
            e.add_gap(&Span {
                wall_s: 0.5,
                cpu_s: 0.5,
                syscalls: 3 * 200 * 5,
                io_bytes: 3 * 100 * 300 * 5,
                wakeups: 40,
                ..Span::default()
            });
        }
        let x = e.extrapolation(None, None, &costs());
        assert_eq!(x.clock, Clock::IoBytes, "{x:?}");
        // 10 × 1000 writes seen; 10 × 15 000 more outside.
        assert!((x.estimate(10_000.0) - 160_000.0).abs() < 1e-6, "{x:?}");
        assert!((x.bias_scale - 16.0 * Clock::IoBytes.bias()).abs() < 1e-9);
        assert_eq!(x.total_dispersion, 1.0, "identical windows");
    }

    #[test]
    fn a_loop_that_never_sleeps_is_counted_by_natural_cpu_though_the_clock_wakes_it() {
        // 100 wakeups per second of a busy loop: the windows see plenty, but outside them the
        // loop ticks 100 times per CPU second, far below what drives a target.
        let mut e = Estimator::default();
        for _ in 0..10 {
            let mut w = window(10_000, 1e-6, 0.4e-6);
            w.wakeups = 60;
            e.close_window(&w, false);
            e.add_gap(&Span {
                wakeups: 50,
                ..gap(0.5)
            });
        }
        assert_eq!(
            e.extrapolation(None, None, &costs()).clock,
            Clock::NaturalCpu
        );
        // Too few ticks in the windows to count by, even for a target they drive.
        let mut few = Estimator::default();
        let mut w = window(1000, 9e-6, 0.4e-6);
        w.syscalls = MIN_CLOCK_EVENTS - 1;
        few.close_window(&w, false);
        few.add_gap(&Span {
            syscalls: 10_000,
            ..gap(1e-3)
        });
        assert_eq!(
            few.extrapolation(None, None, &costs()).clock,
            Clock::NaturalCpu
        );
    }

    #[test]
    fn a_census_window_counts_as_it_is_and_does_not_skew_the_ratio() {
        // A census window saw a program start: 300 writes over 100 wakeups (3 per wakeup).
        // Then planned windows of 800 writes per 100 wakeups, and gaps of 900 wakeups each at
        // the same steady 8 per wakeup: 10 × 8000 more writes outside.
        let census = Span {
            writes: 300,
            wakeups: 100,
            ..window(300, 9e-6, 0.4e-6)
        };
        let planned = Span {
            wakeups: 100,
            ..window(800, 9e-6, 0.4e-6)
        };
        let gap = Span {
            wakeups: 900,
            wall_s: 0.9,
            ..gap(9e-3)
        };
        // The first window a census (or, `pooled`, a sample), then 10 planned windows and gaps.
        let run = |first_is_census: bool| {
            let mut e = Estimator::default();
            e.close_window(&census, first_is_census);
            for _ in 0..10 {
                e.close_window(&planned, false);
                e.add_gap(&gap);
            }
            e.extrapolation(None, None, &costs())
        };
        let x = run(true);
        assert_eq!(x.clock, Clock::Wakeups, "{x:?}");
        assert!(x.stratified);
        assert!((x.scale - 10.0).abs() < 1e-9, "{x:?}");
        // All writes: 300 + 10 × 800 observed stand for 300 + 10 × 8000.
        let truth = 300.0 + 80_000.0;
        assert!((x.estimate(8300.0) - truth).abs() < 1e-6, "{x:?}");
        assert!((x.coverage() - 8300.0 / truth).abs() < 1e-9);
        // Counted among the samples the census window would have pulled the ratio down.
        let p = run(false);
        assert!(p.estimate(8300.0) < 0.97 * truth, "{p:?}");
        // One map written only in the census window is exact; one written only in planned
        // windows is scaled in full, and its bound is the samples'.
        let only_census = x.with_census(300, 300);
        assert_eq!(
            (only_census.estimate(300.0), only_census.bound(300.0, 1.0)),
            (300.0, 0.0)
        );
        let only_planned = x.with_census(0, 8000);
        assert!((only_planned.estimate(8000.0) - 80_000.0).abs() < 1e-6);
        assert!(only_planned.bound(8000.0, 1.0) > 0.0);
        // Until a planned window closed, every window is the sample.
        let mut first = Estimator::default();
        first.close_window(&census, true);
        first.add_gap(&gap);
        let f = first.extrapolation(None, None, &costs());
        assert!(
            !f.stratified && f.scale > 1.0 && f.census_share == 0.0,
            "{f:?}"
        );
    }

    #[test]
    fn a_paced_loop_the_probes_slow_is_between_its_wakeups_and_the_wall_clock() {
        // Paced by a timer at 10 writes per ms: in a 0.1 s window the probes make each step
        // longer, 50 wakeups of 20 writes; in a 0.9 s gap, 900 wakeups of 10 writes.
        let mut e = Estimator::default();
        for _ in 0..10 {
            e.close_window(
                &Span {
                    wakeups: 50,
                    ..window(1000, 9e-6, 0.4e-6)
                },
                false,
            );
            e.add_gap(&Span {
                wall_s: 0.9,
                wakeups: 900,
                ..gap(9e-3)
            });
        }
        let x = e.extrapolation(None, None, &costs());
        assert_eq!(x.clock, Clock::Wakeups, "{x:?}");
        // Wakeups say 19×, the wall clock 10× (the truth for this loop): the middle, 14.5,
        // ± half the difference and the clock's bias.
        assert!((x.scale - 14.5).abs() < 1e-9, "{x:?}");
        assert!((x.bias_scale - (4.5 + 14.5 * Clock::Wakeups.bias())).abs() < 1e-9);
        let (est, bound) = (x.estimate(10_000.0), x.bound(10_000.0, 1.0));
        assert!((est - 100_000.0).abs() <= bound, "{est} ± {bound}");
    }

    #[test]
    fn a_window_the_probes_took_whole_is_counted_by_its_wakeups_apart_from_the_census() {
        // Measured (a paced sync.Map loop, 40k operations/s, 1 %): the census window saw the
        // load begin (44 writes in 0.12 s, 23 wakeups, most of them idle ones); the one planned
        // window its budget paid for, 20 ms, saw 792 writes and 35 wakeups, its single-stepped
        // RETs charged more than its CPU time; 9,800 wakeups and 0.18 s CPU outside.
        let mut e = Estimator::default();
        let census = Span {
            wall_s: 0.12,
            cpu_s: 1.1e-3,
            probe_s: 0.9e-3,
            writes: 44,
            wakeups: 23,
            ..Span::default()
        };
        let planned = Span {
            wall_s: 0.021,
            cpu_s: 7.7e-3,
            probe_s: 16.2e-3,
            writes: 792,
            wakeups: 35,
            ..Span::default()
        };
        e.close_window(&census, true);
        e.add_gap(&Span {
            wall_s: 2.3,
            cpu_s: 0.08,
            wakeups: 4_600,
            ..Span::default()
        });
        e.close_window(&planned, false);
        e.add_gap(&Span {
            wall_s: 2.5,
            cpu_s: 0.1,
            wakeups: 5_200,
            ..Span::default()
        });
        let x = e.extrapolation(None, None, &costs());
        // Natural CPU time leaves nothing to count by; the planned window alone is the sample.
        assert_eq!((x.clock, x.stratified), (Clock::Wakeups, true), "{x:?}");
        let truth = 44.0 + 200_000.0 - 836.0 + 792.0;
        let (est, bound) = (x.estimate(836.0), x.bound(836.0, 1.0));
        assert!((est - truth).abs() <= bound, "{est} ± {bound} for {truth}");
        assert!(bound < 0.5 * truth, "{est} ± {bound}");
    }

    #[test]
    fn a_small_count_is_bounded_by_where_its_mean_may_lie() {
        let x = Extrapolation {
            scale: 76.0,
            windows: 30,
            ..Extrapolation::EXACT
        };
        // Seen 4 times: 304 estimated; 955 writes (a mean of 12.6 seen) lie within its bound.
        assert!(x.bound(4.0, 1.0) >= 955.0 - 304.0, "{}", x.bound(4.0, 1.0));
        // A large count: 3 sigma of thinning.
        let sigma = (10_000.0 * 76.0 * 75.0f64).sqrt();
        let b = x.bound(10_000.0, 1.0);
        assert!(b > 3.0 * sigma && b < 3.1 * sigma, "{b} vs {sigma}");
        // Unseen: still more than the scale.
        assert!(x.bound(0.0, 1.0) > 76.0);
    }

    #[test]
    fn one_census_window_the_probes_took_whole_has_an_unknown_spread() {
        // A paced loop's load began inside the census window (the alarm closed it), and no
        // planned window closed since: the window's rate was a fifth of the load's.
        let census_only = Extrapolation {
            scale: 53.0,
            windows: 1,
            probes_took_windows: true,
            ..Extrapolation::EXACT
        };
        let (est, bound) = (census_only.estimate(848.0), census_only.bound(848.0, 1.0));
        assert!(5.0 * est - est <= bound, "{est} ± {bound}");
        // One planned window is a sample of the load itself: Poisson's bound, not the above.
        let planned = Extrapolation {
            stratified: true,
            ..census_only
        };
        assert!(planned.bound(848.0, 1.0) * 10.0 < bound);
        // Nor is a census window the probes took little of (a server's first requests).
        let light = Extrapolation {
            probes_took_windows: false,
            ..census_only
        };
        assert!(light.bound(848.0, 1.0) * 10.0 < bound);
    }

    #[test]
    fn student_t_narrows_with_windows() {
        assert!(student_t_9985(1) > student_t_9985(5));
        assert!(student_t_9985(5) > student_t_9985(30));
        assert_eq!(student_t_9985(1000), 3.0);
    }
}
