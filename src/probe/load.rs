//! Opening and loading the BPF object for one process: what the kernel and our privileges must
//! give first (`preflight`), the programs' read-only configuration, which program kind loads
//! (one uprobe_multi link for all points where the kernel has it, else one link per point), and
//! the ring buffer's size — all set between open and load.
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;
use procfs::process::Process;
use procfs::sys::kernel::Version;

use crate::bpf::{MapwriteSkel, MapwriteSkelBuilder, KEY_MAX};

/// The ring buffer's size when the caller has no better estimate: room for ~100k full write
/// records, or ~300k short ones, between two reads.
pub const DEFAULT_RING_BYTES: u32 = 64 << 20;

/// The programs' configuration for one load.
#[derive(Clone, Debug)]
pub struct Load {
    /// The only process whose writes are recorded.
    pub pid: u32,
    /// Key bytes captured per write (capped at `KEY_MAX`).
    pub key_bytes: u32,
    /// Capture each write's goroutine stack (frame-pointer walk).
    pub stack: bool,
    /// Capture each write's kernel time.
    pub timestamps: bool,
    /// Capture each write's goroutine id.
    pub goroutine_ids: bool,
    /// Offset of the goroutine id in the runtime's `g` (0: unknown).
    pub goid_offset: u32,
    /// Load the growth programs too.
    pub grows: bool,
    /// Size of the ring buffer in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Budget mode: writes count only while a window is open (it starts closed), the write
    /// program times itself, and growths of small maps are recorded at their entry (no
    /// single-stepped RET probes).
    pub sampled: bool,
}

/// Checks what the kernel and our privileges must give before anything is loaded.
pub fn preflight() -> Result<()> {
    // Root counts only with its capabilities: in a container, root may have lost some.
    let missing = missing_caps();
    if !missing.is_empty() {
        bail!(
            "missing privileges: tracing needs root, or CAP_BPF and CAP_PERFMON (this process lacks {}; e.g. sudo ebpf-map-trace ...)",
            missing.join(" and ")
        );
    }
    if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        bail!("this kernel has no uprobes (CONFIG_UPROBE_EVENTS): /sys/bus/event_source/devices/uprobe is missing");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): BPF programs cannot be verified here");
    }
    Ok(())
}

/// CAP_BPF and CAP_PERFMON, those missing from our effective set.
fn missing_caps() -> Vec<&'static str> {
    let capeff = Process::myself()
        .and_then(|me| me.status())
        .map_or(0, |s| s.capeff);
    [(39, "CAP_BPF"), (38, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| capeff & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

/// Whether this kernel has uprobe_multi links (Linux 6.6 and later).
pub fn uprobe_multi_supported() -> bool {
    Version::current().is_ok_and(|v| v >= Version::new(6, 6, 0))
}

/// Opens, configures and loads the programs; `multi` picks the uprobe_multi programs (else the
/// per-point ones).
pub fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    cfg: &Load,
    multi: bool,
) -> Result<MapwriteSkel<'obj>> {
    let mut open = MapwriteSkelBuilder::default()
        .open(storage)
        .context("opening the BPF object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| anyhow!("BPF object has no rodata"))?;
    rodata.target_tgid = cfg.pid;
    rodata.key_bytes = cfg.key_bytes.min(KEY_MAX as u32);
    rodata.capture_stack = u32::from(cfg.stack);
    rodata.write_time = u32::from(cfg.timestamps);
    rodata.write_goid = u32::from(cfg.goroutine_ids);
    rodata.goid_offset = cfg.goid_offset;
    rodata.time_programs = u32::from(cfg.sampled);
    open.maps
        .events
        .set_max_entries(cfg.ring_bytes)
        .context("sizing the ring buffer")?;
    // Either the uprobe_multi programs or the per-point ones, not both.
    let progs = &mut open.progs;
    progs.on_mapassign_multi.set_autoload(multi);
    progs.on_mapassign.set_autoload(!multi);
    progs.on_grow_multi.set_autoload(multi && cfg.grows);
    progs.on_grow_ret_multi.set_autoload(multi && cfg.grows);
    progs.on_grow.set_autoload(!multi && cfg.grows);
    progs.on_grow_ret.set_autoload(!multi && cfg.grows);
    open.load().map_err(|e| load_error(e.into()))
}

fn load_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        anyhow!("missing privileges: loading BPF needs root, or CAP_BPF and CAP_PERFMON")
    } else {
        e.context("loading the BPF programs")
    }
}
