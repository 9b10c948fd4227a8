//! End-to-end map growth tracing (root, real uprobes), against the report contract:
//! `report["maps"][i]` has `id` (the header address, `%p` of the map), `len`, `grows` and
//! `growth`, a time-ordered list of `{kind, unit, old_capacity, new_capacity, len, key, goid,
//! function, file, line, duration_ns}`.
//!
//! The expected growth sequence of `tests/go/growth` (`-n N -hint H -kind int64|string`: N
//! distinct keys inserted in order into `make(map[K]int, H)`) is derived here from the Go runtime
//! source of each version, as small pure functions ([`expected_classic`], [`expected_swiss`])
//! that cite the source they follow and are unit-tested on hand-worked values (those tests need
//! no root). Sources read (amd64):
//! - classic: `/usr/lib/go-1.19/src/runtime/map.go`,
//!   `.cache/go/{1.21.13,1.22.10,1.23.9}/lib/python3.11/site-packages/go/src/runtime/map.go`,
//!   `.cache/go/1.24.11/.../src/runtime/map_noswiss.go` (GOEXPERIMENT=noswissmap);
//! - Swiss: `.cache/go/{1.24.11,1.25.5,1.26.6,1.27.3}/.../src/internal/runtime/maps/{map,table,group,
//!   runtime_fast64*,runtime_faststr*}.go` and `internal/abi/map*.go`.
//!
//! Where a rule is not exact (Swiss tables past their first split, whose halves fill by hash;
//! Swiss hints that make several tables), the functions refuse rather than guess, and the tests
//! pick N and hints for which they are exact.
mod common;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{GrowthRun, Toolchain, Variant};
use serde::Deserialize;
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// How long one traced run of `growth` may take (N = 100000 under the tracer takes well under a
/// second here; the rest is attaching).
const TRACE_TIMEOUT: Duration = Duration::from_secs(180);

// =============================================================================================
// The rules, from the Go source

/// One growth as the contract describes it (without unit, site and duration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grow {
    kind: &'static str,
    old: u64,
    new: u64,
    /// Elements in the map when the growth started (before the triggering insert).
    len: u64,
}

const fn grow(kind: &'static str, old: u64, new: u64, len: u64) -> Grow {
    Grow {
        kind,
        old,
        new,
        len,
    }
}

// ---- classic maps (runtime/map.go, Go <= 1.23; runtime/map_noswiss.go, 1.24-1.25 noswissmap) --

/// `bucketCnt` (1.19: `bucketCnt = 1 << bucketCntBits`, `bucketCntBits = 3`; 1.21:
/// `abi.MapBucketCount`; 1.23: `abi.MapBucketCount = 1 << MapBucketCountBits`, bits 3;
/// 1.24 noswiss: `abi.OldMapBucketCount`, 8).
const CLASSIC_BUCKET_CNT: u64 = 8;

/// `loadFactorDen = 2` in every version read.
const CLASSIC_LOAD_FACTOR_DEN: u64 = 2;

/// `loadFactorNum`, per Go minor version, as the constant expression evaluates (Go constant
/// arithmetic on untyped integers truncates each division):
/// - 1.19 `runtime/map.go`: `loadFactorNum = 13` → 13 (load factor 6.5);
/// - 1.21 `runtime/map.go`: `loadFactorNum = (bucketCnt * 13 / 16) * loadFactorDen`
///   = (104 / 16) * 2 = 6 * 2 → **12** (load factor 6, not 6.5: golang/go#63438);
/// - 1.22 `runtime/map.go`: `loadFactorNum = loadFactorDen * bucketCnt * 13 / 16`
///   (`bucketCnt = abi.MapBucketCount` = 8) = 208 / 16 → 13 (the fix of golang/go#63438);
/// - 1.23 `runtime/map.go`: `loadFactorNum = loadFactorDen * abi.MapBucketCount * 13 / 16`
///   = 208 / 16 → 13;
/// - 1.24 `runtime/map_noswiss.go`: `loadFactorDen * abi.OldMapBucketCount * 13 / 16` → 13.
///
/// Other minors were not read here: refuse rather than guess.
fn classic_load_factor_num(minor: u32) -> u64 {
    match minor {
        19 | 22 | 23 | 24 => 13,
        21 => 12,
        _ => panic!("classic map rules of Go 1.{minor} were not read from its source"),
    }
}

/// `overLoadFactor(count, B)` (same body in every version read):
/// `count > bucketCnt && uintptr(count) > loadFactorNum*(bucketShift(B)/loadFactorDen)`.
/// Note `bucketShift(0)/loadFactorDen == 0`: with one bucket only `count > 8` matters.
fn classic_over_load_factor(minor: u32, count: u64, b: u32) -> bool {
    count > CLASSIC_BUCKET_CNT
        && count > classic_load_factor_num(minor) * ((1u64 << b) / CLASSIC_LOAD_FACTOR_DEN)
}

/// `makemap(t, hint, h)`: `B := uint8(0); for overLoadFactor(hint, B) { B++ }` (the buckets of a
/// B = 0 map are allocated lazily by mapassign, not by a grow).
fn classic_makemap_b(minor: u32, hint: u64) -> u32 {
    let mut b = 0;
    while classic_over_load_factor(minor, hint, b) {
        b += 1;
    }
    b
}

/// The growths of inserting `n` distinct keys into `make(map[K]V, hint)`, classic maps.
///
/// `mapassign*` (runtime/map.go, map_fast64.go, map_faststr.go), after finding no existing
/// slot for the key:
/// `if !h.growing() && (overLoadFactor(h.count+1, h.B) || tooManyOverflowBuckets(h.noverflow, h.B)) { hashGrow(t, h) }`
/// and `hashGrow` doubles (`bigger = 1`) when `overLoadFactor(h.count+1, h.B)`, else makes a
/// same-size grow. So the i-th insert (h.count = i) grows 2^B → 2^(B+1) buckets when
/// `overLoadFactor(i+1, B)`, with `len` = i.
///
/// Two things the simple rule has to rule out, both impossible for insert-only workloads:
/// - `!h.growing()`: a grow is deferred while the previous one is still evacuating. Every
///   insert during a grow runs `growWork`, whose second `evacuate(t, h, h.nevacuate)` advances
///   `nevacuate` by at least one old bucket, so 2^B inserts finish evacuating 2^B old buckets;
///   the next threshold is ≥ 5 inserts away for B = 0 (8 → 13, or 8 → 12 in 1.21) and
///   6·2^B or 6.5·2^B inserts away after that. Checked below for every grow.
/// - same-size grows (`tooManyOverflowBuckets`: `noverflow >= 2^min(B,15)`). `noverflow` counts
///   the overflow buckets of the current generation only (reset to 0 by hashGrow; incremented
///   by `newoverflow`, exactly for B < 16). Without deletes, every bucket chain is packed
///   (evacuate fills each destination chain slot by slot and takes an overflow bucket only when
///   `dst.i == bucketCnt`; mapassign inserts into the chain's first empty slot and adds an
///   overflow bucket only when the chain is full; a new bucket is always evacuated into before it
///   is inserted into, since growWork evacuates the key's old bucket first). A packed chain of m
///   entries has ceil(m/8)-1 < m/8 overflow buckets, so `noverflow < count/8`; and when the
///   load check is false, `count + 1 <= 6.5·2^B` (or 6·2^B, or 8 for B = 0), so
///   `noverflow < 2^B`: tooManyOverflowBuckets is false whenever overLoadFactor is. No
///   "same_size" grow can occur here, so the tests require none at all.
fn expected_classic(minor: u32, n: u64, hint: u64) -> Vec<Grow> {
    let mut b = classic_makemap_b(minor, hint);
    let mut out = Vec::new();
    // Inserts (growWork calls) since the last grow started, counting the triggering insert
    // (mapassign jumps back to `again:` after hashGrow, which runs growWork).
    let mut last_grow: Option<(u64, u64)> = None; // (count at grow, old buckets)
    for count in 0..n {
        if classic_over_load_factor(minor, count + 1, b) {
            if let Some((at, old_buckets)) = last_grow {
                // Inserts at..=count each ran growWork before this check.
                assert!(
                    count - at + 1 >= old_buckets,
                    "Go 1.{minor}: grow at len {count} could find the previous one (len {at}, \
                     {old_buckets} old buckets) still evacuating"
                );
            }
            out.push(grow("grow", 1 << b, 1 << (b + 1), count));
            last_grow = Some((count, 1 << b));
            b += 1;
        }
    }
    out
}

// ---- Swiss maps (internal/runtime/maps, Go 1.24+) -------------------------------------------

/// `abi.SwissMapGroupSlots` (1.24, 1.25, internal/abi/map_swiss.go) = `abi.MapGroupSlots` (1.26, 1.27,
/// internal/abi/map.go) = `1 << 3`: slots per group, and the capacity of a small map.
const SWISS_GROUP_SLOTS: u64 = 8;

/// `maxAvgGroupLoad = 7` (maps/group.go, 1.24–1.27): tables fill to 7/8.
const SWISS_MAX_AVG_GROUP_LOAD: u64 = 7;

/// `maxTableCapacity = 1024` (maps/table.go, 1.24–1.27): above it a table splits.
const SWISS_MAX_TABLE_CAPACITY: u64 = 1024;

/// The number of inserts after which the first split happens (a one-table map of 1024 slots
/// holding `swiss_max_growth_left(1024)` = 896 elements): the 897th insert triggers it.
const SWISS_FIRST_SPLIT_N: u64 = 897;

/// `growthLeft` of an empty table of `capacity` slots: `(*table).resetGrowthLeft` (1.24)
/// = `(*table).maxGrowthLeft` (1.25–1.27): `capacity - 1` if `capacity <= GroupSlots`, else
/// `capacity * maxAvgGroupLoad / GroupSlots`.
fn swiss_max_growth_left(capacity: u64) -> u64 {
    if capacity <= SWISS_GROUP_SLOTS {
        capacity - 1
    } else {
        capacity * SWISS_MAX_AVG_GROUP_LOAD / SWISS_GROUP_SLOTS
    }
}

/// `alignUpPow2` (maps/map.go).
fn align_up_pow2(n: u64) -> u64 {
    n.next_power_of_two()
}

/// The state of a Swiss map as far as growth is concerned.
#[derive(Clone, Copy, Debug)]
enum Swiss {
    /// `dirPtr == nil`: nothing allocated yet.
    Empty,
    /// `dirLen == 0`: one group of 8 slots, `used` of them full.
    Small { used: u64 },
    /// One table (dirLen == 1).
    Table { capacity: u64, growth_left: u64 },
}

/// The growths of inserting `n` distinct keys into `make(map[K]V, hint)`, Swiss maps (Go 1.24,
/// 1.25, 1.26, 1.27 alike for this workload; 1.25's `NewMap`, `growToSmall`, `growToTable`,
/// `rehash` and `putSlotSmall` are 1.24's, its fast assigns prune tombstones first as 1.26's):
/// - `NewMap(mt, hint, m, maxAlloc)` (maps/map.go): `hint <= GroupSlots` allocates nothing
///   (the compiler's makemap_small likewise); else `targetCapacity = hint*GroupSlots/maxAvgGroupLoad`,
///   `dirSize = alignUpPow2(ceil(targetCapacity / maxTableCapacity))` tables of
///   `newTable(targetCapacity/dirSize)` slots (newTable: at least 8, `alignUpPow2`). With more
///   than one table the elements are spread by hash, so only hint <= 896 (one table) is exact.
/// - `runtime_mapassign*` / `(*Map).PutSlot`: `if m.dirPtr == nil { m.growToSmall(typ) }` →
///   "small", 0 → 8 slots, len 0. A small map takes 8 elements; the 9th distinct key calls
///   `m.growToTable(typ)` (1.24–1.26: `m.used < GroupSlots` is false; 1.27: putSlotSmall* finds
///   no empty slot) → "table", 8 → 16 slots (`newTable(typ, 2*GroupSlots, 0, 0)`), len 8; the 8
///   elements move in, leaving growthLeft 14 - 8 = 6.
/// - In a table, a new key goes in while `growthLeft > 0` (1.25–1.27 first try
///   `pruneTombstones`, a no-op without deletes: `tombstones()*10 < capacity`); at
///   `growthLeft == 0`, `t.rehash(typ, m)`: `newCapacity := 2 * t.capacity; if newCapacity <=
///   maxTableCapacity { t.grow } else { t.split }`. A grow of a table of c slots holding
///   `used` elements leaves `maxGrowthLeft(2c) - used`, so with hint 0 the table of c slots grows
///   at len 7c/8: 16 → 32 at 14, 32 → 64 at 28, …, 512 → 1024 at 448, and the 1024-slot table
///   splits at 896 ("split", 1024 → 2048 = both halves, each `newTable(maxTableCapacity)`).
/// - After a split, each half fills by its hashes: which half splits next, and when, is not
///   given by the source. The function stops there: it panics if an insert after the one that
///   triggers the first split is asked for. The triggering insert itself goes into one half,
///   which could split again only if all 896 elements went to the same half (probability
///   2·2^-896 with the runtime's seeded hash): N = 897 is exact in practice.
fn expected_swiss(n: u64, hint: u64) -> Vec<Grow> {
    let mut state = if hint <= SWISS_GROUP_SLOTS {
        Swiss::Empty
    } else {
        let target = hint * SWISS_GROUP_SLOTS / SWISS_MAX_AVG_GROUP_LOAD;
        let dir_size = align_up_pow2(target.div_ceil(SWISS_MAX_TABLE_CAPACITY));
        assert_eq!(
            dir_size, 1,
            "hint {hint} makes {dir_size} tables: which one grows when depends on hashes"
        );
        let capacity = align_up_pow2(target.max(SWISS_GROUP_SLOTS));
        Swiss::Table {
            capacity,
            growth_left: swiss_max_growth_left(capacity),
        }
    };
    let mut out = Vec::new();
    for len in 0..n {
        if out.last().is_some_and(|g: &Grow| g.kind == "split") {
            panic!(
                "{n} inserts go past the first split (at len {}): not exact",
                len - 1
            );
        }
        if let Swiss::Empty = state {
            out.push(grow("small", 0, SWISS_GROUP_SLOTS, len));
            state = Swiss::Small { used: 0 };
        }
        if let Swiss::Small { used } = state {
            if used < SWISS_GROUP_SLOTS {
                state = Swiss::Small { used: used + 1 };
                continue;
            }
            let capacity = 2 * SWISS_GROUP_SLOTS;
            out.push(grow("table", SWISS_GROUP_SLOTS, capacity, len));
            state = Swiss::Table {
                capacity,
                growth_left: swiss_max_growth_left(capacity) - used,
            };
        }
        let Swiss::Table {
            mut capacity,
            mut growth_left,
        } = state
        else {
            unreachable!()
        };
        if growth_left == 0 {
            let new = 2 * capacity;
            if new <= SWISS_MAX_TABLE_CAPACITY {
                out.push(grow("grow", capacity, new, len));
                capacity = new;
                growth_left = swiss_max_growth_left(new) - len;
            } else {
                out.push(grow("split", capacity, new, len));
                // The halves: this insert's half has room unless every element went to it.
                growth_left = 1;
            }
        }
        state = Swiss::Table {
            capacity,
            growth_left: growth_left - 1,
        };
    }
    out
}

/// The expected growths of `n` inserts with `hint` for a toolchain's default map implementation.
fn expected(tc: &Toolchain, n: u64, hint: u64) -> Vec<Grow> {
    if tc.swiss_maps() {
        expected_swiss(n, hint)
    } else {
        expected_classic(tc.minor(), n, hint)
    }
}

// ---- the rules on hand-worked values (no root needed) ---------------------------------------

fn lens(g: &[Grow]) -> Vec<u64> {
    g.iter().map(|g| g.len).collect()
}

#[test]
fn classic_rule_hand_worked() {
    for minor in [19, 21, 22, 23, 24] {
        // 8 elements fit one bucket; the 9th insert grows 1 → 2 buckets.
        assert_eq!(expected_classic(minor, 8, 0), vec![], "1.{minor}");
        assert_eq!(
            expected_classic(minor, 9, 0),
            vec![grow("grow", 1, 2, 8)],
            "1.{minor}"
        );
    }
    // 2 buckets hold 13 (6.5 per bucket): the 14th insert grows 2 → 4; in 1.21, 12 (6 per bucket).
    assert_eq!(
        expected_classic(23, 14, 0),
        vec![grow("grow", 1, 2, 8), grow("grow", 2, 4, 13)]
    );
    assert_eq!(expected_classic(23, 13, 0).len(), 1);
    assert_eq!(
        expected_classic(21, 13, 0),
        vec![grow("grow", 1, 2, 8), grow("grow", 2, 4, 12)]
    );
    // N = 800 and 3000.
    for minor in [19, 22, 23, 24] {
        let e = expected_classic(minor, 800, 0);
        assert_eq!(lens(&e), [8, 13, 26, 52, 104, 208, 416], "1.{minor}");
        assert_eq!((e[6].old, e[6].new), (64, 128));
        let e = expected_classic(minor, 3000, 0);
        assert_eq!(lens(&e), [8, 13, 26, 52, 104, 208, 416, 832, 1664]);
        assert_eq!((e[8].old, e[8].new), (256, 512));
    }
    let e = expected_classic(21, 800, 0);
    assert_eq!(lens(&e), [8, 12, 24, 48, 96, 192, 384, 768]);
    assert_eq!((e[7].old, e[7].new), (128, 256));
    let e = expected_classic(21, 3000, 0);
    assert_eq!(lens(&e), [8, 12, 24, 48, 96, 192, 384, 768, 1536]);
    // Every grow doubles the previous new size.
    for minor in [19, 21, 23] {
        let e = expected_classic(minor, 100_000, 0);
        for (i, g) in e.iter().enumerate() {
            assert_eq!((g.kind, g.old, g.new), ("grow", 1 << i, 2 << i));
        }
    }
    // makemap's B for a hint, and a hint >= n never grows.
    assert_eq!(classic_makemap_b(23, 8), 0);
    assert_eq!(classic_makemap_b(23, 9), 1);
    assert_eq!(classic_makemap_b(23, 800), 7); // 6.5 * 128 = 832 >= 800
    assert_eq!(classic_makemap_b(21, 800), 8); // 6 * 128 = 768 < 800
    for minor in [19, 21, 23, 24] {
        for n in (0..3100).step_by(7) {
            assert_eq!(expected_classic(minor, n, n), vec![], "1.{minor} n={n}");
        }
        // A smaller hint starts later in the same sequence.
        let all = expected_classic(minor, 3000, 0);
        let hinted = expected_classic(minor, 3000, 100);
        assert_eq!(hinted[..], all[all.len() - hinted.len()..], "1.{minor}");
    }
}

#[test]
fn swiss_rule_hand_worked() {
    // The first insert allocates the small group; the 9th makes a 16-slot table; the 15th (14 =
    // 7/8 of 16 full) grows it to 32.
    assert_eq!(expected_swiss(1, 0), vec![grow("small", 0, 8, 0)]);
    assert_eq!(expected_swiss(8, 0).len(), 1);
    assert_eq!(
        expected_swiss(9, 0),
        vec![grow("small", 0, 8, 0), grow("table", 8, 16, 8)]
    );
    assert_eq!(expected_swiss(14, 0).len(), 2);
    assert_eq!(
        expected_swiss(15, 0),
        vec![
            grow("small", 0, 8, 0),
            grow("table", 8, 16, 8),
            grow("grow", 16, 32, 14)
        ]
    );
    assert_eq!(
        expected_swiss(800, 0),
        vec![
            grow("small", 0, 8, 0),
            grow("table", 8, 16, 8),
            grow("grow", 16, 32, 14),
            grow("grow", 32, 64, 28),
            grow("grow", 64, 128, 56),
            grow("grow", 128, 256, 112),
            grow("grow", 256, 512, 224),
            grow("grow", 512, 1024, 448),
        ]
    );
    assert_eq!(expected_swiss(896, 0), expected_swiss(800, 0));
    let e = expected_swiss(SWISS_FIRST_SPLIT_N, 0);
    assert_eq!(e.len(), 9);
    assert_eq!(e[8], grow("split", 1024, 2048, 896));
    // A hint > 8 sizes one table for it (up to 896); a hint <= 8 allocates nothing, so the first
    // insert still makes the small group.
    for n in 9..=896 {
        assert_eq!(expected_swiss(n, n), vec![], "n={n}");
    }
    assert_eq!(expected_swiss(8, 8), vec![grow("small", 0, 8, 0)]);
    // hint 100: 114 → 128 slots, 112 fit; the 113th insert grows to 256.
    assert_eq!(expected_swiss(113, 100), vec![grow("grow", 128, 256, 112)]);
    assert_eq!(swiss_max_growth_left(8), 7);
    assert_eq!(swiss_max_growth_left(16), 14);
    assert_eq!(swiss_max_growth_left(1024), 896);
}

#[test]
#[should_panic(expected = "past the first split")]
fn swiss_rule_refuses_past_the_first_split() {
    expected_swiss(SWISS_FIRST_SPLIT_N + 1, 0);
}

#[test]
#[should_panic(expected = "depends on hashes")]
fn swiss_rule_refuses_hints_of_several_tables() {
    expected_swiss(100, 897);
}

// =============================================================================================
// Running the tracer

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "growth tracing tests need root (CAP_BPF + CAP_PERFMON for uprobes): run them as root"
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    d
}

/// Key type of the `growth` program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int64,
    String,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Int64 => "int64",
            Kind::String => "string",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kind::Int64 => "map[int64]int",
            Kind::String => "map[string]int",
        }
    }

    /// The function of tests/go/growth/main.go that writes the map (`//go:noinline`).
    fn insert_func(self) -> &'static str {
        match self {
            Kind::Int64 => "main.insertInt64",
            Kind::String => "main.insertString",
        }
    }

    /// `%v` of the i-th key inserted: `int64(i)*2654435761-1<<40` (`<<` binds like `*`, before
    /// `-`) or `"k"+strconv.Itoa(i)`.
    fn key(self, i: u64) -> String {
        match self {
            Kind::Int64 => (i64::try_from(i).unwrap() * 2_654_435_761 - (1i64 << 40)).to_string(),
            Kind::String => format!("k{i}"),
        }
    }
}

/// The line of `func <name>(` in tests/go/growth/main.go: the one-line insert functions' write
/// site.
fn insert_line(kind: Kind) -> u64 {
    let src = common::manifest_dir().join("tests/go/growth/main.go");
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let name = kind.insert_func().trim_start_matches("main.");
    let pat = format!("func {name}(");
    let idx = text
        .lines()
        .position(|l| l.starts_with(&pat))
        .unwrap_or_else(|| panic!("no {pat:?} in {}", src.display()));
    idx as u64 + 1
}

/// One growth of the report.
#[derive(Clone, Debug, Deserialize)]
struct ReportGrowth {
    kind: String,
    unit: String,
    old_capacity: u64,
    new_capacity: u64,
    len: u64,
    key: String,
    goid: u64,
    function: String,
    file: String,
    line: u64,
    duration_ns: u64,
}

/// The growth-related fields of one map of the report.
#[derive(Clone, Debug, Deserialize)]
struct ReportMap {
    id: String,
    len: u64,
    grows: u64,
    growth: Vec<ReportGrowth>,
}

/// A run of `growth` under `ebpf-map-trace run --json`.
struct Traced {
    label: String,
    program: GrowthRun,
    map: ReportMap,
}

impl Traced {
    /// (kind, old, new, len) of each growth, in report order.
    fn sequence(&self) -> Vec<(String, u64, u64, u64)> {
        seq_of(&self.map.growth)
    }
}

fn seq_of(g: &[ReportGrowth]) -> Vec<(String, u64, u64, u64)> {
    g.iter()
        .map(|g| (g.kind.clone(), g.old_capacity, g.new_capacity, g.len))
        .collect()
}

fn expected_seq(e: &[Grow]) -> Vec<(String, u64, u64, u64)> {
    e.iter()
        .map(|g| (g.kind.to_string(), g.old, g.new, g.len))
        .collect()
}

fn args(n: u64, hint: u64, kind: Kind) -> Vec<String> {
    vec![
        "-n".into(),
        n.to_string(),
        "-hint".into(),
        hint.to_string(),
        "-kind".into(),
        kind.arg().into(),
    ]
}

/// Runs `bin -n N -hint H -kind K` under the tracer; returns the program's own output and the
/// report's map whose id is the program's `%p` of the map.
fn trace(
    tc: &Toolchain,
    v: Variant,
    bin: &Path,
    n: u64,
    hint: u64,
    kind: Kind,
    dir: &Path,
) -> Traced {
    let label = format!(
        "go{} {} n={n} hint={hint} {}",
        tc.version,
        v.name(),
        kind.arg()
    );
    let json = dir.join(format!(
        "go{}-{}-n{n}-h{hint}-{}.json",
        tc.version,
        v.name(),
        kind.arg()
    ));
    let _ = std::fs::remove_file(&json);
    let prog_args = args(n, hint, kind);
    let mut tracer_args: Vec<&str> = vec!["run", "--json", json.to_str().unwrap(), "--"];
    tracer_args.push(bin.to_str().unwrap());
    tracer_args.extend(prog_args.iter().map(String::as_str));
    let out = common::run_output(Path::new(TRACER), &tracer_args, TRACE_TIMEOUT);
    assert!(
        out.status.success(),
        "{label}: tracer failed ({}):\n{}",
        out.status,
        out.stderr
    );
    // The tracer's stdout is the program's; its table goes to stderr.
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let program = common::parse_growth(&lines);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("{label}: no report at {}: {e}", json.display()));
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{label}: report is not JSON ({e}):\n{text}"));
    let maps = report["maps"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: report has no \"maps\" list:\n{text}"));
    let id = program.done.id;
    let found: Vec<&Value> = maps
        .iter()
        .filter(|m| {
            m["id"]
                .as_str()
                .and_then(|s| s.strip_prefix("0x"))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                == Some(id)
        })
        .collect();
    let [m] = found[..] else {
        let ids: Vec<&Value> = maps.iter().map(|m| &m["id"]).collect();
        panic!(
            "{label}: expected one report map with id {id:#x} (the program's %p), found {}; ids: {ids:?}",
            found.len()
        )
    };
    let map: ReportMap = serde_json::from_value(m.clone())
        .unwrap_or_else(|e| panic!("{label}: map {id:#x} does not follow the contract ({e}): {m}"));
    Traced {
        label,
        program,
        map,
    }
}

/// Everything the contract says about a map's growths, except the sequence itself.
fn check_growth_fields(t: &Traced, tc: &Toolchain, n: u64, kind: Kind) {
    let label = &t.label;
    let m = &t.map;
    assert_eq!(t.program.done.n, n, "{label}: program's n");
    assert_eq!(t.program.done.len, n, "{label}: program's len");
    assert_eq!(m.len, n, "{label}: report len of map {}", m.id);
    assert_eq!(
        m.grows,
        m.growth.len() as u64,
        "{label}: grows vs the growth list of map {}",
        m.id
    );
    let unit = if tc.swiss_maps() { "slots" } else { "buckets" };
    let line = insert_line(kind);
    let goid = m.growth.first().map(|g| g.goid);
    let mut last_len = 0;
    for (i, g) in m.growth.iter().enumerate() {
        let at = format!("{label}: growth #{i} {g:?}");
        assert_eq!(g.unit, unit, "{at}: unit");
        assert_eq!(g.function, kind.insert_func(), "{at}: function");
        assert!(
            g.file.ends_with("/growth/main.go"),
            "{at}: file should be tests/go/growth/main.go"
        );
        assert_eq!(g.line, line, "{at}: line of {}", kind.insert_func());
        assert!(g.duration_ns > 0, "{at}: duration_ns");
        // One goroutine (main) makes every insert.
        assert!(g.goid > 0, "{at}: goid");
        assert_eq!(
            Some(g.goid),
            goid,
            "{at}: goid differs from the first growth's"
        );
        // The insert that triggers a growth at len L is the (L+1)-th: key index L.
        assert_eq!(g.key, kind.key(g.len), "{at}: triggering key");
        assert!(
            g.len >= last_len,
            "{at}: len goes backwards (not in time order)"
        );
        last_len = g.len;
    }
}

/// Runs `f` for every toolchain × variant of `growth`, catching each failure, and fails at the
/// end with all of them (so one broken build does not hide the others).
fn for_each_build(what: &str, f: impl Fn(&Toolchain, Variant, &Path)) {
    let builds = common::matrix("growth");
    assert!(!builds.is_empty(), "no builds of growth");
    let mut failures = Vec::new();
    for (tc, v, bin) in &builds {
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| f(tc, *v, bin))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            failures.push(format!("go{} {}: {msg}", tc.version, v.name()));
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} builds failed:\n{}",
        failures.len(),
        builds.len(),
        failures.join("\n\n")
    );
}

// =============================================================================================
// The end-to-end tests

/// The second N of test 1: classic maps take 3000 (two more doublings, 128 → 512 buckets);
/// Swiss maps take 897, the largest N whose sequence is exact: it ends with the first split.
fn second_n(tc: &Toolchain) -> u64 {
    if tc.swiss_maps() {
        SWISS_FIRST_SPLIT_N
    } else {
        3000
    }
}

#[test]
fn growth_sequence_matches_the_runtime_rules() {
    let _cpu = common::among_others();
    require_root();
    let dir = tempdir("growth-sequence");
    for_each_build("growth sequence", |tc, v, bin| {
        for n in [800, second_n(tc)] {
            let want = expected(tc, n, 0);
            assert!(!want.is_empty());
            let t = trace(tc, v, bin, n, 0, Kind::Int64, &dir);
            assert_eq!(
                t.sequence(),
                expected_seq(&want),
                "{}: growth (kind, old_capacity, new_capacity, len) of map {}",
                t.label,
                t.map.id
            );
            check_growth_fields(&t, tc, n, Kind::Int64);
        }
    });
}

#[test]
fn a_large_enough_hint_means_no_growth() {
    let _cpu = common::among_others();
    require_root();
    let dir = tempdir("growth-hint");
    for_each_build("hint >= n", |tc, v, bin| {
        // Swiss: one table, so up to 896 (N > 8, or the small group is still made on the first
        // insert); classic: any N.
        let mut ns = vec![800];
        ns.push(if tc.swiss_maps() { 896 } else { 3000 });
        for n in ns {
            assert_eq!(expected(tc, n, n), vec![], "rule for n = hint = {n}");
            let t = trace(tc, v, bin, n, n, Kind::Int64, &dir);
            assert_eq!(
                t.sequence(),
                vec![],
                "{}: growths of map {} made with hint {n}",
                t.label,
                t.map.id
            );
            check_growth_fields(&t, tc, n, Kind::Int64);
        }
    });
}

#[test]
fn string_keys_grow_like_int64_keys() {
    let _cpu = common::among_others();
    require_root();
    let dir = tempdir("growth-string");
    for_each_build("string keys", |tc, v, bin| {
        let n = 800;
        let ints = trace(tc, v, bin, n, 0, Kind::Int64, &dir);
        let strs = trace(tc, v, bin, n, 0, Kind::String, &dir);
        assert_eq!(strs.program.done.type_name, Kind::String.type_name());
        assert_eq!(
            strs.sequence(),
            ints.sequence(),
            "{}: string-key growth vs int64-key growth",
            strs.label
        );
        assert_eq!(
            strs.sequence(),
            expected_seq(&expected(tc, n, 0)),
            "{}: string-key growth vs the rule",
            strs.label
        );
        check_growth_fields(&strs, tc, n, Kind::String);
    });
}

#[test]
fn every_growth_has_its_own_measured_duration() {
    let _cpu = common::alone();
    require_root();
    let dir = tempdir("growth-durations");
    let n = 100_000;
    let mut failures = Vec::new();
    for tc in [common::newest_toolchain(), common::toolchain("1.21.13")] {
        let v = Variant::Plain;
        let bin = common::build("growth", &tc, v);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            let t = trace(&tc, v, &bin, n, 0, Kind::Int64, &dir);
            check_growth_fields(&t, &tc, n, Kind::Int64);
            let g = &t.map.growth;
            if tc.swiss_maps() {
                // Exact up to the first split; after it only 1024-slot tables exist, so every
                // later growth is a split, and N elements need at least ceil(N/896) tables.
                let prefix = expected_swiss(SWISS_FIRST_SPLIT_N, 0);
                assert!(g.len() >= prefix.len(), "{}: {} growths", t.label, g.len());
                assert_eq!(
                    seq_of(&g[..prefix.len()]),
                    expected_seq(&prefix),
                    "{}: growths up to the first split",
                    t.label
                );
                for x in &g[prefix.len()..] {
                    assert_eq!(
                        (x.kind.as_str(), x.old_capacity, x.new_capacity),
                        ("split", 1024, 2048),
                        "{}: growth after the first split: {x:?}",
                        t.label
                    );
                    assert!(x.len >= 896, "{}: split below 896 elements: {x:?}", t.label);
                }
                let splits = (g.len() - prefix.len() + 1) as u64;
                assert!(
                    splits + 1 >= n.div_ceil(896),
                    "{}: {splits} splits cannot hold {n} elements",
                    t.label
                );
            } else {
                assert_eq!(
                    t.sequence(),
                    expected_seq(&expected(&tc, n, 0)),
                    "{}: growth sequence",
                    t.label
                );
            }
            // Each growth's duration is its own measurement: positive (check_growth_fields),
            // within what a growth can take, and not one value for all. Whether large growths
            // take longer is a performance question, not asserted here: the first, small ones
            // run cold (page faults, caches) and on this VM often take longer than later splits.
            for x in g {
                assert!(
                    x.duration_ns < 1_000_000_000,
                    "{}: a growth that took {} ns: {x:?}",
                    t.label,
                    x.duration_ns
                );
            }
            assert!(
                g.iter().any(|x| x.duration_ns != g[0].duration_ns),
                "{}: every growth took {} ns",
                t.label,
                g[0].duration_ns
            );
        }));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(panic)".into());
            failures.push(format!("go{}: {msg}", tc.version));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn traced_program_prints_what_it_prints_untraced() {
    let _cpu = common::among_others();
    require_root();
    let dir = tempdir("growth-output");
    for_each_build("program output", |tc, v, bin| {
        for kind in [Kind::Int64, Kind::String] {
            let n = 800;
            let a = args(n, 0, kind);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let plain = common::parse_growth(&common::run(bin, &a)).done;
            let t = trace(tc, v, bin, n, 0, kind, &dir);
            let traced = &t.program.done;
            assert_eq!(
                (traced.len, traced.n, traced.type_name.as_str()),
                (plain.len, plain.n, plain.type_name.as_str()),
                "{}: done line traced vs untraced",
                t.label
            );
            assert_eq!(
                (plain.len, plain.n, plain.type_name.as_str()),
                (n, n, kind.type_name()),
                "{}: untraced done line",
                t.label
            );
            assert_eq!(
                t.program.ready_pid, None,
                "{}: no -wait, no ready line",
                t.label
            );
        }
    });
}
