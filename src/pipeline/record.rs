//! A recording for `run`: every write of one process counted exactly — a command started held
//! and released once the probes are in (traced from its first instruction), or a running
//! process — until it exits or execs, Ctrl-C, or the deadline.
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use super::intake::{ring, Intake, Sink};
use super::stop::stop_requested;
use super::tracee::{Capture, Tracee};
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;
use crate::hotkeys::exact::ExactCounts;
use crate::hotkeys::stacks::StackCounts;
use crate::probe::launch::HeldChild;

/// The process a recording follows.
pub enum Target {
    /// A command started by us, held before its exec.
    Child(HeldChild),
    Running(u32),
}

impl Target {
    pub fn pid(&self) -> u32 {
        match self {
            Target::Child(c) => c.pid,
            Target::Running(p) => *p,
        }
    }

    /// The exit status to report: the child's (`seen` if it ended during the recording, else
    /// waited for now), 0 for a process we did not start.
    pub fn exit_status(&mut self, seen: Option<i32>) -> i32 {
        match (self, seen) {
            (_, Some(s)) => s,
            (Target::Child(c), None) => c.wait(),
            (Target::Running(_), None) => 0,
        }
    }
}

/// What `run` asks for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub key_bytes: u32,
    /// Count writes per goroutine stack too (`--pprof`, `--folded`).
    pub stacks: bool,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
}

/// What a recording counted.
pub struct Recording {
    /// Every write, with the growths resolved onto their maps.
    pub counts: ExactCounts,
    /// Writes per goroutine stack, when asked for.
    pub stacks: Option<StackCounts>,
    pub started: SystemTime,
    pub elapsed: Duration,
    /// Writes the ring buffer had no room for.
    pub lost: u64,
    /// Why the trace ended early (an exec).
    pub ended: Option<String>,
    /// The child's exit status, when it exited during the recording.
    pub exit_status: Option<i32>,
}

/// Exact counts, and stacks when asked for.
struct Counted {
    counts: ExactCounts,
    stacks: Option<StackCounts>,
}

impl Sink for Counted {
    fn write(&mut self, ev: &WriteEvent, key: Key) {
        if let Some(s) = &mut self.stacks {
            s.add(ev, &key);
        }
        self.counts.add(ev, key);
    }
}

/// Records `tracee` (the process of `target`) until it ends, Ctrl-C or `opts.duration`.
pub fn record(tracee: &Tracee, target: &mut Target, opts: Options) -> Result<Recording> {
    let mut storage = MaybeUninit::uninit();
    let mut session = tracee.session(
        &mut storage,
        Capture {
            key_bytes: opts.key_bytes,
            stack: opts.stacks,
            ..Capture::default()
        },
    )?;
    let sink = Counted {
        counts: ExactCounts::default(),
        stacks: opts.stacks.then(StackCounts::exact),
    };
    let intake = RefCell::new(Intake::new(tracee.bin.types(), sink));
    let ring = ring(&session, &intake)?;

    let started = Instant::now();
    let started_wall = SystemTime::now();
    if let Target::Child(c) = target {
        c.release()?;
    }
    let deadline = opts
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let (mut exit_status, mut ended) = (None, None);
    loop {
        ring.consume().context("reading events")?;
        if stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        ended = tracee.exec_ended();
        if ended.is_some() {
            break;
        }
        match target {
            Target::Child(c) => {
                exit_status = c.try_wait();
                if exit_status.is_some() {
                    break;
                }
            }
            Target::Running(_) => {
                if tracee.ended() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    ring.consume().context("reading events")?;
    session.detach();
    ring.consume().context("reading events")?;
    let lost = session.lost();
    drop(ring);

    let Intake {
        mut growth, sink, ..
    } = intake.into_inner();
    let Counted { mut counts, stacks } = sink;
    growth.finish();
    counts.add_growth(growth.resolved);
    Ok(Recording {
        counts,
        stacks,
        started: started_wall,
        elapsed,
        lost,
        ended,
        exit_status,
    })
}
