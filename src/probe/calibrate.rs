//! Measures what one probed map write really costs on this host: the write probe is attached to
//! two tiny functions of this process — one starting with `push rbp` (emulated by the kernel, as
//! after Go ≥1.21 prologues, and as Go 1.17-1.20's stack-check `jbe` is) and one with `sub rsp`
//! (single-stepped, as a probe after Go 1.19/1.20's stack check would be) — and a
//! loop of calls is timed, in this thread's CPU time (other load on the machine does not count),
//! with and without it. The write program's own run time is measured too (as budget mode does
//! in the target), so that a target whose program runs slower (colder caches, longer keys) can
//! be charged in proportion. Budget mode plans its duty cycle and its estimates on these numbers.
//! Calibration has a ring of its own, small and drained between batches of calls (its records
//! are read and dropped), freed before any session's ring is made.
use std::mem::MaybeUninit;

use anyhow::{bail, Context, Result};
use libbpf_rs::RingBufferBuilder;
use parking_lot::Mutex;
use procfs::process::{MMapPath, Process};

use super::load::{load, uprobe_multi_supported, write_record_bytes, Load, MIN_RING_BYTES};
use super::session::{attach_points, read_counter};
use crate::bpf::{cookie, Counter, ProbeRole};
use crate::gobin::{GoBinary, Role};

// The probed functions, and callers that load RBX (map header), RCX (key) and R14 (g) with a
// pointer to real memory (the first argument) as a Go map write would, so the probe does the
// same reads as on a target.
std::arch::global_asm!(
    ".globl ebpf_map_trace_calib_push",
    "ebpf_map_trace_calib_push:",
    "push rbp",
    "pop rbp",
    "ret",
    ".globl ebpf_map_trace_calib_sub",
    "ebpf_map_trace_calib_sub:",
    "sub rsp, 8",
    "add rsp, 8",
    "ret",
    ".globl ebpf_map_trace_call_push",
    "ebpf_map_trace_call_push:",
    "push rbx",
    "push r14",
    "mov rbx, rdi",
    "mov rcx, rdi",
    "mov r14, rdi",
    "call ebpf_map_trace_calib_push",
    "pop r14",
    "pop rbx",
    "ret",
    ".globl ebpf_map_trace_call_sub",
    "ebpf_map_trace_call_sub:",
    "push rbx",
    "push r14",
    "mov rbx, rdi",
    "mov rcx, rdi",
    "mov r14, rdi",
    "call ebpf_map_trace_calib_sub",
    "pop r14",
    "pop rbx",
    "ret",
);

extern "C" {
    fn ebpf_map_trace_calib_push();
    fn ebpf_map_trace_calib_sub();
    fn ebpf_map_trace_call_push(mem: *mut u64);
    fn ebpf_map_trace_call_sub(mem: *mut u64);
}

/// Seconds one probed write costs the traced thread, for the kind of instruction probed.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub emulated_s: f64,
    pub single_stepped_s: f64,
    /// Seconds the write program's body ran per call (part of both costs above).
    pub program_s: f64,
}

impl Calibration {
    /// The cost for a probe on an instruction the kernel emulates (`push rbp`, a stack check's
    /// `jbe`) or single-steps (`sub rsp`).
    pub fn cost_for(&self, emulated: bool) -> f64 {
        if emulated {
            self.emulated_s
        } else {
            self.single_stepped_s
        }
    }
}

const CALLS: u32 = 20_000;
/// Key bytes the calibration captures (a 64-bit key), and the calls between two drains of its
/// ring: their records fill at most half of it.
const KEY_BYTES: u32 = 8;
const BATCH: u32 = MIN_RING_BYTES / 2 / write_record_bytes(KEY_BYTES, false);

/// CPU seconds one call of `f` takes (this thread's CPU time: not slowed by other load), in
/// batches with `drain` (not timed) between them.
fn time_calls(f: unsafe extern "C" fn(*mut u64), drain: &mut dyn FnMut()) -> f64 {
    let mut mem = [0u64; 8];
    let mut spent = 0.0;
    let mut done = 0;
    while done < CALLS {
        let n = BATCH.min(CALLS - done);
        let t = thread_cpu_s();
        for _ in 0..n {
            // SAFETY: the callers save and restore the registers they load, and only pass `mem`
            // (live for the whole loop) to a function that adjusts the stack and returns.
            unsafe { std::hint::black_box(f)(mem.as_mut_ptr()) };
        }
        spent += thread_cpu_s() - t;
        done += n;
        drain();
    }
    spent / f64::from(CALLS)
}

/// This thread's CPU time, in seconds.
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The file and file offset of a code address of this process, from its memory maps.
fn self_file_offset(addr: u64) -> Result<(std::path::PathBuf, u64)> {
    let maps = Process::myself()?.maps()?;
    for m in maps {
        let (lo, hi) = m.address;
        if let (true, MMapPath::Path(path)) = (addr >= lo && addr < hi, m.pathname) {
            return Ok((path, addr - lo + m.offset));
        }
    }
    bail!("address {addr:#x} is not mapped from a file")
}

pub fn calibrate() -> Result<Calibration> {
    let mut storage = MaybeUninit::uninit();
    let pid = std::process::id();
    let cfg = Load {
        pid,
        key_bytes: KEY_BYTES,
        stack: false,
        timestamps: false,
        goroutine_ids: false,
        goid_offset: 16, // within the buffer R14 points at
        grows: false,
        sync: false,
        sync_hashtrie: false,
        ring_bytes: MIN_RING_BYTES,
        sampled: true,
        slot_sets: 0, // budget mode sends each write as a record
    };
    // The same kind of link the session uses: a uprobe_multi link needs only CAP_BPF +
    // CAP_PERFMON, where a perf-event uprobe of an unprivileged user is refused (EACCES).
    let multi = uprobe_multi_supported();
    let mut skel = load(&mut storage, &cfg, multi).context("calibration")?;
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.window_open = 1;
    }
    let mut ring = RingBufferBuilder::new();
    ring.add(&skel.maps.events, |_| 0)
        .context("calibration: its ring buffer")?;
    let ring = ring.build().context("calibration: its ring buffer")?;
    let mut drain = || {
        let _ = ring.consume();
    };
    let mut cost = [0.0; 2];
    let targets: [(unsafe extern "C" fn(), unsafe extern "C" fn(*mut u64)); 2] = [
        (ebpf_map_trace_calib_push, ebpf_map_trace_call_push),
        (ebpf_map_trace_calib_sub, ebpf_map_trace_call_sub),
    ];
    for (i, (probed_fn, f)) in targets.into_iter().enumerate() {
        let addr = probed_fn as usize as u64;
        let (path, off) = self_file_offset(addr)?;
        time_calls(f, &mut drain); // warm up
        let plain = time_calls(f, &mut drain);
        // A fast64 write: its key is the register the caller loaded, as a Go map write's would be.
        let role = u64::from(ProbeRole::ROLE_ASSIGN_FAST64.0);
        let link = attach_points(
            &skel.progs.on_mapassign_multi,
            &skel.progs.on_mapassign,
            multi,
            &[(off, cookie(addr, role))],
            pid,
            &path,
        )
        .context("calibration: attaching")?;
        let probed = time_calls(f, &mut drain);
        drop(link);
        cost[i] = (probed - plain).max(0.0);
    }
    drop(ring);
    let program_ns = read_counter(&skel, Counter::CNT_PROG_NS) as f64;
    Ok(Calibration {
        emulated_s: cost[0],
        single_stepped_s: cost[1],
        program_s: program_ns / 1e9 / f64::from(2 * CALLS),
    })
}

/// Calibrated seconds one probe hit of each kind costs the target, and the write program's own
/// run time in the calibration (to compare with its run time in place).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProbeCosts {
    /// A map write's probe (emulated: `push rbp`, or on Go 1.17-1.20 the stack check's `jbe`).
    pub write_s: f64,
    /// A growth function's entry probe.
    pub grow_s: f64,
    /// A RET probe (a growth function's, a `sync.Map` method's): always single-stepped.
    pub ret_s: f64,
    /// The write program's body per hit, in the calibration.
    pub program_s: f64,
    /// Whether the write probe is single-stepped (its cost in place is much less certain).
    pub write_single_stepped: bool,
}

/// How much more a single-stepped hit costs in a busy multi-threaded target than in the
/// calibration's one hot thread: up to ~4× measured (kvserver's growth RETs, ~60 µs against
/// ~14 µs); charged in the middle of 1× and 4×.
const SINGLE_STEP_IN_PLACE: f64 = 2.5;

/// What probe hits cost a process of `bin` (the kinds of instruction its probes sit on),
/// calibrated once per tracer process: `serve --binary` runs one live loop per target process,
/// and calibrations running side by side would time each other's probes.
pub fn probe_costs(bin: &GoBinary) -> Result<ProbeCosts> {
    static CACHE: Mutex<Option<Calibration>> = Mutex::new(None);
    let calibration = {
        let mut cache = CACHE.lock();
        match *cache {
            Some(c) => c,
            None => *cache.insert(calibrate().context("calibrating the cost of a probed write")?),
        }
    };
    // Whether the probe of the function of `role` sits on an emulated instruction (after Go
    // 1.21+'s stack check, or on Go 1.17-1.20's stack-check branch).
    let emulated = |role: Role| {
        bin.map_functions()
            .into_iter()
            .find(|f| f.role == role)
            .and_then(|f| f.probe.ok())
            .is_none_or(|p| p.emulated)
    };
    let write = emulated(Role::AssignFastStr);
    let in_place = |emulated: bool| {
        calibration.cost_for(emulated) * if emulated { 1.0 } else { SINGLE_STEP_IN_PLACE }
    };
    Ok(ProbeCosts {
        write_s: in_place(write),
        grow_s: in_place(emulated(Role::GrowToSmall)),
        ret_s: calibration.single_stepped_s * SINGLE_STEP_IN_PLACE,
        program_s: calibration.program_s,
        write_single_stepped: !write,
    })
}
