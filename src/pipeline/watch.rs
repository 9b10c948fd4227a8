//! The live loop shared by `top`, `trace` and `serve`: attach to a running process, keep the
//! probes on the sampler's duty cycle (budget mode) or always on (exact), take in records
//! through the intake, and every refresh hand the caller a report of what was seen.
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::RingBuffer;

use super::intake::{ring, Intake, Sink};
use super::stop::stop_requested;
use super::tracee::{Capture, Tracee};
use crate::decode::keys::Key;
use crate::decode::records::{GrowEvent, WriteEvent};
use crate::hotkeys::live::LiveCounts;
use crate::probe::calibrate::write_cost;
use crate::probe::load::preflight;
use crate::probe::process::exe_of;
use crate::probe::session::{kernel_now_ns, Session};
use crate::report::live::{refresh, Refresh, Window};
use crate::report::Meta;
use crate::sampling::window::WindowWrites;
use crate::sampling::{Mode, Sampler, Step};

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

/// Live counts, the sampling window's per-thread writes, and the caller's hooks.
struct Watched<'h, 'e> {
    counts: LiveCounts,
    window: WindowWrites,
    on_event: &'h mut OnEvent<'e>,
    on_grow: &'h mut dyn FnMut(&GrowEvent),
}

impl Sink for Watched<'_, '_> {
    fn write(&mut self, ev: &WriteEvent, key: Key) {
        self.window.observe(ev.tid, ev.ts_ns);
        self.counts.add(ev, &key);
        (self.on_event)(ev, &key);
    }

    fn grow(&mut self, g: &GrowEvent) {
        (self.on_grow)(g);
    }
}

type WatchIntake<'t, 'h, 'e> = RefCell<Intake<'t, Watched<'h, 'e>>>;

/// Runs until Ctrl-C, `--duration`, the target's exit or exec, or `on_refresh` returns false.
pub fn run_live(
    opts: &Options,
    on_event: &mut OnEvent<'_>,
    on_grow: &mut dyn FnMut(&GrowEvent),
    on_refresh: &mut dyn FnMut(Refresh) -> Result<bool>,
) -> Result<()> {
    let tracee = Tracee::open(opts.pid, &exe_of(opts.pid)?, false)?;
    preflight()?;
    let cost = match opts.mode {
        Mode::Budget => write_cost(&tracee.bin)?,
        Mode::Exact => 0.0,
    };
    let mut storage = MaybeUninit::uninit();
    let start_ns = kernel_now_ns();
    let capture = Capture {
        key_bytes: opts.key_bytes,
        stack: opts.stack,
        // Budget estimates time each window by its writes' kernel timestamps; `trace` prints
        // them. Exact counting does without.
        timestamps: opts.mode == Mode::Budget || opts.goroutine_ids,
        goroutine_ids: opts.goroutine_ids,
        sampled: opts.mode == Mode::Budget,
    };
    let mut session = tracee.session(&mut storage, capture)?;
    session.set_window(true);
    let watched = Watched {
        counts: LiveCounts::default(),
        window: WindowWrites::default(),
        on_event,
        on_grow,
    };
    let intake = RefCell::new(Intake::new(tracee.bin.types(), watched));
    let ring = ring(&session, &intake)?;
    let started = Instant::now();
    let mut sampler = Sampler::new(
        opts.mode,
        opts.overhead,
        cost,
        (start_ns, kernel_now_ns()),
        started,
    );

    let refresh_every = Duration::from_secs_f64(opts.refresh.max(0.05));
    let deadline = opts
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut next_refresh = started + refresh_every;
    let mut attached_at_refresh = Duration::ZERO;
    let mut ended: Option<String> = None;
    loop {
        ring.consume()?;
        let now = Instant::now();
        follow_duty_cycle(&mut sampler, &mut session, &ring, &intake, now)?;
        if ended.is_none() {
            ended = tracee.exec_ended();
        }
        let done = stop_requested()
            || deadline.is_some_and(|d| now >= d)
            || ended.is_some()
            || tracee.ended();
        if now >= next_refresh || done {
            let attached = sampler.attached_time(now);
            let writes = intake.borrow().sink.counts.events;
            let window = Window {
                mode: opts.mode,
                coverage: sampler.coverage(writes, now, kernel_now_ns(), done),
                attached_s: (attached - attached_at_refresh).as_secs_f64(),
                refresh_s: refresh_every.as_secs_f64(),
                overhead_percent: sampler.overhead_percent(),
            };
            attached_at_refresh = attached;
            next_refresh = now + refresh_every;
            let meta = meta(&tracee, opts, now - started, session.lost());
            let mut r = refresh_of(&tracee, &intake, &meta, &window);
            r.report.ended = ended.clone();
            if !on_refresh(r)? || done {
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

/// Attaches or detaches as the sampler says at `now` (a window's end can be followed by the next
/// one's start at once, when no gap is needed).
fn follow_duty_cycle(
    sampler: &mut Sampler,
    session: &mut Session,
    ring: &RingBuffer,
    intake: &WatchIntake,
    now: Instant,
) -> Result<()> {
    for _ in 0..2 {
        let writes = intake.borrow().sink.counts.events;
        match sampler.step(now, writes) {
            Step::Stay => break,
            Step::Detach => {
                let before = kernel_now_ns();
                session.set_window(false);
                session.detach();
                let bounds = (before, kernel_now_ns());
                // The window's last records, before its writes are counted.
                ring.consume()?;
                let mut st = intake.borrow_mut();
                let threads = st.sink.window.take();
                sampler.detached(now, bounds, st.sink.counts.events, threads);
            }
            Step::Attach => {
                let before = kernel_now_ns();
                session.attach()?;
                session.set_window(true);
                let bounds = (before, kernel_now_ns());
                // Writes consumed during the gap belong to no window's timing.
                intake.borrow_mut().sink.window.take();
                sampler.attached(bounds, Instant::now());
            }
        }
    }
    Ok(())
}

/// What the report says of the trace so far.
fn meta(tracee: &Tracee, opts: &Options, elapsed: Duration, lost: u64) -> Meta {
    Meta {
        pid: tracee.pid,
        binary: std::fs::read_link(&tracee.exe)
            .unwrap_or_else(|_| tracee.exe.clone())
            .display()
            .to_string(),
        duration_s: elapsed.as_secs_f64(),
        lost_events: lost,
        top: opts.top,
        redact: opts.redact,
    }
}

/// The refresh of the live counts (and growths) so far.
fn refresh_of(tracee: &Tracee, intake: &WatchIntake, meta: &Meta, window: &Window) -> Refresh {
    let mut st = intake.borrow_mut();
    let Intake { growth, sink, .. } = &mut *st;
    growth.finish();
    refresh(
        &tracee.bin,
        &mut sink.counts,
        &growth.resolved,
        meta,
        window,
    )
}
