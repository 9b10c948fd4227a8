//! The live loop shared by `top`, `trace` and `serve`: attach to a running process, open and
//! close budget windows as the sampler says (exact mode: one window, always open), take in
//! records through the intake, and every refresh hand the caller a report of what was seen.
//! At each window edge it reads the target's CPU clock and the probes' counters (`Edge`), right
//! after opening the gate and right before closing it.
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::intake::{aggregation, Intake, Sink};
use super::ring::Ring;
use super::stop::stop_requested;
use super::tracee::{Capture, Tracee};
use super::wait::wait;
use crate::bpf::Counter;
use crate::decode::keys::Key;
use crate::decode::records::{GrowEvent, HeaderRead, WriteEvent};
use crate::hotkeys::live::{LiveCounts, RateBasis};
use crate::probe::calibrate::{probe_costs, ProbeCosts};
use crate::probe::load::{budget_ring_bytes, preflight, EXACT_RING_BYTES, MAX_RING_BYTES};
use crate::probe::process::{activity, exe_of, Activity};
use crate::probe::session::{read_counter, Session};
use crate::report::live::{refresh, Refresh};
use crate::report::Meta;
use crate::sampling::{Edge, Hits, Mode, Sampler, Step};

/// What a live loop is asked to do (`cli` builds it from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    /// The process to watch.
    pub pid: u32,
    pub mode: Mode,
    /// Budget mode: allowed slowdown of the target, in percent.
    pub overhead: f64,
    /// Keys reported per map.
    pub top: usize,
    /// Bytes of each key captured (at most 256).
    pub key_bytes: u32,
    /// Keys only as hashes.
    pub redact: bool,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Seconds between refreshes.
    pub refresh: f64,
    /// Capture goroutine stacks (`trace --stack`, `--pprof`, `--folded`).
    pub stack: bool,
    /// Capture each write's goroutine id (`trace`).
    pub goroutine_ids: bool,
}

/// Per-event hook (for `trace`): the event and its decoded key.
pub type OnEvent<'a> = dyn FnMut(&WriteEvent, &Key) + 'a;

/// How often the loop takes in records while a window is open (the ring holds far more).
const POLL: Duration = Duration::from_millis(20);
/// Records taken in per turn of the loop, at most.
const CONSUME_BATCH: usize = 100_000;
/// Longest sleep in a gap (a stop request or the target's exit is noticed within it).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often a budget window kept open looks at the probe hits (each look costs the agent ~150 µs
/// of system calls here: every 20 ms, 0.6 % of a core with an idle target). A load that starts
/// does not wait for it: the probes' alarm (`Session::set_alarm`) wakes the loop once the
/// window has spent what it may.
const BUDGET_LOOK: Duration = Duration::from_millis(50);

/// Live counts and the caller's hooks.
struct Watched<'h, 'e> {
    counts: LiveCounts,
    on_event: &'h mut OnEvent<'e>,
    on_grow: &'h mut dyn FnMut(&GrowEvent),
}

impl Sink for Watched<'_, '_> {
    fn write(&mut self, ev: &WriteEvent, key: Key) {
        self.counts.add(ev, &key);
        (self.on_event)(ev, &key);
    }

    fn counted(&mut self, ev: &WriteEvent, key: &Key, n: u64) {
        self.counts.add_counted(ev, key, n);
    }

    fn header(&mut self, h: &HeaderRead) {
        self.counts.header_read(h.map_type, h.map_ptr, &h.header);
    }

    fn grow(&mut self, g: &GrowEvent) {
        (self.on_grow)(g);
    }
}

type WatchIntake<'t, 'h, 'e> = RefCell<Intake<'t, Watched<'h, 'e>>>;

/// The loop's probes and what reads their edges.
struct Probes<'s, 'o, 'r, 'cb, 't, 'h, 'e> {
    pid: u32,
    session: &'s mut Session<'o>,
    ring: &'r Ring<'cb, 't, Watched<'h, 'e>>,
    /// The target's activity last read (kept when the target is gone).
    activity: Activity,
}

impl Probes<'_, '_, '_, '_, '_, '_, '_> {
    /// Reads the target's activity now, while it is there.
    fn observe(&mut self) {
        // Clocks never go back: a process that is exiting loses its threads one by one, and
        // what is left of it reads as less than before (keep the last whole reading).
        if let Some(a) = activity(self.pid) {
            let last = self.activity;
            self.activity = Activity {
                cpu_s: a.cpu_s.max(last.cpu_s),
                syscalls: a.syscalls.max(last.syscalls),
                io_bytes: a.io_bytes.max(last.io_bytes),
                wakeups: a.wakeups.max(last.wakeups),
            };
        }
    }

    /// The edge now, with `writes` recorded so far.
    fn edge(&mut self, writes: u64) -> Edge {
        self.observe();
        Edge {
            at: Instant::now(),
            cpu_s: self.activity.cpu_s,
            syscalls: self.activity.syscalls,
            io_bytes: self.activity.io_bytes,
            wakeups: self.activity.wakeups,
            hits: hits_now(self.session),
            program_s: read_counter(&self.session.skel, Counter::CNT_PROG_NS) as f64 * 1e-9,
            program_runs: read_counter(&self.session.skel, Counter::CNT_PROG_RUNS),
            writes,
        }
    }
}

/// The probe hits by kind so far (only the counters that hold them: the loop reads them every
/// turn).
fn hits_now(session: &Session) -> Hits {
    let read = |c: Counter| read_counter(&session.skel, c);
    Hits {
        write: read(Counter::CNT_HITS),
        grow: read(Counter::CNT_GROW_HITS),
        grow_ret: read(Counter::CNT_GROW_RET_HITS),
        sync_ret: read(Counter::CNT_SYNC_RET_HITS),
    }
}

/// Runs until Ctrl-C, `--duration`, the target's exit or exec, or `on_refresh` returns false.
pub fn run_live(
    opts: &Options,
    on_event: &mut OnEvent<'_>,
    on_grow: &mut dyn FnMut(&GrowEvent),
    on_refresh: &mut dyn FnMut(Refresh) -> Result<bool>,
) -> Result<()> {
    let tracee = Tracee::open(opts.pid, &exe_of(opts.pid)?, false)?;
    run_live_on(&tracee, opts, &mut || Ok(()), on_event, on_grow, on_refresh)
}

/// [`run_live`] on a tracee opened by the caller (`run --mode budget`: a command started held);
/// `attached` is called once the probes are on and the first window is open (to release it).
pub fn run_live_on(
    tracee: &Tracee,
    opts: &Options,
    attached: &mut dyn FnMut() -> Result<()>,
    on_event: &mut OnEvent<'_>,
    on_grow: &mut dyn FnMut(&GrowEvent),
    on_refresh: &mut dyn FnMut(Refresh) -> Result<bool>,
) -> Result<()> {
    preflight()?;
    let budget = opts.mode == Mode::Budget;
    let costs = match opts.mode {
        Mode::Budget => probe_costs(&tracee.bin)?,
        Mode::Exact => ProbeCosts::default(),
    };
    let ring_bytes = match opts.mode {
        Mode::Budget => budget_ring_bytes(opts.overhead, costs.write_s, opts.key_bytes, opts.stack),
        // A ring that grows with what the target sends (measuring the rate first, with a
        // second skeleton loaded and attached, let short-lived targets exit untraced).
        Mode::Exact => EXACT_RING_BYTES,
    };
    let mut storage = MaybeUninit::uninit();
    let capture = Capture {
        key_bytes: opts.key_bytes,
        stack: opts.stack,
        // `trace` prints each write's time; budget windows are timed by their edges.
        timestamps: opts.goroutine_ids,
        goroutine_ids: opts.goroutine_ids,
        sampled: budget,
        // Counts alone are aggregated in the kernel (a budget window's are drained as it
        // closes); stacks and `trace` need each write.
        aggregate: !opts.stack && !opts.goroutine_ids,
        ring_bytes,
    };
    let mut session = tracee.session(&mut storage, capture)?;
    // Finding the probe points read the binary's code: its pages go back.
    tracee.bin.release_pages();
    let watched = Watched {
        counts: LiveCounts::default(),
        on_event,
        on_grow,
    };
    let intake = RefCell::new(Intake::new(tracee, watched));
    // Budget mode's ring holds a window's records by its size: it never grows.
    let grow_to = if budget { ring_bytes } else { MAX_RING_BYTES };
    let ring = Ring::new(&session, &intake, grow_to)?;
    let mut probes = Probes {
        pid: opts.pid,
        session: &mut session,
        ring: &ring,
        activity: activity(opts.pid).unwrap_or_default(),
    };
    // The first window opens now (exact mode's was open from the start).
    let first = probes.edge(0);
    probes.session.set_window(true);
    let sampler = Sampler::new(opts.mode, opts.overhead, costs, first);
    attached()?;
    let ended = watch(opts, tracee, &mut probes, sampler, &intake, on_refresh)?;
    probes.session.set_window(false);
    probes.session.detach();
    ring.consume()?;
    if let Some(why) = ended {
        eprintln!("ebpf-map-trace: {why}");
    }
    Ok(())
}

/// The loop itself; returns why the trace ended early, if it did.
fn watch(
    opts: &Options,
    tracee: &Tracee,
    probes: &mut Probes,
    mut sampler: Sampler,
    intake: &WatchIntake,
    on_refresh: &mut dyn FnMut(Refresh) -> Result<bool>,
) -> Result<Option<String>> {
    let started = Instant::now();
    let refresh_every = Duration::from_secs_f64(opts.refresh.max(0.05));
    let deadline = opts
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut last = Refreshed {
        started,
        at: started,
        progress: [(0.0, 0.0); 3],
    };
    let mut ended: Option<String> = None;
    loop {
        // At most a batch: a target that writes faster than records are taken in must not keep
        // the loop from closing its window.
        probes.ring.consume_n(CONSUME_BATCH)?;
        let now = Instant::now();
        let gone = !follow_duty_cycle(&mut sampler, probes, intake, now)?;
        if ended.is_none() {
            ended = tracee.exec_ended();
        }
        let done = stop_requested()
            || deadline.is_some_and(|d| now >= d)
            || ended.is_some()
            || gone
            || tracee.ended();
        if now >= last.at + refresh_every || done {
            if done && opts.mode == Mode::Exact {
                // The last snapshot holds every write the probes counted: none is counted
                // after it (a target still running keeps writing until the links are gone).
                probes.session.set_window(false);
                probes.session.detach();
            }
            probes.ring.take_all(probes.session)?;
            let mut r = refresh_now(opts, tracee, probes, &sampler, intake, &mut last);
            r.report.ended = ended.clone();
            if !on_refresh(r)? || done {
                return Ok(ended);
            }
        }
        let next = (last.at + refresh_every).saturating_duration_since(Instant::now());
        if sampler.is_open() {
            let open_ended = sampler.open_ended();
            if !open_ended {
                // A target that exits inside a planned window leaves its last reading as that
                // window's end: all its writes are counted, so its clocks must be near it.
                probes.observe();
            }
            // Budget mode: the probes' alarm wakes the loop once the window has spent what it
            // may (kept open: a load that starts must close it before it spends more than a
            // short gap repays; planned: a burst ends it at once).
            if opts.mode == Mode::Budget {
                let hits = hits_now(probes.session);
                let left = sampler.hits_left(now, &hits, probes.session.has_sync_rets());
                probes.session.set_alarm(left);
            }
            // Asleep until records come, the alarm rings, the target exits, or it is time to
            // look at the sampler again: a window kept open in budget mode soon (counts
            // aggregated in the kernel send no record), a planned one every POLL.
            let look = match (opts.mode, open_ended) {
                (Mode::Exact, _) => IDLE_POLL.min(next),
                (Mode::Budget, true) => BUDGET_LOOK.min(next),
                (Mode::Budget, false) => POLL.min(next).max(Duration::from_millis(1)),
            };
            let since = Instant::now();
            if wait(probes.ring.epoll_fd(), tracee.exit.as_ref(), look)
                && !probes.session.alarm_rang()
            {
                // Records that woke it gather: for a POLL in a window kept open, the rest of
                // the pause in a planned one. A rung alarm is looked at now.
                std::thread::sleep(if open_ended {
                    POLL.min(next)
                } else {
                    look.saturating_sub(since.elapsed())
                });
            }
        } else {
            std::thread::sleep(IDLE_POLL.min(next).max(Duration::from_millis(1)));
        }
    }
}

/// When and at what progress the last refresh was made.
struct Refreshed {
    started: Instant,
    at: Instant,
    /// The sampler's (observed, total) progress by each clock then.
    progress: [(f64, f64); 3],
}

/// The refresh of what was seen so far.
fn refresh_now(
    opts: &Options,
    tracee: &Tracee,
    probes: &mut Probes,
    sampler: &Sampler,
    intake: &WatchIntake,
    last: &mut Refreshed,
) -> Refresh {
    let writes = intake.borrow().sink.counts.events;
    let now = probes.edge(writes);
    let seconds = now.at.saturating_duration_since(last.at).as_secs_f64();
    let (sampled, basis) = match opts.mode {
        Mode::Exact => (None, RateBasis::Exact { seconds }),
        Mode::Budget => {
            let progress = sampler.progress(&now);
            let x = sampler.extrapolation(&now);
            if std::env::var_os("EMT_DEBUG").is_some() {
                eprintln!("refresh at {now:?}: {x:?}");
            }
            let (now_p, last_p) = (progress[x.clock.index()], last.progress[x.clock.index()]);
            let basis = RateBasis::Sampled {
                seconds,
                progress_observed: (now_p.0 - last_p.0).max(0.0),
                progress: (now_p.1 - last_p.1).max(0.0),
            };
            last.progress = progress;
            (Some(x), basis)
        }
    };
    last.at = now.at;
    let meta = Meta {
        pid: tracee.pid,
        binary: std::fs::read_link(&tracee.exe)
            .unwrap_or_else(|_| tracee.exe.clone())
            .display()
            .to_string(),
        duration_s: now.at.saturating_duration_since(last.started).as_secs_f64(),
        lost_events: probes.session.lost(),
        lost_growths: probes.session.counters().grow_lost,
        stack_check_reentries: probes.session.counters().stack_reentries,
        top: opts.top,
        redact: opts.redact,
        sampled,
        aggregation: aggregation(probes.session),
    };
    let mut st = intake.borrow_mut();
    let Intake { growth, sink, .. } = &mut *st;
    growth.finish();
    refresh(
        &tracee.bin,
        &mut sink.counts,
        &growth.resolved,
        &meta,
        basis,
        sampler.overhead_percent(),
    )
}

/// Opens, closes or marks a window as the sampler says at `now`. Returns false when the
/// probes cannot be attached because the target is gone.
fn follow_duty_cycle(
    sampler: &mut Sampler,
    probes: &mut Probes,
    intake: &WatchIntake,
    now: Instant,
) -> Result<bool> {
    let writes = || intake.borrow().sink.counts.events;
    let st = sampler.step(now, &hits_now(probes.session));
    if std::env::var_os("EMT_DEBUG").is_some() && st != Step::Stay {
        eprintln!("step {st:?} writes {}", writes());
    }
    match st {
        Step::Stay => {}
        Step::Replan => {
            let edge = probes.edge(writes());
            if std::env::var_os("EMT_DEBUG").is_some() {
                eprintln!("gap edge {edge:?}");
            }
            sampler.replan(&edge)
        }
        Step::Open => {
            if let Err(e) = probes.session.attach() {
                if crate::probe::process::process_ended(probes.pid) {
                    return Ok(false);
                }
                return Err(e);
            }
            let edge = probes.edge(writes());
            probes.session.set_window(true);
            sampler.opened(edge);
        }
        Step::Close | Step::Mark => {
            let mut edge = probes.edge(0);
            probes.session.set_window(false);
            // The window's last records and its counts in the kernel's slots, before its writes
            // are counted (the gate is closed: this ends).
            probes.ring.take_all(probes.session)?;
            edge.writes = writes();
            let window = if st == Step::Close {
                sampler.closed(edge)
            } else {
                sampler.marked(edge)
            };
            if std::env::var_os("EMT_DEBUG").is_some() {
                eprintln!("window {window:?}");
            }
            intake.borrow_mut().sink.counts.close_window(&window);
            if st == Step::Close {
                probes.session.set_alarm(None);
                probes.session.detach();
            } else {
                // The probes stayed attached: the next window opens at once.
                let edge = probes.edge(writes());
                probes.session.set_window(true);
                sampler.opened(edge);
            }
        }
    }
    Ok(true)
}
