//! Several processes' reports as one (`serve`'s `/hotkeys`, `top --binary`): the first
//! process's target and settings, totals summed over all, the least coverage (it bounds what
//! the merged estimates are worth), `pids`, and every map listed with its process (`pid`, and
//! where known its container, pod and executable inside it), by writes as in any report.
use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{MapReport, Report};
use crate::probe::container::Origin;

/// A map of a merged report: the map, and whose it is.
#[derive(Serialize, Debug, Clone)]
pub struct ProcessMap {
    #[serde(flatten)]
    pub map: MapReport,
    pub pid: u32,
    #[serde(flatten)]
    pub origin: Origin,
    /// Where the map is in its process's report (for per-map data kept beside it).
    #[serde(skip)]
    pub index: usize,
}

/// The latest report of every process followed, and where each process comes from.
#[derive(Default)]
pub struct Latest {
    reports: BTreeMap<u32, Report>,
    origins: BTreeMap<u32, Origin>,
}

impl Latest {
    pub fn update(&mut self, pid: u32, report: Report) {
        self.reports.insert(pid, report);
    }

    /// Where process `pid` comes from, given to each of its maps.
    pub fn set_origin(&mut self, pid: u32, origin: Origin) {
        self.origins.insert(pid, origin);
    }

    pub fn retire(&mut self, pid: u32) {
        self.reports.remove(&pid);
        self.origins.remove(&pid);
    }

    pub fn reports(&self) -> &BTreeMap<u32, Report> {
        &self.reports
    }

    /// The merged report; `None` before the first report of any process.
    pub fn merged(&self) -> Option<Report<ProcessMap>> {
        merge(
            self.reports
                .iter()
                .map(|(pid, r)| (*pid, r, self.origins.get(pid))),
        )
    }
}

/// The reports of processes (pid, report, origin), in the order given, as one report.
pub fn merge<'a>(
    reports: impl IntoIterator<Item = (u32, &'a Report, Option<&'a Origin>)>,
) -> Option<Report<ProcessMap>> {
    let mut reports = reports.into_iter().peekable();
    let first = reports.peek()?.1;
    let mut out = Report {
        schema: first.schema,
        target: first.target.clone(),
        mode: first.mode,
        duration_s: first.duration_s,
        coverage: f64::INFINITY,
        writes_observed: 0,
        lost_events: 0,
        read_failures: 0,
        grouping: first.grouping.clone(),
        completeness: first.completeness.clone(),
        ended: first.ended.clone(),
        maps: Vec::new(),
        pids: Some(Vec::new()),
    };
    let mut pids = Vec::new();
    for (pid, r, origin) in reports {
        pids.push(pid);
        out.writes_observed += r.writes_observed;
        out.lost_events += r.lost_events;
        out.read_failures += r.read_failures;
        out.coverage = out.coverage.min(r.coverage);
        out.maps
            .extend(r.maps.iter().enumerate().map(|(index, m)| ProcessMap {
                map: m.clone(),
                pid,
                origin: origin.cloned().unwrap_or_default(),
                index,
            }));
    }
    out.maps
        .sort_by_key(|m| std::cmp::Reverse(m.map.writes_estimated));
    out.pids = Some(pids);
    Some(out)
}

impl Report<ProcessMap> {
    /// The merged report with its maps as plain maps (their processes in `pids` order of the
    /// maps, returned beside it).
    pub fn into_plain(self) -> (Report, Vec<ProcessMap>) {
        let plain = Report {
            schema: self.schema,
            target: self.target.clone(),
            mode: self.mode,
            duration_s: self.duration_s,
            coverage: self.coverage,
            writes_observed: self.writes_observed,
            lost_events: self.lost_events,
            read_failures: self.read_failures,
            grouping: self.grouping.clone(),
            completeness: self.completeness.clone(),
            ended: self.ended.clone(),
            maps: self.maps.iter().map(|m| m.map.clone()).collect(),
            pids: self.pids.clone(),
        };
        (plain, self.maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gobin::MapImpl;
    use crate::report::model::{Completeness, Target, SCHEMA};
    use crate::sampling::Mode;

    fn report(pid: u32, coverage: f64, maps: &[(&str, u64)]) -> Report {
        Report {
            schema: SCHEMA,
            target: Target {
                pid,
                binary: "/srv/app".into(),
                go_version: "go1.26.6".into(),
                map_impl: MapImpl::Swiss,
            },
            mode: Mode::Budget,
            duration_s: 1.0,
            coverage,
            writes_observed: maps.iter().map(|m| m.1).sum(),
            lost_events: 1,
            read_failures: 2,
            grouping: String::new(),
            completeness: Completeness::default(),
            ended: None,
            maps: maps
                .iter()
                .map(|(id, w)| MapReport {
                    id: id.to_string(),
                    writes: *w,
                    writes_estimated: *w * 10,
                    ..Default::default()
                })
                .collect(),
            pids: None,
        }
    }

    #[test]
    fn processes_merge_into_one_report_with_each_map_and_its_process() {
        let mut latest = Latest::default();
        assert!(latest.merged().is_none());
        latest.update(7, report(7, 0.5, &[("0xa", 10), ("0xb", 30)]));
        latest.update(3, report(3, 0.2, &[("0xc", 20)]));
        latest.set_origin(
            7,
            Origin {
                container_id: Some("c0ffee".into()),
                ..Default::default()
            },
        );
        let m = latest.merged().unwrap();
        assert_eq!(m.target.pid, 3, "the first process's target");
        assert_eq!(m.pids, Some(vec![3, 7]));
        assert_eq!(
            (m.writes_observed, m.lost_events, m.read_failures),
            (60, 2, 4)
        );
        assert_eq!(
            m.coverage, 0.2,
            "the least covered process bounds the merge"
        );
        let order: Vec<(&str, u32, usize)> = m
            .maps
            .iter()
            .map(|p| (p.map.id.as_str(), p.pid, p.index))
            .collect();
        assert_eq!(order, [("0xb", 7, 1), ("0xc", 3, 0), ("0xa", 7, 0)]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["maps"][0]["pid"], 7);
        assert_eq!(json["maps"][0]["container_id"], "c0ffee");
        assert!(json["maps"][1].get("container_id").is_none());
        assert_eq!(json["pids"], serde_json::json!([3, 7]));
        latest.retire(7);
        assert_eq!(latest.merged().unwrap().pids, Some(vec![3]));
    }
}
