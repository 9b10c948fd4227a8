//! The report model: what was measured, as the versioned JSON schema
//! `ebpf-map-trace/report/v1`. One model for every output — a process's report, the merge of
//! several processes' (`merge`), the table, the live views.
use serde::Serialize;

use crate::decode::internals::Growth;
use crate::gobin::MapImpl;
use crate::hotkeys::exact::ExactCounts;
use crate::sampling::Mode;

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
    pub writes_observed: u64,
    pub lost_events: u64,
    pub read_failures: u64,
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
}

/// Whether the counts are the whole truth; when not, each reason in a sentence.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Completeness {
    pub complete: bool,
    pub incomplete: Vec<String>,
}

impl Completeness {
    pub fn of(counts: &ExactCounts, lost_events: u64) -> Completeness {
        let mut why = Vec::new();
        if lost_events > 0 {
            why.push(format!(
                "{lost_events} writes lost (ring buffer full): counts are lower bounds"
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
    pub distinct_keys: usize,
    /// Writes of keys not counted individually (the tracer's key budget was spent).
    pub untracked_key_writes: u64,
    /// Distinct goroutines that wrote (known only where each write's goroutine is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goroutines: Option<usize>,
    /// Length after the last write (from the header read at that write; `null` for groups).
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
    pub top_keys: Vec<KeyReport>,
}

#[derive(Serialize, Debug, Clone)]
pub struct SiteReport {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub pc: String,
    pub writes: u64,
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
    pub error_bound: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Live views: estimated writes per second now, and the ratio to a refresh ago.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend: Option<f64>,
}
