//! `/hotkeys`: the latest report (schema `ebpf-map-trace/report/v1`) of every watched process,
//! merged into one: `target` is the first process's, `pids` lists all, and each map says whose
//! it is (`pid`, and where known its `container_id`, `pod_uid` and `exe` inside its container);
//! maps are sorted by writes as in any report.
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::probe::container::Origin;
use crate::report::Report;

#[derive(Default)]
pub struct Snapshots {
    by_pid: BTreeMap<u32, Value>,
    origins: BTreeMap<u32, Origin>,
}

impl Snapshots {
    pub fn update(&mut self, pid: u32, report: &Report) {
        if let Ok(v) = serde_json::to_value(report) {
            self.by_pid.insert(pid, v);
        }
    }

    /// Where process `pid` comes from, added to each of its maps.
    pub fn set_origin(&mut self, pid: u32, origin: Origin) {
        self.origins.insert(pid, origin);
    }

    pub fn retire(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.origins.remove(&pid);
    }

    /// The merged report; `null` before the first refresh of any process.
    pub fn merged(&self) -> Value {
        let mut it = self.by_pid.iter();
        let Some((_, first)) = it.next() else {
            return Value::Null;
        };
        let mut out = first.clone();
        let mut maps = Vec::new();
        let (mut observed, mut lost, mut failures) = (0u64, 0u64, 0u64);
        let mut coverage = f64::INFINITY;
        for (pid, rep) in &self.by_pid {
            observed += rep["writes_observed"].as_u64().unwrap_or(0);
            lost += rep["lost_events"].as_u64().unwrap_or(0);
            failures += rep["read_failures"].as_u64().unwrap_or(0);
            coverage = coverage.min(rep["coverage"].as_f64().unwrap_or(1.0));
            for m in rep["maps"].as_array().into_iter().flatten() {
                let mut m = m.clone();
                m["pid"] = json!(pid);
                if let (Some(o), Some(fields)) = (self.origins.get(pid), m.as_object_mut()) {
                    if let Ok(Value::Object(origin)) = serde_json::to_value(o) {
                        fields.extend(origin);
                    }
                }
                maps.push(m);
            }
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m["writes_estimated"].as_u64().unwrap_or(0)));
        out["maps"] = Value::Array(maps);
        out["pids"] = json!(self.by_pid.keys().collect::<Vec<_>>());
        out["writes_observed"] = json!(observed);
        out["lost_events"] = json!(lost);
        out["read_failures"] = json!(failures);
        // The least covered process bounds what the merged estimates are worth.
        out["coverage"] = json!(coverage);
        out
    }
}
