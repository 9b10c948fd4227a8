//! A tracing session on one process: the programs loaded for it (see `load`) with its key plans
//! installed, attached at every probe point (see `points`), owning the links: exact mode keeps
//! them attached, budget mode detaches and re-attaches them per window; dropping the session
//! detaches them.
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, UprobeMultiOpts, UprobeOpts};

use super::load::{load, preflight, uprobe_multi_supported, Load};
use super::points::Points;
use super::tables::Slots;
use crate::bpf::{Counter, KeyPlan, MapwriteSkel};
use crate::gobin::GoBinary;

/// The programs' counters, summed over CPUs, since the session started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Write probe hits (map writes, deletes, clears; `sync.Map` methods' entries and RETs;
    /// window open or not).
    pub hits: u64,
    /// Map operations the ring buffer had no room for (neither observed nor counted elsewhere).
    pub lost: u64,
    /// Growth records the ring buffer had no room for.
    pub grow_lost: u64,
    pub read_failed: u64,
    /// Growth entry and RET probe hits (window open or not).
    pub grow_hits: u64,
    pub grow_ret_hits: u64,
    /// `sync.Map` methods' RET probe hits (in `hits` too; single-stepped).
    pub sync_ret_hits: u64,
    /// Nanoseconds the write program's body ran (budget mode only).
    pub prog_ns: u64,
    /// Writes that took an aggregation slot for their key (each sent its key as a record).
    pub slot_taken: u64,
    /// ...of those, slots taken from another key (whose count the record carried).
    pub evicted: u64,
    /// Writes whose key met another key with the same fingerprint (told apart by its bytes).
    pub collisions: u64,
    /// Writes that could not be aggregated and were sent as records.
    pub as_record: u64,
    /// Hits of probes on a stack check's branch whose function grew its stack and started
    /// again (not counted: the re-entry is), map operations' and growths'.
    pub stack_reentries: u64,
    pub grow_stack_reentries: u64,
}

pub struct Session<'obj> {
    pub skel: MapwriteSkel<'obj>,
    /// With counts aggregated in the kernel: the slots, mapped.
    pub slots: Option<Slots>,
    links: Vec<Link>,
    /// Whether `set_alarm` set an alarm (the programs' count is 0 both unset and rung).
    alarm_set: bool,
    points: Points,
    pid: u32,
    exe: PathBuf,
    multi: bool,
}

/// Bytes of a plain-old-data value.
fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a Copy #[repr(C)] struct generated from C with no padding-sensitive reads
    // on the other side; the slice lives no longer than the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

impl<'obj> Session<'obj> {
    /// Loads the programs configured by `cfg` (its `pid` is the process running `exe`), installs
    /// `plans` (by map type address) and attaches.
    pub fn start(
        storage: &'obj mut MaybeUninit<OpenObject>,
        bin: &GoBinary,
        exe: &Path,
        cfg: &Load,
        plans: &[(u64, KeyPlan)],
    ) -> Result<Session<'obj>> {
        preflight()?;
        let points = Points::of(bin, cfg.sampled)?;
        let multi = uprobe_multi_supported();
        let cfg = Load {
            grows: points.has_grows(),
            sync: points.has_sync(),
            sync_hashtrie: points.sync_hashtrie,
            ..cfg.clone()
        };
        let skel = load(storage, &cfg, multi)?;
        for (addr, plan) in plans {
            skel.maps
                .plans
                .update(&addr.to_le_bytes(), pod_bytes(plan), MapFlags::ANY)
                .context("installing a key plan")?;
        }
        let slots = if cfg.slot_sets > 0 {
            Some(Slots::new(&skel.maps.slots)?)
        } else {
            None
        };
        let mut session = Session {
            skel,
            slots,
            links: Vec::new(),
            alarm_set: false,
            points,
            pid: cfg.pid,
            exe: exe.to_path_buf(),
            multi,
        };
        // Exact mode counts from the first hit; budget mode opens each window itself.
        session.set_window(!cfg.sampled);
        session.attach()?;
        Ok(session)
    }

    /// Opens or closes the window: while it is closed the probes only count their hits.
    pub fn set_window(&mut self, open: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: `window_open` is a u32 in the BPF object's .bss, mapped into this process
            // for the skeleton's lifetime; a volatile store keeps it where the caller put it
            // relative to the clock reads around it.
            unsafe { std::ptr::write_volatile(&mut bss.window_open, u32::from(open)) };
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Budget mode's alarm: the probes wake the ring's reader (a `REC_ALARM` record) once they
    /// have taken `hits` more hits; `None` turns it off.
    pub fn set_alarm(&mut self, hits: Option<u64>) {
        self.alarm_set = hits.is_some();
        let left = hits.map_or(0, |h| h.clamp(1, i64::MAX as u64) as i64);
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: `window_alarm` is an i64 in the BPF object's .bss, mapped into this process
            // for the skeleton's lifetime; the programs only decrement it atomically, and a
            // store that races with them just sets the count afresh.
            unsafe { std::ptr::write_volatile(&mut bss.window_alarm, left) };
        }
    }

    /// Whether the alarm set last has rung (its hits are spent); false with none set.
    pub fn alarm_rang(&self) -> bool {
        self.alarm_set
            && self
                .skel
                .maps
                .bss_data
                .as_deref()
                // SAFETY: as in `set_alarm`: a read of the mapped .bss.
                .is_some_and(|bss| unsafe { std::ptr::read_volatile(&bss.window_alarm) } <= 0)
    }

    /// Whether some probes are single-stepped RETs of `sync.Map` methods (the dearest hits).
    pub fn has_sync_rets(&self) -> bool {
        !self.points.sync_rets.is_empty()
    }

    /// Attaches every probe (no-op when attached). Budget mode calls this at each window start.
    pub fn attach(&mut self) -> Result<()> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let t_attach = std::time::Instant::now();
        let progs = &self.skel.progs;
        let (pid, exe, multi) = (self.pid, self.exe.as_path(), self.multi);
        let mut links = attach_points(
            &progs.on_mapassign_multi,
            &progs.on_mapassign,
            multi,
            &self.points.writes,
            pid,
            exe,
        )?;
        if self.points.has_grows() {
            links.extend(attach_points(
                &progs.on_grow_multi,
                &progs.on_grow,
                multi,
                &self.points.grow_entries,
                pid,
                exe,
            )?);
        }
        if !self.points.grow_rets.is_empty() {
            links.extend(attach_points(
                &progs.on_grow_ret_multi,
                &progs.on_grow_ret,
                multi,
                &self.points.grow_rets,
                pid,
                exe,
            )?);
        }
        if self.points.has_sync() {
            links.extend(attach_points(
                &progs.on_sync_multi,
                &progs.on_sync,
                multi,
                &self.points.sync_entries,
                pid,
                exe,
            )?);
            if !self.points.sync_rets.is_empty() {
                links.extend(attach_points(
                    &progs.on_sync_ret_multi,
                    &progs.on_sync_ret,
                    multi,
                    &self.points.sync_rets,
                    pid,
                    exe,
                )?);
            }
        }
        self.links = links;
        if std::env::var_os("EMT_DEBUG").is_some() {
            eprintln!(
                "attached {} links in {:?}",
                self.links.len(),
                t_attach.elapsed()
            );
        }
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Map operations the ring buffer had no room for (the kernel's per-CPU counter, summed).
    pub fn lost(&self) -> u64 {
        read_counter(&self.skel, Counter::CNT_LOST)
    }

    /// Kernel-side counters summed over CPUs.
    pub fn counters(&self) -> Counters {
        let read = |idx: Counter| read_counter(&self.skel, idx);
        Counters {
            hits: read(Counter::CNT_HITS),
            lost: read(Counter::CNT_LOST),
            grow_lost: read(Counter::CNT_GROW_LOST),
            read_failed: read(Counter::CNT_READ_FAILED),
            grow_hits: read(Counter::CNT_GROW_HITS),
            grow_ret_hits: read(Counter::CNT_GROW_RET_HITS),
            sync_ret_hits: read(Counter::CNT_SYNC_RET_HITS),
            prog_ns: read(Counter::CNT_PROG_NS),
            slot_taken: read(Counter::CNT_SLOT_TAKEN),
            evicted: read(Counter::CNT_EVICTED),
            collisions: read(Counter::CNT_COLLISIONS),
            as_record: read(Counter::CNT_AS_RECORD),
            stack_reentries: read(Counter::CNT_STACK_REENTRY),
            grow_stack_reentries: read(Counter::CNT_GROW_STACK_REENTRY),
        }
    }

    /// Detaches every probe now (also done on drop). Each link's release takes its probes out of
    /// the target's text at once, then waits for a grace period (tens of ms): released one
    /// after another, the last link's probes would go on trapping through all the waits before
    /// it. So they are released at once, each on its own thread, and the waits overlap.
    pub fn detach(&mut self) {
        let links = std::mem::take(&mut self.links);
        let debug = std::env::var_os("EMT_DEBUG").is_some();
        let (t0, h0) = (
            std::time::Instant::now(),
            debug.then(|| self.counters().hits),
        );
        if links.len() < 2 {
            drop(links);
        } else {
            std::thread::scope(|scope| {
                for link in links {
                    scope.spawn(move || drop(link));
                }
            });
        }
        if let Some(h0) = h0 {
            let tail = self.counters().hits.saturating_sub(h0);
            eprintln!(
                "detached in {:?}, {tail} probe hits meanwhile",
                t0.elapsed()
            );
        }
    }
}

/// One of the programs' counters, summed over CPUs (0 if it cannot be read).
pub fn read_counter(skel: &MapwriteSkel, idx: Counter) -> u64 {
    skel.maps
        .counters
        .lookup_percpu(&idx.0.to_le_bytes(), MapFlags::ANY)
        .ok()
        .flatten()
        .map(|per_cpu| {
            per_cpu
                .iter()
                .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap_or_default()))
                .sum()
        })
        .unwrap_or(0)
}

/// Attaches one program at every (file offset, cookie) point, one link per point (a uprobe_multi
/// link of one point where the kernel has them, else a classic uprobe). Not one link for all: the
/// kernel releases a link's points one after another, ~5 ms each here, so a 16-point link kept
/// trapping for ~90 ms after a budget window closed (200-670 hits, each a cost to the target);
/// links of one point, released at once on their own threads ([`Session::detach`]), take their
/// points out together (20-100 hits).
pub fn attach_points(
    prog_multi: &libbpf_rs::ProgramMut<'_>,
    prog_single: &libbpf_rs::ProgramMut<'_>,
    multi: bool,
    points: &[(u64, u64)],
    pid: u32,
    exe: &Path,
) -> Result<Vec<Link>> {
    points
        .iter()
        .map(|&(off, cookie)| {
            if multi {
                let opts = UprobeMultiOpts {
                    offsets: vec![off as usize],
                    cookies: vec![cookie],
                    ..Default::default()
                };
                return prog_multi
                    .attach_uprobe_multi_with_opts(pid as i32, exe, "", opts)
                    .map_err(|e| attach_error(e.into(), pid));
            }
            let opts = UprobeOpts {
                cookie,
                ..Default::default()
            };
            prog_single
                .attach_uprobe_with_opts(pid as i32, exe, off as usize, opts)
                .map_err(|e| attach_error(e.into(), pid))
        })
        .collect()
}

fn attach_error(e: anyhow::Error, pid: u32) -> anyhow::Error {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return anyhow!("process exited: {pid} ended before the probes were attached");
    }
    e.context(format!("attaching uprobes to process {pid}"))
}

/// The clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC), in ns: records' times compare with it.
pub fn kernel_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
