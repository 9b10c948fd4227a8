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
        estimated_by: first.estimated_by,
        writes_observed: 0,
        deletes_observed: 0,
        clears_observed: 0,
        lost_events: 0,
        lost_growths: 0,
        read_failures: 0,
        stack_check_reentries: 0,
        grouping: first.grouping.clone(),
        completeness: first.completeness.clone(),
        ended: first.ended.clone(),
        maps: Vec::new(),
        pids: Some(Vec::new()),
        aggregation: None,
    };
    let mut pids = Vec::new();
    for (pid, r, origin) in reports {
        pids.push(pid);
        out.writes_observed += r.writes_observed;
        out.deletes_observed += r.deletes_observed;
        out.clears_observed += r.clears_observed;
        out.lost_events += r.lost_events;
        out.lost_growths += r.lost_growths;
        out.read_failures += r.read_failures;
        out.stack_check_reentries += r.stack_check_reentries;
        if let Some(a) = &r.aggregation {
            out.aggregation.get_or_insert_with(Default::default).add(a);
        }
        out.coverage = out.coverage.min(r.coverage);
        if out.estimated_by != r.estimated_by {
            out.estimated_by = None; // counted by different clocks: none says it for all
        }
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
            estimated_by: self.estimated_by,
            writes_observed: self.writes_observed,
            deletes_observed: self.deletes_observed,
            clears_observed: self.clears_observed,
            lost_events: self.lost_events,
            lost_growths: self.lost_growths,
            read_failures: self.read_failures,
            stack_check_reentries: self.stack_check_reentries,
            grouping: self.grouping.clone(),
            completeness: self.completeness.clone(),
            ended: self.ended.clone(),
            maps: self.maps.iter().map(|m| m.map.clone()).collect(),
            pids: self.pids.clone(),
            aggregation: self.aggregation,
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
            estimated_by: None,
            writes_observed: maps.iter().map(|m| m.1).sum(),
            deletes_observed: 5,
            clears_observed: 1,
            lost_events: 1,
            lost_growths: 0,
            read_failures: 2,
            stack_check_reentries: 0,
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
            aggregation: None,
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
        assert_eq!((m.deletes_observed, m.clears_observed), (10, 2));
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
