//! `--binary PATH` for many processes: every process running that executable, now and later
//! (rescanned each second; containers too, as `/proc/PID/exe` is compared by device and inode),
//! gets its own live loop on its own thread; processes that exit are retired from the outputs.
//! Used by `serve`, `top` and `trace` (`follow` with their own per-process loop).
//!
//! Why one session per process rather than one pid-less attachment for the whole inode: uprobes
//! with a pid filter only plant breakpoints in that process's memory, so processes nobody asked
//! about are never slowed; each process keeps its own duty cycle, so `--overhead` holds per
//! process whatever its write rate; and the live loop, the BPF filter and the report stay as
//! they are. The cost is one BPF skeleton per process, mostly its ring buffer (measurements in
//! docs/performance.md). That suits the handful of replicas a node runs; for dozens, one shared
//! attachment (BPF `target_tgid` 0 = any, events keyed by pid) would be the better trade.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::args::LiveArgs;
use crate::pipeline::stop::{request_stop, stop_requested};

/// How often `/proc` is rescanned for new processes of the binary.
const RESCAN: Duration = Duration::from_secs(1);

/// Runs `watch(pid)` on its own thread for every process of `live.binary`, now and later, until
/// Ctrl-C, SIGTERM or `--duration`; `retired(pid)` after a process's loop ended, and
/// `tick(processes running)` about every 50 ms on the calling thread.
pub fn follow(
    live: &LiveArgs,
    watch: impl Fn(u32) -> Result<()> + Sync,
    mut retired: impl FnMut(u32),
    mut tick: impl FnMut(usize),
) -> Result<()> {
    let binary = live
        .binary
        .as_deref()
        .context("give -p PID or --binary PATH")?;
    let deadline = live
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let watch = &watch;
    std::thread::scope(|scope| {
        let mut running = HashMap::new();
        let mut seen = HashSet::new();
        let mut next_scan = Instant::now();
        let note = crate::probe::process::uninspectable_note();
        if !note.is_empty() {
            eprintln!(
                "ebpf-map-trace: warning: processes of {} may be missed{note}",
                binary.display()
            );
        }
        loop {
            if Instant::now() >= next_scan {
                next_scan = Instant::now() + RESCAN;
                for pid in crate::probe::process::processes_of(binary)? {
                    if seen.insert(pid) {
                        eprintln!("ebpf-map-trace: tracing process {pid}");
                        running.insert(pid, scope.spawn(move || watch(pid)));
                    }
                }
            }
            let ended: Vec<u32> = running
                .iter()
                .filter(|(_, h)| h.is_finished())
                .map(|(p, _)| *p)
                .collect();
            for pid in ended {
                if let Some(h) = running.remove(&pid) {
                    retire(pid, h, &mut retired);
                }
            }
            tick(running.len());
            if stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
                request_stop();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The live loops see the stop request, detach their probes and return; each process is
        // retired as on its exit (so `top --json` prints its final counts).
        for (pid, h) in running {
            retire(pid, h, &mut retired);
        }
        Ok(())
    })
}

/// Joins the ended loop of `pid`, says why it failed if it did, and calls `retired(pid)`.
fn retire(
    pid: u32,
    h: std::thread::ScopedJoinHandle<'_, Result<()>>,
    retired: &mut impl FnMut(u32),
) {
    if let Ok(Err(e)) = h.join() {
        eprintln!("ebpf-map-trace: process {pid}: {}", super::one_line(&e));
    }
    retired(pid);
}

/// For `top` and `trace`: at least one process of `binary` runs now, and it is a Go program we
/// can trace (else one clear error up front instead of an empty view).
pub fn require_running(binary: &std::path::Path) -> Result<()> {
    let pids = crate::probe::process::processes_of(binary)?;
    let Some(pid) = pids.first() else {
        anyhow::bail!(
            "no running process of {}{}",
            binary.display(),
            crate::probe::process::uninspectable_note()
        );
    };
    let exe = crate::probe::process::exe_of(*pid)?;
    crate::gobin::GoBinary::open(&exe).with_context(|| exe.display().to_string())?;
    Ok(())
}
