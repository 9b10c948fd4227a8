//! Opening and loading the BPF object for one process: what the kernel and our privileges must
//! give first (`preflight`), the programs' read-only configuration, which program kind loads
//! (uprobe_multi links where the kernel has them, else classic uprobes; one link per point), and
//! the ring buffer's size (sized here from the mode and the write rate) — all set between open
//! and load.
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;
use procfs::process::Process;
use procfs::sys::kernel::Version;

use crate::bpf::{
    MapwriteSkel, MapwriteSkelBuilder, RawWriteEvent, EVENT_HEADER, KEY_MAX, KEY_SMALL, SLOT_WAYS,
};

/// The largest ring: room for ~260k short write records, what a saturated target on a few
/// cores writes while the consumer pauses. Exact mode's ring grows to it from
/// [`EXACT_RING_BYTES`] when the target sends that much (`pipeline::ring`).
pub const MAX_RING_BYTES: u32 = 64 << 20;
/// Exact mode's first ring: ~65k short records, 65 ms of a saturated target's writes when each
/// is a record (the consumer reads every 2–20 ms, and grows the ring once a quarter waits).
pub const EXACT_RING_BYTES: u32 = 16 << 20;
/// Exact mode's ring bytes mapped at once at most: the largest ring and, while it drains, the
/// first one it replaced.
pub const EXACT_RINGS_AT_MOST: u32 = MAX_RING_BYTES + EXACT_RING_BYTES;
/// The smallest ring: ~1,100 short write records.
pub const MIN_RING_BYTES: u32 = 256 << 10;
/// Budget mode's largest ring: a period's budget of records at 0.15 µs a write (cheaper writes
/// are drained while their window is open).
pub const MAX_BUDGET_RING_BYTES: u32 = 16 << 20;
/// Growths in flight at once (goroutines inside a growth function between its entry and RET
/// probes): at most one per running thread, far fewer than this (the object's 16,384 entries
/// are preallocated: 2.6 MiB of kernel memory per traced process, 170 KiB at this size).
const GROWS_IN_FLIGHT: u32 = 1024;
/// Bytes of growth records next to the writes' (two short records per growth; growths are rare
/// next to writes, at most one per doubling of a map).
const GROWTH_ROOM: u32 = 64 << 10;

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
    /// Load the `sync.Map` programs too; the methods are the hash-trie's (Go 1.24+).
    pub sync: bool,
    pub sync_hashtrie: bool,
    /// Size of the ring buffer in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Budget mode: writes count only while a window is open (it starts closed), the write
    /// program times itself, and growths of small maps are recorded at their entry (no
    /// single-stepped RET probes).
    pub sampled: bool,
    /// Count writes in the kernel: aggregation sets per CPU (a power of two, see
    /// [`default_slot_sets`]); 0 sends every write as a record (stacks, `trace`).
    pub slot_sets: u32,
}

/// Aggregation sets per CPU for this machine: ~32k slots of 328 bytes (~10 MiB) in all, at least
/// 64 sets (256 slots) per CPU; `sampled` (budget mode, which sees ~1 % of the writes and ranks
/// at most 256 keys per map) an eighth of that, at least 16 sets per CPU: the table is scanned
/// at every window's close, and mapped into the agent's memory. Keys beyond that take turns in
/// the slots (each turn sends the evicted key's count), so no size is too small to count exactly;
/// `EBPF_MAP_TRACE_SLOT_SETS` (a power of two) overrides it: tests use a tiny table to make keys
/// take turns. Not an option: no user needs it.
pub fn default_slot_sets(sampled: bool) -> Result<u32> {
    if let Ok(v) = std::env::var("EBPF_MAP_TRACE_SLOT_SETS") {
        return match v.parse::<u32>() {
            Ok(n) if n.is_power_of_two() => Ok(n),
            _ => bail!("EBPF_MAP_TRACE_SLOT_SETS must be a power of two, not {v:?}"),
        };
    }
    let cpus = libbpf_rs::num_possible_cpus().context("counting the CPUs")? as u32;
    let (slots, least) = if sampled { (4_096, 16) } else { (32_768, 64) };
    let sets = (slots / SLOT_WAYS as u32 / cpus.max(1)).max(least);
    Ok(1 << sets.ilog2())
}

/// Tests: `EBPF_MAP_TRACE_WEAK_FINGERPRINT=1` gives every key of one map, site and length the
/// same fingerprint (the kernel tells them apart by their bytes alone). Not an option.
fn weak_fingerprint() -> bool {
    std::env::var_os("EBPF_MAP_TRACE_WEAK_FINGERPRINT").is_some_and(|v| v == "1")
}

/// Slots in the aggregation table for `sets` per CPU (one when aggregation is off: a map
/// cannot be empty).
fn slot_entries(sets: u32) -> Result<u32> {
    if sets == 0 {
        return Ok(1);
    }
    let cpus = libbpf_rs::num_possible_cpus().context("counting the CPUs")? as u64;
    u32::try_from(cpus * u64::from(sets) * SLOT_WAYS as u64)
        .map_err(|_| anyhow!("{sets} aggregation sets per CPU are too many for {cpus} CPUs"))
}

/// Bytes one write record takes in the ring, its 8-byte ring header included (as the write
/// program sizes it: the fixed part and a key area twice the captured bytes' class, or the
/// whole record with its stack).
pub const fn write_record_bytes(key_bytes: u32, stack: bool) -> u32 {
    let body = if stack {
        std::mem::size_of::<RawWriteEvent>()
    } else if key_bytes as usize <= KEY_SMALL {
        EVENT_HEADER + 2 * KEY_SMALL
    } else {
        EVENT_HEADER + 2 * KEY_MAX
    };
    (body as u32).next_multiple_of(8) + 8
}

/// Budget mode's smallest ring (~4,500 short records).
pub const MIN_BUDGET_RING_BYTES: u32 = 1 << 20;

/// Budget mode's ring, whatever the target's rate: a window ends once it has spent its share of
/// the budget, so the records of one period are about `overhead` × 1 s ÷ the cost of a probed
/// write (1 % at 0.5 µs: 20k, 5.1 MB of short records); the ring holds them all even if the
/// consumer drained nothing during the window (a saturated tight loop's windows come faster
/// than the consumer drains; a quarter of that lost records).
pub fn budget_ring_bytes(
    overhead_percent: f64,
    write_cost_s: f64,
    key_bytes: u32,
    stack: bool,
) -> u32 {
    let per_period = overhead_percent.max(0.0) / 100.0 / write_cost_s.max(1e-8);
    let bytes = per_period * f64::from(write_record_bytes(key_bytes, stack));
    (bytes.min(f64::from(MAX_RING_BYTES)) as u32 + GROWTH_ROOM)
        .next_power_of_two()
        .clamp(MIN_BUDGET_RING_BYTES, MAX_BUDGET_RING_BYTES)
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
    rodata.slot_sets = cfg.slot_sets;
    rodata.weak_fingerprint = u32::from(weak_fingerprint());
    rodata.sync_hashtrie = u32::from(cfg.sync_hashtrie);
    open.maps
        .events
        .set_max_entries(cfg.ring_bytes)
        .context("sizing the ring buffer")?;
    open.maps
        .grows_inflight
        .set_max_entries(GROWS_IN_FLIGHT)
        .context("sizing the growths in flight")?;
    open.maps
        .slots
        .set_max_entries(slot_entries(cfg.slot_sets)?)
        .context("sizing the aggregation slots")?;
    // Either the uprobe_multi programs or the per-point ones, not both.
    let progs = &mut open.progs;
    progs.on_mapassign_multi.set_autoload(multi);
    progs.on_mapassign.set_autoload(!multi);
    progs.on_grow_multi.set_autoload(multi && cfg.grows);
    progs.on_grow_ret_multi.set_autoload(multi && cfg.grows);
    progs.on_grow.set_autoload(!multi && cfg.grows);
    progs.on_grow_ret.set_autoload(!multi && cfg.grows);
    progs.on_sync_multi.set_autoload(multi && cfg.sync);
    progs.on_sync_ret_multi.set_autoload(multi && cfg.sync);
    progs.on_sync.set_autoload(!multi && cfg.sync);
    progs.on_sync_ret.set_autoload(!multi && cfg.sync);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    #[test]
    fn records_are_the_sizes_the_header_gives() {
        // maptrace.h: 15 words before `key` (120 bytes), a key area twice the captured class,
        // 24 stack words; the ring adds an 8-byte header.
        assert_eq!(write_record_bytes(64, false), 120 + 128 + 8);
        assert_eq!(write_record_bytes(8, false), 120 + 128 + 8);
        assert_eq!(write_record_bytes(65, false), 120 + 512 + 8);
        assert_eq!(write_record_bytes(64, true), 120 + 512 + 24 * 8 + 8);
    }

    #[test]
    fn budget_rings_hold_a_period_of_the_budget() {
        // 1 % of a second at 0.5 µs a write: 20,000 records × 256 B = 5.1 MB → 8 MiB.
        assert_eq!(budget_ring_bytes(1.0, 0.5e-6, 64, false), 8 * MIB);
        // At 2 µs: 5,000 × 256 = 1.3 MB → 2 MiB; twice the budget, twice the ring.
        assert_eq!(budget_ring_bytes(1.0, 2e-6, 64, false), 2 * MIB);
        assert_eq!(budget_ring_bytes(2.0, 2e-6, 64, false), 4 * MIB);
        // Expensive writes or a tiny budget: the floor; cheap ones: the cap.
        assert_eq!(
            budget_ring_bytes(1.0, 10e-6, 64, false),
            MIN_BUDGET_RING_BYTES
        );
        assert_eq!(
            budget_ring_bytes(100.0, 0.1e-6, 256, true),
            MAX_BUDGET_RING_BYTES
        );
    }
}
