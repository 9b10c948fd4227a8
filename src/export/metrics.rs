//! `serve`'s Prometheus metrics: one `prometheus-client` registry (OpenMetrics text), updated
//! from each watched process's live refresh. Cardinality is bounded by construction: labels are
//! the process (`pid`, and where known its `container_id`, `pod_uid` and `exe`: one value each
//! per process, so no more series), the map type, the write site and at most `--top` hot keys per
//! map (by key hash; the key itself only with `--metrics-key-label value`). Writes, deletes and
//! clears are counted per map type (writes per site too). A process that ends
//! has its series removed.
use std::collections::{BTreeMap, HashMap, HashSet};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::probe::container::Origin;
use crate::report::live::Refresh;
use crate::report::symbolize::file_name;
use crate::report::{redact, MapReport};

/// What kind of metric a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family `serve` exports (names without the `gomap_` prefix), with its kind and
/// help: the one list the exporter registers from and dashboards are checked against.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        WRITES,
        Kind::Counter,
        "Writes to maps of this type from this call site (estimated in budget mode)",
    ),
    (
        MAP_RATE,
        Kind::Gauge,
        "Writes per second to maps of this type over the last refresh (estimated)",
    ),
    (
        HOT_KEY_RATE,
        Kind::Gauge,
        "Write rate of the map's hottest keys now, by rank (at most --top per map)",
    ),
    (
        KEY_RATE,
        Kind::Histogram,
        "Distribution of per-key write rates in a map, observed at each refresh",
    ),
    (
        DELETES,
        Kind::Counter,
        "Deletes from maps of this type: delete(m, k) calls, also of absent keys, and sync.Map deletes that removed a key (estimated in budget mode)",
    ),
    (
        CLEARS,
        Kind::Counter,
        "Clears of maps of this type: clear(m) and range-and-delete loops, sync.Map Clear (estimated in budget mode)",
    ),
    (GROWS, Kind::Counter, "Map grows (resizes) seen"),
    (
        LEN,
        Kind::Gauge,
        "Entries in maps of this type, after their last write seen",
    ),
    (
        LOAD,
        Kind::Gauge,
        "Highest load (len / capacity) of maps of this type",
    ),
    (
        COVERAGE,
        Kind::Gauge,
        "Fraction of writes observed: probes attached part of the time in budget mode",
    ),
    (
        LOST,
        Kind::Counter,
        "Events lost because the ring buffer was full",
    ),
    (
        OVERHEAD,
        Kind::Gauge,
        "Estimated slowdown of the target caused by the probes, in percent",
    ),
    (TARGETS, Kind::Gauge, "Processes being traced"),
];

pub const WRITES: &str = "writes";
pub const MAP_RATE: &str = "map_writes_per_second";
pub const HOT_KEY_RATE: &str = "hot_key_writes_per_second";
pub const KEY_RATE: &str = "key_writes_per_second";
pub const DELETES: &str = "deletes";
pub const CLEARS: &str = "clears";
pub const GROWS: &str = "grows";
pub const LEN: &str = "map_len";
pub const LOAD: &str = "map_load";
pub const COVERAGE: &str = "probe_coverage_ratio";
pub const LOST: &str = "lost_events";
pub const OVERHEAD: &str = "estimated_overhead_percent";
pub const TARGETS: &str = "targets";

type Labels = Vec<(String, String)>;
type F64Counter = Counter<f64, std::sync::atomic::AtomicU64>;
type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone)]
struct KeyRateBuckets;

impl MetricConstructor<Histogram> for KeyRateBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.1 to ~1.7 M writes/s.
        Histogram::new(exponential_buckets(0.1, 4.0, 13))
    }
}

/// A family whose label sets are remembered per pid, so stale ones can be removed.
struct Series<M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    by_pid: HashMap<u32, HashSet<Labels>>,
}

impl<M: Clone, C: MetricConstructor<M>> Series<M, C> {
    fn new(family: Family<Labels, M, C>) -> Self {
        Series {
            family,
            by_pid: HashMap::new(),
        }
    }

    fn get(&mut self, pid: u32, labels: Labels) -> M {
        let m = self.family.get_or_create_owned(&labels);
        self.by_pid.entry(pid).or_default().insert(labels);
        m
    }

    /// Removes the pid's label sets not in `keep`.
    fn keep_only(&mut self, pid: u32, keep: &HashSet<Labels>) {
        if let Some(set) = self.by_pid.get_mut(&pid) {
            set.retain(|l| keep.contains(l) || !self.family.remove(l));
        }
    }

    fn retire(&mut self, pid: u32) {
        for l in self.by_pid.remove(&pid).unwrap_or_default() {
            self.family.remove(&l);
        }
    }
}

/// How hot keys are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLabel {
    /// Only `key_hash` (FNV-1a 64 of the key text, as `--redact` shows it).
    Hash,
    /// `key_hash` and the key itself (`key`): more cardinality, and key values leave the host.
    Value,
}

pub struct Exporter {
    registry: Registry,
    top: usize,
    key_label: KeyLabel,
    writes: Series<F64Counter>,
    map_rate: Series<F64Gauge>,
    hot_key_rate: Series<F64Gauge>,
    key_rate: Series<Histogram, KeyRateBuckets>,
    deletes: Series<F64Counter>,
    clears: Series<F64Counter>,
    grows: Series<F64Counter>,
    len: Series<F64Gauge>,
    load: Series<F64Gauge>,
    coverage: Series<F64Gauge>,
    lost: Series<F64Counter>,
    overhead: Series<F64Gauge>,
    targets: Gauge,
    /// Each process's labels: its pid and where it comes from.
    processes: HashMap<u32, Labels>,
}

impl Exporter {
    pub fn new(top: usize, key_label: KeyLabel) -> Self {
        let mut registry = Registry::with_prefix("gomap");
        let help = |name: &str| {
            FAMILIES
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, h)| *h)
                .unwrap_or("")
        };
        macro_rules! series {
            ($name:expr, $family:expr) => {{
                let f = $family;
                registry.register($name, help($name), f.clone());
                Series::new(f)
            }};
        }
        let writes = series!(WRITES, Family::default());
        let map_rate = series!(MAP_RATE, Family::default());
        let hot_key_rate = series!(HOT_KEY_RATE, Family::default());
        let key_rate = series!(KEY_RATE, Family::new_with_constructor(KeyRateBuckets));
        let deletes = series!(DELETES, Family::default());
        let clears = series!(CLEARS, Family::default());
        let grows = series!(GROWS, Family::default());
        let len = series!(LEN, Family::default());
        let load = series!(LOAD, Family::default());
        let coverage = series!(COVERAGE, Family::default());
        let lost = series!(LOST, Family::default());
        let overhead = series!(OVERHEAD, Family::default());
        let targets = Gauge::default();
        registry.register(TARGETS, help(TARGETS), targets.clone());
        Exporter {
            registry,
            top,
            key_label,
            writes,
            map_rate,
            hot_key_rate,
            key_rate,
            deletes,
            clears,
            grows,
            len,
            load,
            coverage,
            lost,
            overhead,
            targets,
            processes: HashMap::new(),
        }
    }

    /// Labels every series of process `pid` with where it comes from (before its refreshes).
    pub fn set_origin(&mut self, pid: u32, origin: &Origin) {
        self.processes.insert(pid, process_labels(pid, origin));
    }

    /// Takes in one refresh of process `pid`.
    pub fn update(&mut self, pid: u32, r: &Refresh) {
        let rep = &r.report;
        let process = self
            .processes
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| process_labels(pid, &Origin::default()));
        let base = |map: &str| -> Labels {
            let mut l = process.clone();
            l.push(("map".into(), map.into()));
            l
        };
        let coverage = rep.coverage.max(1e-9);

        // Map instances of one type are one series: the type is the label, not the address.
        let mut by_type: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, m) in rep.maps.iter().enumerate() {
            by_type.entry(&m.type_name).or_default().push(i);
        }
        let mut hot_seen = HashSet::new();
        for (ty, idx) in &by_type {
            let maps: Vec<&MapReport> = idx.iter().map(|&i| &rep.maps[i]).collect();
            let mut sites: HashMap<String, f64> = HashMap::new();
            for m in &maps {
                for s in &m.sites {
                    let name = format!("{} {}:{}", s.function, file_name(&s.file), s.line);
                    *sites.entry(name).or_default() += s.writes as f64 / coverage;
                }
            }
            for (site, total) in sites {
                let mut l = base(ty);
                l.push(("site".into(), site));
                raise_to(&self.writes.get(pid, l), total);
            }
            let rate: f64 = idx
                .iter()
                .map(|&i| r.map_rates.get(i).copied().unwrap_or(0.0))
                .sum();
            self.map_rate.get(pid, base(ty)).set(rate);
            // Every map type has both series (0 until it deletes or clears).
            raise_to(
                &self.deletes.get(pid, base(ty)),
                maps.iter().map(|m| m.deletes_estimated as f64).sum(),
            );
            raise_to(
                &self.clears.get(pid, base(ty)),
                maps.iter().map(|m| m.clears_estimated as f64).sum(),
            );
            raise_to(
                &self.grows.get(pid, base(ty)),
                maps.iter().map(|m| m.grows as f64).sum(),
            );
            let len: Option<u64> = maps.iter().filter_map(|m| m.len).reduce(|a, b| a + b);
            if let Some(len) = len {
                self.len.get(pid, base(ty)).set(len as f64);
            }
            if let Some(load) = maps.iter().filter_map(|m| m.load).reduce(f64::max) {
                self.load.get(pid, base(ty)).set(load);
            }
            let hist = self.key_rate.get(pid, base(ty));
            for &i in idx {
                for &v in r.key_rates.get(i).map(Vec::as_slice).unwrap_or_default() {
                    hist.observe(v);
                }
            }
            // The hottest keys now, merged over the type's instances.
            let mut keys: HashMap<&str, f64> = HashMap::new();
            for m in &maps {
                for k in &m.top_keys {
                    *keys.entry(&k.key).or_default() += k.writes_per_s.unwrap_or(0.0);
                }
            }
            let mut keys: Vec<(&str, f64)> = keys.into_iter().collect();
            keys.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            for (rank, (key, rate)) in keys.into_iter().take(self.top).enumerate() {
                let mut l = base(ty);
                l.push(("key_hash".into(), key_hash(key)));
                l.push(("rank".into(), (rank + 1).to_string()));
                if self.key_label == KeyLabel::Value {
                    l.push(("key".into(), key.to_string()));
                }
                self.hot_key_rate.get(pid, l.clone()).set(rate);
                hot_seen.insert(l);
            }
        }
        self.hot_key_rate.keep_only(pid, &hot_seen);
        let pid_only: Labels = process;
        self.coverage.get(pid, pid_only.clone()).set(rep.coverage);
        raise_to(
            &self.lost.get(pid, pid_only.clone()),
            rep.lost_events as f64,
        );
        self.overhead.get(pid, pid_only).set(r.overhead_percent);
    }

    /// Removes every series of a process that is no longer traced.
    pub fn retire(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.writes.retire(pid);
        self.map_rate.retire(pid);
        self.hot_key_rate.retire(pid);
        self.key_rate.retire(pid);
        self.deletes.retire(pid);
        self.clears.retire(pid);
        self.grows.retire(pid);
        self.len.retire(pid);
        self.load.retire(pid);
        self.coverage.retire(pid);
        self.lost.retire(pid);
        self.overhead.retire(pid);
    }

    pub fn set_targets(&self, n: usize) {
        self.targets.set(n as i64);
    }

    /// The metrics as OpenMetrics text (what Prometheus asks for), or in the Prometheus text
    /// format 0.0.4 (for everything else, e.g. `curl | promtool check metrics`).
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = if openmetrics {
            encode(&mut out, &self.registry)
        } else {
            prometheus_text::encode(&mut out, &self.registry)
        };
        out
    }
}

/// `pid`, then `container_id`, `pod_uid` and `exe` where known.
fn process_labels(pid: u32, origin: &Origin) -> Labels {
    let mut l: Labels = vec![("pid".into(), pid.to_string())];
    for (name, value) in [
        ("container_id", &origin.container_id),
        ("pod_uid", &origin.pod_uid),
        ("exe", &origin.exe),
    ] {
        if let Some(v) = value {
            l.push((name.into(), v.clone()));
        }
    }
    l
}

/// Counters follow cumulative totals that are re-estimated each refresh: they only move up.
fn raise_to(c: &F64Counter, total: f64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// The key's hash as `--redact` shows it, without the `#` (a redacted key already is one).
fn key_hash(key: &str) -> String {
    match key.strip_prefix('#') {
        Some(h) if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) => h.to_string(),
        _ => redact(key).trim_start_matches('#').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::key_hash;

    #[test]
    fn key_hash_is_the_redacted_form() {
        let h = key_hash("hot:1");
        assert_eq!(format!("#{h}"), crate::report::redact("hot:1"));
        assert_eq!(key_hash(&crate::report::redact("hot:1")), h);
    }
}
