//! A recording for `run`: every write of one process counted exactly — a command started held
//! and released once the probes are in (traced from its first instruction), or a running
//! process — until it exits or execs, Ctrl-C, or the deadline.
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use super::intake::{aggregation, Intake, Sink};
use super::ring::Ring;
use super::stop::stop_requested;
use super::tracee::{Capture, Tracee};
use crate::bpf::MapOp;
use crate::decode::keys::Key;
use crate::decode::records::{HeaderRead, WriteEvent};
use crate::hotkeys::exact::ExactCounts;
use crate::hotkeys::stacks::StackCounts;
use crate::probe::launch::HeldChild;
use crate::probe::load::MAX_RING_BYTES;
use crate::report::Aggregation;

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
            (Target::Child(c), None) => {
                if c.try_wait().is_none() {
                    // `--duration` ended the trace, not the command: its exit status is run's.
                    eprintln!(
                        "tracing stopped; waiting for the command (pid {}) to exit, untraced \
                         (Ctrl-C stops it)",
                        c.pid
                    );
                }
                c.wait()
            }
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
    /// Map operations the ring buffer had no room for.
    pub lost: u64,
    /// Growth records the ring buffer had no room for.
    pub lost_growths: u64,
    /// Map operations' probe hits at a stack check whose function started again.
    pub stack_check_reentries: u64,
    /// How the writes were counted in the kernel, when they were.
    pub aggregation: Option<Aggregation>,
    /// Why the trace ended early (an exec).
    pub ended: Option<String>,
    /// The child's exit status, when it exited during the recording.
    pub exit_status: Option<i32>,
}

/// Exact counts, and writes per stack when asked for.
struct Counted {
    counts: ExactCounts,
    stacks: Option<StackCounts>,
}

impl Sink for Counted {
    fn write(&mut self, ev: &WriteEvent, key: Key) {
        if let Some(s) = self.stacks.as_mut().filter(|_| ev.op == MapOp::OP_WRITE) {
            s.add(ev, &key);
        }
        self.counts.add(ev, key);
    }

    fn counted(&mut self, ev: &WriteEvent, key: &Key, n: u64) {
        self.counts.add_counted(ev, key, n);
    }

    fn header(&mut self, h: &HeaderRead) {
        self.counts.header_read(h.map_type, h.map_ptr, &h.header);
    }
}

/// How often the kernel's slots are read while recording: their counts are exact whenever they
/// are read, so this only tells the programs which keys were written lately (the slots they
/// give up first when a new key needs one).
const DRAIN_EVERY: Duration = Duration::from_millis(250);

/// The loop's pause after reading the ring: short while records stream in (more than
/// [`BUSY_RECORDS`] since the last read), longer while they do not. At the longer pause a ring
/// of ~300k short records holds 20 ms of 15M records/s (and the next read comes 2 ms after).
const POLL_BUSY: Duration = Duration::from_millis(2);
const POLL_QUIET: Duration = Duration::from_millis(20);
const BUSY_RECORDS: u64 = 1000;

/// Records `tracee` (the process of `target`) until it ends, Ctrl-C or `opts.duration`.
pub fn record(tracee: &Tracee, target: &mut Target, opts: Options) -> Result<Recording> {
    let mut storage = MaybeUninit::uninit();
    let mut session = tracee.session(
        &mut storage,
        Capture {
            key_bytes: opts.key_bytes,
            stack: opts.stacks,
            // Writes by stack need each write; counts alone are aggregated in the kernel.
            aggregate: !opts.stacks,
            // Nothing is known of a launched command's rate: the largest ring from the start.
            ring_bytes: MAX_RING_BYTES,
            ..Capture::default()
        },
    )?;
    let sink = Counted {
        counts: ExactCounts::default(),
        stacks: opts.stacks.then(StackCounts::exact),
    };
    let intake = RefCell::new(Intake::new(tracee, sink));
    let ring = Ring::new(&session, &intake, MAX_RING_BYTES)?;

    let started = Instant::now();
    let started_wall = SystemTime::now();
    if let Target::Child(c) = target {
        c.release()?;
    }
    let deadline = opts
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let (mut exit_status, mut ended) = (None, None);
    let mut next_drain = started + DRAIN_EVERY;
    let mut records_before = 0;
    loop {
        if Instant::now() >= next_drain {
            ring.take_all(&session)?;
            next_drain = Instant::now() + DRAIN_EVERY;
        }
        ring.consume()?;
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
        // A ring that filled since the last read is read again soon; a quiet one (counts
        // aggregated in the kernel send few records) is left longer, which spares this loop.
        let records = intake.borrow().records;
        let busy = records - records_before > BUSY_RECORDS;
        records_before = records;
        std::thread::sleep(if busy { POLL_BUSY } else { POLL_QUIET });
    }
    let elapsed = started.elapsed();
    ring.consume()?;
    session.detach();
    // No program runs any more: the last records, then the slots' final counts.
    ring.take_all(&session)?;
    let counters = session.counters();
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
        lost: counters.lost,
        lost_growths: counters.grow_lost,
        stack_check_reentries: counters.stack_reentries,
        aggregation: aggregation(&session),
        ended,
        exit_status,
    })
}
