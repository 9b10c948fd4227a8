//! The tracer's stated memory bounds (docs/reliability.md, "Peak memory"), without root: the
//! numbers the docs state are the ones the code's formulas give (`hotkeys::exact` and
//! `hotkeys::live::memory_bound_rss`), and the top-k sketch's heap, measured by a counting
//! allocator (what it really asks of malloc, with malloc's own per-chunk size), stays under its
//! bound (`TopK::memory_bound_bytes`) with 5 million distinct keys. The RSS the bounds promise
//! is measured against the docs' numbers by the `overload` and `live` tests.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use ebpf_map_trace::hotkeys::sketch::TopK;
use ebpf_map_trace::hotkeys::{exact, live};
use ebpf_map_trace::probe::load;

/// Counts the heap bytes (as malloc sizes its chunks) of allocations made by a thread that
/// asked for it ([`Measure`]); every other allocation passes through uncounted.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// malloc's chunk for `p`: its usable size plus the 8-byte chunk header.
fn chunk(p: *mut u8) -> usize {
    // SAFETY: `p` is a live allocation of the system allocator (glibc malloc).
    unsafe { libc::malloc_usable_size(p.cast()) + 8 }
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn grow(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counted() {
            grow(chunk(p));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(chunk(ptr), Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = if counted() { chunk(ptr) } else { 0 };
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counted() {
            LIVE.fetch_sub(before, Ordering::Relaxed);
            grow(chunk(p));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with this thread's allocations counted; the peak of live counted bytes during it.
/// Everything `f` allocates must be freed by its end (or leaked on purpose) on this thread.
fn peak_heap_of(f: impl FnOnce()) -> usize {
    LIVE.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    COUNTED.with(|c| c.set(true));
    f();
    COUNTED.with(|c| c.set(false));
    PEAK.load(Ordering::SeqCst)
}

#[test]
fn the_sketch_heap_stays_under_its_bound_with_five_million_distinct_keys() {
    // Every thousandth key has a text far longer than its identity (with multi-byte
    // characters at the cut), which the bound must absorb.
    let long = "{true false} é".repeat(50);
    let hex = "0123456789abcdef".repeat(8);
    let bound = TopK::memory_bound_bytes(1024, 20);
    let mut len = 0;
    let peak = peak_heap_of(|| {
        let mut t = TopK::new(1024);
        let mut id = [0u8; 20];
        for i in 0u64..5_000_000 {
            id[..8].copy_from_slice(&i.to_le_bytes());
            id[8..16].copy_from_slice(&(i ^ 0x5555).to_le_bytes());
            let at = i as usize % 40;
            let text = if i % 1_000 == 0 {
                &long[..]
            } else {
                &hex[at..at + 40]
            };
            t.add(&id, text, false, 1.0);
        }
        len = t.len();
    });
    assert_eq!(len, 1024, "the sketch keeps its capacity of keys");
    eprintln!("TopK(1024, 20-byte ids): peak heap {peak} bytes, bound {bound}");
    assert!(peak > 0, "the counting allocator saw nothing");
    assert!(
        peak <= bound,
        "the sketch's peak heap {peak} bytes > its bound {bound}"
    );
}

const MIB: u64 = 1 << 20;

#[test]
fn the_documented_peak_rss_is_what_the_formulas_give() {
    for size in [0, 1 << 20, 50_000_000, 1 << 30] {
        assert_eq!(
            exact::memory_bound_rss(size),
            common::stated_peak_rss("run", size),
            "run, binary of {size} bytes"
        );
        // The docs round the live bounds up to a whole MiB; each mode's largest ring.
        for (row, ring) in [
            ("top", load::MAX_BUDGET_RING_BYTES),
            ("top --mode exact", load::EXACT_RINGS_AT_MOST),
        ] {
            let live = live::memory_bound_rss(64, size, ring);
            let stated = common::stated_peak_rss(row, size);
            assert!(
                live <= stated && stated - live < MIB,
                "{row}, binary of {size} bytes: formula {live}, docs {stated}"
            );
        }
    }
}
