//! The tracer's report against the `keys` program's own exact counts (`{"event":"counts"}`
//! lines): per map id, the type, the total, the split by writing function, and the top keys
//! with their counts and ranking; and the traced run of `keys` those come from.
#![allow(dead_code)] // each test file uses part of it
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `ebpf-map-trace run --top 20 ARGS --json JSON -- BIN -n 3000`: the program's own lines and
/// the report. Fails the test if the tracer fails or is still running after
/// [`crate::common::RUN_TIMEOUT`] (then killed with its target).
pub fn run_keys(label: &str, bin: &Path, args: &[&str], json: &Path) -> (Vec<Value>, Value) {
    run_keys_env(label, bin, args, &[], json)
}

/// [`run_keys`] with the tracer's environment extended by `env`.
pub fn run_keys_env(
    label: &str,
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    json: &Path,
) -> (Vec<Value>, Value) {
    let out = crate::common::run_command(
        Command::new(env!("CARGO_BIN_EXE_ebpf-map-trace"))
            .envs(env.iter().copied())
            .args(["run", "--top", "20"])
            .args(args)
            .arg("--json")
            .arg(json)
            .arg("--")
            .arg(bin)
            .args(["-n", "3000"]),
        crate::common::RUN_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{label}: tracer failed ({}): {}",
        out.status,
        out.stderr
    );
    let program = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{label}: {e}: {l:?}")))
        .collect();
    let text = std::fs::read_to_string(json).unwrap_or_else(|e| panic!("{}: {e}", json.display()));
    (program, serde_json::from_str(&text).unwrap())
}

/// Compares every scenario's exact counts with the report's map of the same id.
pub fn assert_counts_match(label: &str, program_out: &[Value], report: &Value, top: usize) {
    let maps: HashMap<&str, &Value> = report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m))
        .collect();
    let mut scenarios = 0;
    for c in program_out.iter().filter(|v| v["event"] == "counts") {
        scenarios += 1;
        let sc = c["scenario"].as_str().unwrap();
        let id = c["id"].as_str().unwrap();
        let m = maps
            .get(id)
            .unwrap_or_else(|| panic!("{label} {sc}: map {id} not in the report"));
        assert_eq!(m["type"], c["type"], "{label} {sc}: type");
        assert_eq!(m["writes"], c["total"], "{label} {sc}: total writes");
        // Per writing function.
        let mut by_func: HashMap<String, u64> = HashMap::new();
        for s in m["sites"].as_array().unwrap() {
            *by_func
                .entry(s["function"].as_str().unwrap().to_string())
                .or_default() += s["writes"].as_u64().unwrap();
        }
        for (f, n) in c["funcs"].as_object().unwrap() {
            assert_eq!(
                by_func.get(f).copied().unwrap_or(0),
                n.as_u64().unwrap(),
                "{label} {sc}: writes from {f}"
            );
        }
        // Top keys: same counts, same ranking of counts.
        let truth = crate::common::key_writes(c);
        let mut truth_counts: Vec<u64> = truth.values().copied().collect();
        truth_counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_keys = m["top_keys"].as_array().unwrap();
        assert_eq!(
            top_keys.len(),
            top.min(truth.len()),
            "{label} {sc}: number of top keys"
        );
        for (i, k) in top_keys.iter().enumerate() {
            let key = k["key"].as_str().unwrap();
            let writes = k["writes"].as_u64().unwrap();
            assert_eq!(
                truth.get(key).copied(),
                Some(writes),
                "{label} {sc}: key {key:?}"
            );
            assert_eq!(writes, truth_counts[i], "{label} {sc}: rank {i}");
        }
    }
    assert_eq!(
        scenarios,
        crate::common::KEYS_SCENARIOS.len(),
        "{label}: scenarios the program printed"
    );
}
