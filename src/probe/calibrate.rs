//! Measures what one probed map write really costs on this host: the write probe is attached to
//! two tiny functions of this process — one starting with `push rbp` (emulated by the kernel, as
//! after Go ≥1.21 prologues) and one with `sub rsp` (single-stepped, as in Go 1.19/1.20) — and a
//! loop of calls is timed, in this thread's CPU time (other load on the machine does not count),
//! with and without it. The write program's own run time is measured too (as budget mode does
//! in the target), so that a target whose program runs slower (colder caches, longer keys) can
//! be charged in proportion. Budget mode plans its duty cycle and its estimates on these numbers.
use std::mem::MaybeUninit;

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use procfs::process::{MMapPath, Process};

use super::load::{load, uprobe_multi_supported, Load, DEFAULT_RING_BYTES};
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
    /// The cost for a probe on `instruction` (as `gobin` prints it, e.g. `push rbp`).
    pub fn cost_for(&self, instruction: &str) -> f64 {
        if instruction.starts_with("push") {
            self.emulated_s
        } else {
            self.single_stepped_s
        }
    }
}

const CALLS: u32 = 20_000;

/// CPU seconds one call of `f` takes (this thread's CPU time: not slowed by other load).
fn time_calls(f: unsafe extern "C" fn(*mut u64)) -> f64 {
    let mut mem = [0u64; 8];
    let t = thread_cpu_s();
    for _ in 0..CALLS {
        // SAFETY: the callers save and restore the registers they load, and only pass `mem`
        // (live for the whole loop) to a function that adjusts the stack and returns.
        unsafe { std::hint::black_box(f)(mem.as_mut_ptr()) };
    }
    (thread_cpu_s() - t) / f64::from(CALLS)
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
        key_bytes: 8,
        stack: false,
        timestamps: false,
        goroutine_ids: false,
        goid_offset: 16, // within the buffer R14 points at
        grows: false,
        ring_bytes: DEFAULT_RING_BYTES,
        sampled: true,
    };
    // The same kind of link the session uses: a uprobe_multi link needs only CAP_BPF +
    // CAP_PERFMON, where a perf-event uprobe of an unprivileged user is refused (EACCES).
    let multi = uprobe_multi_supported();
    let mut skel = load(&mut storage, &cfg, multi).context("calibration")?;
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.window_open = 1;
    }
    let mut cost = [0.0; 2];
    let targets: [(unsafe extern "C" fn(), unsafe extern "C" fn(*mut u64)); 2] = [
        (ebpf_map_trace_calib_push, ebpf_map_trace_call_push),
        (ebpf_map_trace_calib_sub, ebpf_map_trace_call_sub),
    ];
    for (i, (probed_fn, f)) in targets.into_iter().enumerate() {
        let addr = probed_fn as usize as u64;
        let (path, off) = self_file_offset(addr)?;
        time_calls(f); // warm up
        let plain = time_calls(f);
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
        let probed = time_calls(f);
        drop(link);
        cost[i] = (probed - plain).max(0.0);
    }
    let program_ns = read_counter(&skel, Counter::CNT_PROG_NS) as f64;
    Ok(Calibration {
        emulated_s: cost[0],
        single_stepped_s: cost[1],
        program_s: program_ns / 1e9 / f64::from(2 * CALLS),
    })
}

/// Seconds one probed write costs a process of `bin` (its `mapassign_faststr` probe point's
/// kind of instruction), measured once per tracer process: `serve --binary` runs one live loop
/// per target process, and calibrations running side by side would time each other's probes.
pub fn write_cost(bin: &GoBinary) -> Result<f64> {
    static CACHE: Mutex<Option<Calibration>> = Mutex::new(None);
    let calibration = {
        let mut cache = CACHE.lock();
        match *cache {
            Some(c) => c,
            None => *cache.insert(calibrate().context("calibrating the cost of a probed write")?),
        }
    };
    let instruction = bin
        .map_functions()
        .into_iter()
        .find(|f| f.role == Role::AssignFastStr)
        .and_then(|f| f.probe.ok())
        .map(|p| p.instruction)
        .unwrap_or_else(|| "push rbp".into());
    Ok(calibration.cost_for(&instruction))
}
