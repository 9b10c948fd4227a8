//! The report model: what was measured, as the versioned JSON schema
//! `ebpf-map-trace/report/v1`. One model for every output — a process's report, the merge of
//! several processes' (`merge`), the table, the live views.
use serde::Serialize;

use crate::decode::internals::Growth;
use crate::gobin::MapImpl;
use crate::hotkeys::exact::ExactCounts;
use crate::sampling::{Clock, Mode};

pub const SCHEMA: &str = "ebpf-map-trace/report/v1";

/// Instances of one map type written from one site are listed as one group when there are more
/// than this many (maps made per request, or living on a goroutine stack).
pub const GROUP_THRESHOLD: usize = 4;

/// A report; `M` is how each map is listed (a merge across processes lists each map with its
/// process, see `merge::ProcessMap`).
#[derive(Serialize, Debug, Clone)]
pub struct Report<M = MapReport> {
    pub schema: &'static str,
    pub target: Target,
    pub mode: Mode,
    pub duration_s: f64,
    pub coverage: f64,
    /// Budget mode: what the target's progress was counted by to extrapolate the windows
    /// (`syscalls`, `wakeups` or `natural_cpu`, see `sampling::estimate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_by: Option<Clock>,
    pub writes_observed: u64,
    pub deletes_observed: u64,
    pub clears_observed: u64,
    /// Map operations (writes, deletes, clears) the ring buffer had no room for: in exact mode
    /// the observed operations plus these are every operation the target made while traced.
    pub lost_events: u64,
    /// Growth records the ring buffer had no room for (those growths are missing from `grows`).
    pub lost_growths: u64,
    pub read_failures: u64,
    /// Probe hits at a stack check's branch (Go 1.17-1.20) whose function grew its stack and
    /// started again: not counted, the function's re-entry was (map operations only).
    pub stack_check_reentries: u64,
    pub grouping: String,
    #[serde(flatten)]
    pub completeness: Completeness,
    /// Why the trace ended early, when the target did something that ends it (e.g. exec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    pub maps: Vec<M>,
    /// The processes of a merged report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<u32>>,
    /// How the writes were counted in the kernel, when they were (not with stacks or `trace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
}

/// Counting in the kernel: per CPU, slots that each count one (map, site, key); a key in no
/// slot takes one (its bytes cross once, with the count of the key it evicts).
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    /// Slots, over all CPUs.
    pub slots: u64,
    /// Writes that took a slot (each one sent its key as a record).
    pub slot_takes: u64,
    /// ...of those, slots taken from another key (whose final count came with the record).
    pub evictions: u64,
    /// Writes whose key met another key with the same fingerprint, told apart by comparing
    /// the whole key (no count is ever shared).
    pub collisions: u64,
    /// Writes that could not be counted in a slot (a slot held by another program on the same
    /// CPU, an unreadable key) and went as records, each counted once.
    pub as_records: u64,
}

impl Aggregation {
    /// The sum of two processes' counters (a merged report).
    pub fn add(&mut self, o: &Aggregation) {
        self.slots += o.slots;
        self.slot_takes += o.slot_takes;
        self.evictions += o.evictions;
        self.collisions += o.collisions;
        self.as_records += o.as_records;
    }
}

/// Whether the counts are the whole truth; when not, each reason in a sentence.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Completeness {
    pub complete: bool,
    pub incomplete: Vec<String>,
}

impl Completeness {
    pub fn of(counts: &ExactCounts, lost_events: u64, lost_growths: u64) -> Completeness {
        let mut why = Vec::new();
        if lost_events > 0 {
            why.push(format!(
                "{lost_events} writes lost (ring buffer full): counts are lower bounds"
            ));
        }
        if lost_growths > 0 {
            why.push(format!(
                "{lost_growths} growth records lost (ring buffer full): grows are lower bounds"
            ));
        }
        if counts.read_failed > 0 {
            why.push(format!(
                "{} writes with keys that could not be read completely",
                counts.read_failed
            ));
        }
        why.extend(counts.incomplete_reasons());
        Completeness {
            complete: why.is_empty(),
            incomplete: why,
        }
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct Target {
    pub pid: u32,
    pub binary: String,
    pub go_version: String,
    pub map_impl: MapImpl,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct MapReport {
    /// Header address, or `group:<type>@<site>` for grouped instances.
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub key_type: String,
    pub instances: usize,
    pub writes: u64,
    pub writes_estimated: u64,
    /// Delete calls (`delete(m, k)`, also of keys not in the map) and clears (`clear(m)`).
    pub deletes: u64,
    pub deletes_estimated: u64,
    pub clears: u64,
    pub clears_estimated: u64,
    /// Distinct keys written.
    /// Budget mode: how far `writes_estimated` may be from the truth (0 in exact mode).
    pub error_bound: u64,
    pub distinct_keys: usize,
    /// Writes and deletes of keys not counted individually (the tracer's key budget was spent).
    pub untracked_key_writes: u64,
    /// Distinct goroutines that wrote (known only where each write's goroutine is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goroutines: Option<usize>,
    /// Length after the last operation (the newest header read, less the key a delete removed,
    /// plus the keys new to the map since; `null` for groups).
    pub len: Option<u64>,
    pub grows: u64,
    /// Slots, load (len ÷ capacity), bytes of buckets or groups; overflow buckets and a grow in
    /// progress for classic maps. `null` where not known (e.g. a Swiss map with tables whose
    /// growth was not seen from its start).
    pub capacity: Option<u64>,
    pub load: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub overflow_buckets: Option<u64>,
    pub growing: Option<bool>,
    pub growth: Vec<GrowthReport>,
    /// Live views (`top`): estimated writes per second over the last refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_s: Option<f64>,
    pub sites: Vec<SiteReport>,
    /// Keys by writes.
    pub top_keys: Vec<KeyReport>,
    /// Keys by deletes.
    pub top_deletes: Vec<DeleteReport>,
    /// Live views: writes per second of every key tracked (more than `top_keys`), for
    /// distributions (`serve`'s histogram).
    #[serde(skip)]
    pub key_rates: Vec<f64>,
}

/// A call site: the operations made from it (observed).
#[derive(Serialize, Debug, Clone)]
pub struct SiteReport {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub pc: String,
    pub writes: u64,
    pub deletes: u64,
    pub clears: u64,
    pub writes_estimated: u64,
    /// What the site's deletes and clears stand for (budget mode; as observed in exact mode).
    pub deletes_estimated: u64,
    pub clears_estimated: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct GrowthReport {
    #[serde(flatten)]
    pub growth: Growth,
    pub function: String,
    pub file: String,
    pub line: u32,
}

#[derive(Serialize, Debug, Clone)]
pub struct KeyReport {
    pub key: String,
    pub writes: u64,
    pub writes_estimated: u64,
    /// Of `writes_estimated`.
    pub error_bound: u64,
    pub deletes: u64,
    pub deletes_estimated: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Live views: estimated writes per second now, and the ratio to a refresh ago.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<f64>,
}

/// A key of `top_deletes`.
#[derive(Serialize, Debug, Clone)]
pub struct DeleteReport {
    pub key: String,
    pub deletes: u64,
    pub deletes_estimated: u64,
    /// Of `deletes_estimated`.
    pub error_bound: u64,
    pub writes: u64,
    pub writes_estimated: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
