//! Ground truth of map operations — writes, deletes and clears per map and per key — as the test
//! programs `deletes` and `syncmap` print it (`{"event":"counts",...}` lines), and the checks of
//! what the tracer shows against it: a JSON report in exact mode (totals, sites, `top_keys`,
//! `top_deletes`, length), in budget mode (estimates within their stated bounds), `trace` lines
//! and `/metrics` samples.
#![allow(dead_code)] // each test file uses part of it
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// One key's operations, as the program counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTruth {
    pub key: String,
    pub writes: u64,
    pub deletes: u64,
}

/// One map (scenario) of a program.
#[derive(Clone, Debug)]
pub struct Truth {
    pub scenario: String,
    pub type_name: String,
    /// `%p` of the map: its id in reports and trace lines.
    pub id: String,
    pub writes: u64,
    pub deletes: u64,
    pub clears: u64,
    /// The map's length at the end, where the program knows it.
    pub len: Option<u64>,
    /// Operations per function that made them, writes / deletes / clears.
    pub funcs: [BTreeMap<String, u64>; 3],
    pub keys: Vec<KeyTruth>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn funcs(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| o.iter().map(|(k, n)| (k.clone(), u(n))).collect())
        .unwrap_or_default()
}

/// The program's `counts` lines.
pub fn parse(lines: &[Value]) -> Vec<Truth> {
    let truth: Vec<Truth> = lines
        .iter()
        .filter(|l| l["event"] == "counts")
        .map(|c| Truth {
            scenario: c["scenario"].as_str().unwrap().to_string(),
            type_name: c["type"].as_str().unwrap().to_string(),
            id: c["id"].as_str().unwrap().to_string(),
            writes: u(&c["writes"]),
            deletes: u(&c["deletes"]),
            clears: u(&c["clears"]),
            len: c["len"].as_u64(),
            funcs: [
                funcs(&c["write_funcs"]),
                funcs(&c["delete_funcs"]),
                funcs(&c["clear_funcs"]),
            ],
            keys: c["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| KeyTruth {
                    key: k["key"].as_str().unwrap().to_string(),
                    writes: u(&k["writes"]),
                    deletes: u(&k["deletes"]),
                })
                .collect(),
        })
        .collect();
    assert!(
        !truth.is_empty(),
        "the program printed no counts: {lines:?}"
    );
    truth
}

/// The report's map of id `id`.
pub fn map_of<'r>(label: &str, report: &'r Value, t: &Truth) -> &'r Value {
    report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == t.id.as_str())
        .unwrap_or_else(|| panic!("{label} {}: map {} not in the report", t.scenario, t.id))
}

/// Counts sorted descending.
fn ranked(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// Checks one ranking list of the report (`top_keys` by writes, `top_deletes` by deletes)
/// against the program's keys: at most `top` entries, exactly the counts of the keys named, and
/// (`ordered`) ranked as the program's own counts.
fn check_ranking(
    label: &str,
    list: &Value,
    keys: &[KeyTruth],
    top: usize,
    by_deletes: bool,
    ordered: bool,
) {
    let truth: HashMap<&str, &KeyTruth> = keys
        .iter()
        .filter(|k| if by_deletes { k.deletes } else { k.writes } > 0)
        .map(|k| (k.key.as_str(), k))
        .collect();
    let counts = ranked(
        truth
            .values()
            .map(|k| if by_deletes { k.deletes } else { k.writes })
            .collect(),
    );
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), top.min(truth.len()), "{label}: entries");
    for (i, e) in list.iter().enumerate() {
        let key = e["key"].as_str().unwrap();
        let t = truth
            .get(key)
            .unwrap_or_else(|| panic!("{label}: key {key:?} is not one the program counted"));
        assert_eq!(
            (u(&e["writes"]), u(&e["deletes"])),
            (t.writes, t.deletes),
            "{label}: writes and deletes of {key:?}"
        );
        let n = if by_deletes { t.deletes } else { t.writes };
        if ordered {
            assert_eq!(n, counts[i], "{label}: rank {i} ({key:?})");
        }
    }
}

/// How a report in exact mode was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `run`: every key counted; lengths known.
    Run,
    /// `top`, `serve`: keys tracked in bounded sketches (exact for maps of at most `top` keys),
    /// `top_keys` ordered by rate, lengths as of the last write.
    Live,
}

/// Exact mode: every scenario's map has the program's totals, per-function split (but of
/// functions named `reflect.…`, whose call sites differ between Go versions), length (`run`),
/// and rankings of its `top` keys by writes and by deletes (live views: maps of at most `top`
/// keys).
pub fn check_exact(label: &str, truth: &[Truth], report: &Value, top: usize, view: View) {
    for t in truth {
        let l = format!("{label} {}", t.scenario);
        let m = map_of(label, report, t);
        assert_eq!(m["type"], t.type_name.as_str(), "{l}: type");
        assert_eq!(
            (u(&m["writes"]), u(&m["deletes"]), u(&m["clears"])),
            (t.writes, t.deletes, t.clears),
            "{l}: writes, deletes, clears"
        );
        assert_eq!(
            (
                u(&m["writes_estimated"]),
                u(&m["deletes_estimated"]),
                u(&m["clears_estimated"])
            ),
            (t.writes, t.deletes, t.clears),
            "{l}: exact mode's estimates are the counts"
        );
        if view == View::Run {
            if let Some(n) = t.len {
                assert_eq!(m["len"].as_u64(), Some(n), "{l}: length at the end");
            }
        }
        for (i, what) in ["writes", "deletes", "clears"].iter().enumerate() {
            let mut by_func: HashMap<&str, u64> = HashMap::new();
            for s in m["sites"].as_array().unwrap() {
                *by_func.entry(s["function"].as_str().unwrap()).or_default() += u(&s[*what]);
            }
            for (f, n) in t.funcs[i]
                .iter()
                .filter(|(f, _)| !f.starts_with("reflect."))
            {
                assert_eq!(
                    by_func.get(f.as_str()).copied().unwrap_or(0),
                    *n,
                    "{l}: {what} from {f} (sites {})",
                    m["sites"]
                );
            }
        }
        if view == View::Live && t.keys.len() > top {
            continue;
        }
        let ordered = view == View::Run;
        let l = |list: &str| format!("{l} {list}");
        check_ranking(&l("top_keys"), &m["top_keys"], &t.keys, top, false, ordered);
        check_ranking(
            &l("top_deletes"),
            &m["top_deletes"],
            &t.keys,
            top,
            true,
            true,
        );
    }
}

/// Budget mode: every key the report ranks has estimates of writes (in `top_keys`) and deletes
/// (in `top_deletes`) within the stated bound of the program's counts; the report says it was
/// sampled. Returns the coverage.
pub fn check_budget(label: &str, truth: &[Truth], report: &Value) -> f64 {
    assert_eq!(report["mode"], "budget", "{label}");
    let coverage = report["coverage"].as_f64().unwrap();
    for t in truth {
        let l = format!("{label} {}", t.scenario);
        let m = map_of(label, report, t);
        let keys: HashMap<&str, &KeyTruth> = t.keys.iter().map(|k| (k.key.as_str(), k)).collect();
        let mut checked = 0;
        for (list, field, count) in [
            ("top_keys", "writes_estimated", 0),
            ("top_deletes", "deletes_estimated", 1),
        ] {
            for e in m[list].as_array().unwrap() {
                let key = e["key"].as_str().unwrap();
                let k = keys
                    .get(key)
                    .unwrap_or_else(|| panic!("{l}: {list} has {key:?}, unknown to the program"));
                let exact = [k.writes, k.deletes][count] as f64;
                let est = e[field].as_f64().unwrap();
                let bound = e["error_bound"].as_f64().unwrap();
                assert!(
                    (est - exact).abs() <= bound,
                    "{l}: {list} {key:?} estimate {est} ± {bound}, truth {exact} (coverage {coverage})"
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{l}: no key ranked: {m}");
    }
    coverage
}

/// Operations in `trace --json` lines: per map id, per (op, key) and per op.
#[derive(Debug, Default)]
pub struct Traced {
    pub by_key: HashMap<String, [u64; 2]>,
    pub ops: [u64; 3],
}

/// Counts the `write`, `delete` and `clear` lines per map id; checks each line's `op` is its
/// `event`.
pub fn traced(lines: &[Value]) -> HashMap<String, Traced> {
    let mut out: HashMap<String, Traced> = HashMap::new();
    for l in lines {
        let i = match l["event"].as_str() {
            Some("write") => 0,
            Some("delete") => 1,
            Some("clear") => 2,
            _ => continue,
        };
        assert_eq!(l["op"], l["event"], "a trace line's op is its event: {l}");
        let t = out
            .entry(l["map_id"].as_str().unwrap().to_string())
            .or_default();
        t.ops[i] += 1;
        if i < 2 {
            let key = l["key"].as_str().unwrap().to_string();
            t.by_key.entry(key).or_default()[i] += 1;
        }
    }
    out
}

/// Exact mode: the trace lines of every scenario's map are the program's operations, key by key.
pub fn check_trace(label: &str, truth: &[Truth], lines: &[Value]) {
    let traced = traced(lines);
    for t in truth {
        let l = format!("{label} {}", t.scenario);
        let got = traced
            .get(&t.id)
            .unwrap_or_else(|| panic!("{l}: no trace line of map {}", t.id));
        assert_eq!(
            got.ops,
            [t.writes, t.deletes, t.clears],
            "{l}: writes, deletes, clears traced"
        );
        for k in &t.keys {
            assert_eq!(
                got.by_key.get(&k.key).copied().unwrap_or_default(),
                [k.writes, k.deletes],
                "{l}: writes and deletes of {:?} traced",
                k.key
            );
        }
        assert_eq!(got.by_key.len(), t.keys.len(), "{l}: keys traced");
    }
}

/// The sum of the samples of `name` in a Prometheus text scrape whose labels include every one
/// of `labels` (`name="value"` pairs).
pub fn sample_sum(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((set, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{}\"", v.replace('"', "\\\""))))
        {
            *found.get_or_insert(0.0) += value.trim().parse::<f64>().unwrap();
        }
    }
    found
}
