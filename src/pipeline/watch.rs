//! The live loop shared by `top`, `trace` and `serve`: attach to a running process, keep the
//! probes on a duty cycle (budget mode) or always on (exact), take in events, and every refresh
//! hand the caller a report of what was seen.
use std::cell::RefCell;
use std::mem::MaybeUninit;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::stop::stop_requested;
use crate::decode::internals::GrowthMatcher;
use crate::decode::keys::{plans_for_binary, Decoders, Key};
use crate::decode::records::{GrowEvent, Record, WriteEvent};
use crate::gobin::GoBinary;
use crate::hotkeys::live::LiveCounts;
use crate::probe::calibrate::{calibrate, Calibration};
use crate::probe::load::{Load, DEFAULT_RING_BYTES};
use crate::probe::session::Session;
use crate::report;
use crate::report::live::Refresh;
use crate::sampling::duty::DutyCycle;
use crate::sampling::Mode;
use crate::sampling::ThreadWrites;

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

/// Runs until Ctrl-C, `--duration`, the target's exit, or `on_refresh` returns false.
pub fn run_live(
    args: &Options,
    on_event: &mut OnEvent<'_>,
    on_grow: &mut dyn FnMut(&GrowEvent),
    on_refresh: &mut dyn FnMut(Refresh) -> Result<bool>,
) -> Result<()> {
    let pid = args.pid;
    let exe = crate::probe::process::exe_of(pid)?;
    // Before anything else: an exec from here on is noticed.
    let mut exec_watch = crate::probe::process::ExecWatch::new(pid, &exe, false)?;
    let bin = GoBinary::open(&exe).with_context(|| exe.display().to_string())?;
    let types = bin.types();
    let plans = types.as_ref().map(plans_for_binary).unwrap_or_default();
    crate::probe::load::preflight()?;
    let cost = match args.mode {
        Mode::Budget => {
            let c = calibrated()?;
            let instruction = bin
                .map_functions()
                .into_iter()
                .find(|f| f.role == crate::gobin::Role::AssignFastStr)
                .and_then(|f| f.probe.ok())
                .map(|p| p.instruction)
                .unwrap_or_else(|| "push rbp".into());
            c.cost_for(&instruction)
        }
        Mode::Exact => 0.0,
    };
    let mut duty = DutyCycle::new(args.overhead, cost);
    let mut storage = MaybeUninit::uninit();
    let start_ns = kernel_now_ns();
    let mut session = Session::start(
        &mut storage,
        &bin,
        &exe,
        &Load {
            pid,
            key_bytes: args.key_bytes,
            stack: args.stack,
            // Budget estimates time each window by its writes' kernel timestamps; `trace` prints
            // them. Exact counting does without.
            timestamps: args.mode == Mode::Budget || args.goroutine_ids,
            goroutine_ids: args.goroutine_ids,
            goid_offset: bin.goid_offset().map_or(0, |g| g.offset as u32),
            grows: true,
            ring_bytes: DEFAULT_RING_BYTES,
        },
        &plans,
    )?;

    let live = RefCell::new((
        LiveCounts::default(),
        Decoders::default(),
        GrowthMatcher::default(),
    ));
    let hooks = RefCell::new((on_event, on_grow));
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder.add(&session.skel.maps.events, |data: &[u8]| {
        match Record::parse(data) {
            Some(Record::GrowStart(g)) => live.borrow_mut().2.on_grow_start(&g),
            Some(Record::Grow(g)) => {
                live.borrow_mut().2.on_grow(&g);
                (hooks.borrow_mut().1)(&g);
            }
            Some(Record::Write(ev)) => {
                let mut st = live.borrow_mut();
                let (counts, decoders, growth) = &mut *st;
                let key = decoders.decode(&ev, types.as_ref());
                growth.on_write(&ev, &key.text);
                counts.add(
                    &ev,
                    &key,
                    ev.flags.has(crate::bpf::EventFlag::EV_READ_FAILED),
                );
                (hooks.borrow_mut().0)(&ev, &key);
            }
            None => {}
        }
        0
    })?;
    let ring = builder.build()?;

    let started = Instant::now();
    let started_ns = kernel_now_ns();
    let refresh = Duration::from_secs_f64(args.refresh.max(0.05));
    let deadline = args
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut next_refresh = started + refresh;
    let mut window_start = started;
    let mut window_end = started + crate::sampling::duty::MIN_ON.max(Duration::from_millis(100));
    let mut attached_total = Duration::ZERO;
    let mut attached_at_refresh = Duration::ZERO;
    let mut events_at_window = 0u64;
    let mut estimated_closed = Estimate::default();
    // The window being measured: when the probes went in (kernel clock, before and after the
    // attach call). The one closed last, waiting for its gap.
    let mut attach_bounds = (start_ns, started_ns);
    let mut pending: Option<Window> = None;
    let mut last_closed_loop = 1.0f64;
    let mut window_scale = 1.0f64;
    let mut planned_cycle = crate::sampling::duty::PERIOD;
    let decay = 0.7f64;
    let mut ended: Option<String> = None;
    loop {
        ring.consume()?;
        let now = Instant::now();
        if args.mode == Mode::Budget {
            // A burst can spend the whole cycle's budget early: end the window at once then.
            let spent = (live.borrow().0.events - events_at_window) as f64 * cost;
            let burst = session.is_attached()
                && spent >= args.overhead / 100.0 * planned_cycle.as_secs_f64();
            if session.is_attached() && (now >= window_end || burst) {
                let detach_start = kernel_now_ns();
                session.detach();
                let detach_end = kernel_now_ns();
                ring.consume()?;
                let threads = live.borrow_mut().0.take_threads();
                let (active_start, on) = active_window(
                    attach_bounds,
                    (detach_start, detach_end),
                    ThreadWrites::span(threads.values()),
                );
                attached_total += on;
                let events = live.borrow().0.events;
                let window_events = events - events_at_window;
                duty.observe(window_events, on);
                last_closed_loop = crate::sampling::duty::closed_loop_factor(
                    threads.into_values(),
                    on.as_secs_f64(),
                    cost,
                );
                let (next_on, off) = duty.plan();
                let off = off.max(crate::sampling::duty::gap_to_repay(
                    window_events,
                    cost,
                    args.overhead,
                    now - window_start,
                ));
                // Horvitz–Thompson: this window stands for itself and the gap after it, for as
                // long as that gap really lasts (settled when the next window starts).
                pending = Some(Window {
                    start_ns: active_start,
                    on,
                    writes: window_events,
                    closed_loop: last_closed_loop,
                });
                events_at_window = events;
                window_scale = (next_on + off).as_secs_f64() / next_on.as_secs_f64().max(1e-9);
                planned_cycle = next_on + off;
                // With no gap, the next window starts just below.
                window_end = now + off;
            }
            if !session.is_attached() && now >= window_end {
                attach_bounds = attach(&mut session)?;
                // Writes consumed during the gap belong to no window's timing.
                live.borrow_mut().0.take_threads();
                settle(&mut pending, &mut estimated_closed, attach_bounds.1);
                // events_at_window stays where the last window ended: records that arrive late
                // (consumed during the gap) count for the next window, not for none.
                window_start = Instant::now();
                window_end = window_start + duty.plan().0;
            }
        }
        if ended.is_none() {
            ended = exec_watch.exec_target().map(|new| {
                format!(
                    "the target (pid {pid}) executed another program ({}): the trace ended there",
                    new.display()
                )
            });
        }
        let done = stop_requested()
            || deadline.is_some_and(|d| now >= d)
            || ended.is_some()
            || crate::probe::process::process_ended(pid);
        if now >= next_refresh || done {
            let elapsed = now - started;
            let attached_now = attached_total
                + if session.is_attached() {
                    now - window_start
                } else {
                    Duration::ZERO
                };
            // Coverage as the estimator sees it: observed ÷ estimated writes (each window weighted
            // by its own duty cycle); the attached-time fraction before any write is seen.
            let (coverage, bias) = match args.mode {
                Mode::Exact => (1.0, 0.0),
                Mode::Budget => {
                    let events = live.borrow().0.events;
                    // The open window stands for the gap planned after it, unless the trace
                    // ends now: then nothing follows it.
                    let mut total = estimated_closed;
                    if session.is_attached() {
                        let scale = if done { 1.0 } else { window_scale };
                        total.add((events - events_at_window) as f64 * scale, last_closed_loop);
                    }
                    let mut provisional = pending;
                    settle(&mut provisional, &mut total, kernel_now_ns());
                    if events > 0 && total.mid > 0.0 {
                        (
                            (events as f64 / total.mid).clamp(1e-6, 1.0),
                            total.spread / total.mid,
                        )
                    } else {
                        let c = attached_now.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
                        (c.clamp(1e-6, 1.0), 0.0)
                    }
                }
            };
            let window_attached = (attached_now - attached_at_refresh).as_secs_f64().max(1e-6);
            let mut key_rates = Vec::new();
            let (report, map_rates) = {
                let mut st = live.borrow_mut();
                let (counts, _, growth) = &mut *st;
                let mut view = counts.view(args.top);
                growth.finish();
                view.add_growth(growth.resolved.clone());
                let mut rep = report::build(
                    &bin,
                    &view,
                    &report::Meta {
                        pid,
                        binary: std::fs::read_link(&exe)
                            .unwrap_or_else(|_| exe.clone())
                            .display()
                            .to_string(),
                        duration_s: elapsed.as_secs_f64(),
                        lost_events: session.counters().lost,
                        top: args.top,
                        redact: args.redact,
                    },
                );
                if args.mode == Mode::Budget {
                    report::apply_coverage(&mut rep, coverage, bias);
                }
                rep.ended = ended.clone();
                let rates: Vec<f64> = rep
                    .maps
                    .iter()
                    .map(|m| {
                        counts
                            .maps
                            .values()
                            .filter(|l| report::map_id(l.map_ptr) == m.id)
                            .map(|l| l.window_observed as f64 / window_attached)
                            .sum()
                    })
                    .collect();
                for (m, r) in rep.maps.iter_mut().zip(&rates) {
                    m.writes_per_s = Some(*r);
                    let lm = counts
                        .maps
                        .values()
                        .find(|l| report::map_id(l.map_ptr) == m.id);
                    let per_s = (1.0 - decay) / refresh.as_secs_f64() / coverage;
                    key_rates.push(
                        lm.map(|lm| {
                            lm.recent
                                .top(crate::hotkeys::live::KEYS_PER_MAP)
                                .iter()
                                .map(|e| e.count * per_s)
                                .collect()
                        })
                        .unwrap_or_default(),
                    );
                    if let Some(lm) = lm {
                        let recent: std::collections::HashMap<String, (Vec<u8>, f64)> = lm
                            .recent
                            .top(args.top * 4)
                            .into_iter()
                            .map(|e| (e.text.clone(), (e.id, e.count)))
                            .collect();
                        for k in &mut m.top_keys {
                            if let Some((id, w)) = recent.get(&k.key) {
                                // Steady state of a decayed sum: weight × (1 − decay) per refresh.
                                k.writes_per_s =
                                    Some(w * (1.0 - decay) / refresh.as_secs_f64() / coverage);
                                k.trend = Some(lm.trend(id, *w, decay));
                            }
                        }
                        // Rank by what is hot now.
                        m.top_keys.sort_by(|a, b| {
                            b.writes_per_s
                                .unwrap_or(0.0)
                                .total_cmp(&a.writes_per_s.unwrap_or(0.0))
                        });
                    }
                }
                counts.end_window(decay, args.top * 4);
                (rep, rates)
            };
            attached_at_refresh = attached_now;
            next_refresh = now + refresh;
            let overhead_percent = duty.estimated_overhead() * 100.0;
            let go_on = on_refresh(Refresh {
                report,
                map_rates,
                overhead_percent,
                key_rates,
            })?;
            if !go_on || done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    session.detach();
    ring.consume()?;
    if let Some(why) = ended {
        eprintln!("ebpf-map-trace: {why}");
    }
    Ok(())
}

/// A budget window, closed and waiting for the gap after it to end.
#[derive(Clone, Copy)]
struct Window {
    /// When its probes went live (kernel clock).
    start_ns: u64,
    /// How long they were live.
    on: Duration,
    writes: u64,
    /// `sampling::duty::closed_loop_factor` of its writes.
    closed_loop: f64,
}

/// Estimated writes so far: the middle of the two estimates (writers unaffected by the probes,
/// writers slowed by them) and half their difference.
#[derive(Clone, Copy, Default)]
struct Estimate {
    mid: f64,
    spread: f64,
}

impl Estimate {
    fn add(&mut self, unaffected: f64, closed_loop: f64) {
        self.mid += unaffected * (1.0 + closed_loop) / 2.0;
        self.spread += unaffected * (closed_loop - 1.0) / 2.0;
    }
}

/// Adds a finished window's writes, weighted by how long it and the gap after it lasted until
/// `until_ns` (the next window's start, or now), over how long it was attached.
fn settle(pending: &mut Option<Window>, total: &mut Estimate, until_ns: u64) {
    if let Some(w) = pending.take() {
        let cycle = until_ns.saturating_sub(w.start_ns) as f64 / 1e9;
        total.add(
            w.writes as f64 * cycle / w.on.as_secs_f64().max(1e-9),
            w.closed_loop,
        );
    }
}

/// Attaches the probes; the kernel clock just before and just after.
fn attach(session: &mut Session) -> Result<(u64, u64)> {
    let before = kernel_now_ns();
    session.attach()?;
    Ok((before, kernel_now_ns()))
}

/// When a window's probes were really live, on the kernel clock: (start, length). Breakpoints go
/// in somewhere inside the attach call and come out somewhere inside the detach call (tens of
/// ms here), which is long next to a window of 25 ms. The writes' own kernel timestamps narrow
/// it down: a write seen before the attach call returned proves the probes were live then, and
/// likewise at the end; without such evidence the window is the part surely live.
fn active_window(
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

/// The clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC), in ns.
fn kernel_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The cost of a probed write, measured once per tracer process: `serve --binary` runs one live
/// loop per target process, and calibrations running side by side would time each other's probes.
fn calibrated() -> Result<Calibration> {
    static CACHE: std::sync::Mutex<Option<Calibration>> = std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = *cache {
        return Ok(c);
    }
    let c = calibrate().context("calibrating the cost of a probed write")?;
    *cache = Some(c);
    Ok(c)
}
