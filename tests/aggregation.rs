//! Counts aggregated in the kernel stay exact where aggregation is hardest (root, real uprobes):
//! keys whose fingerprints collide (a test knob makes every key of one map, site and length
//! share one), a table far too small for the keys (they take turns in its slots), and four
//! goroutines writing their own maps in parallel tight loops — against the Go programs' own
//! counts, with nothing lost.
mod common;
#[path = "support/exact.rs"]
mod exact;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{parse_workload, Variant, WorkloadDone};
use exact::{assert_counts_match, run_keys_env};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// Test knobs of the tracer (see `probe::load`): a fingerprint that ignores the key's bytes, and
/// one aggregation set (4 slots) per CPU.
const WEAK: (&str, &str) = ("EBPF_MAP_TRACE_WEAK_FINGERPRINT", "1");
const TINY: (&str, &str) = ("EBPF_MAP_TRACE_SLOT_SETS", "1");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The report's aggregation counter `name` (the report says how the kernel counted).
fn aggregation(report: &Value, name: &str, label: &str) -> u64 {
    report["aggregation"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{label}: no aggregation.{name} in the report"))
}

#[test]
fn colliding_fingerprints_and_a_tiny_table_count_exactly_on_every_toolchain() {
    require_root();
    let dir = tempdir("aggregation");
    for (i, (tc, variant, path)) in common::matrix("keys").into_iter().enumerate() {
        let (env, what): (&[(&str, &str)], _) = match i % 3 {
            0 => (&[WEAK], "weak fingerprint"),
            1 => (&[TINY], "4 slots per CPU"),
            _ => (&[WEAK, TINY], "weak fingerprint, 4 slots per CPU"),
        };
        let label = format!("go{} {variant:?} {what}", tc.version);
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let (program, report) = run_keys_env(&label, &path, &[], env, &json);
        assert_eq!(report["lost_events"], 0, "{label}: lost events");
        assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
        assert_counts_match(&label, &program, &report, 20);
        // The hard cases did happen: keys told apart by their bytes alone, keys taking turns.
        if env.contains(&WEAK) {
            assert!(
                aggregation(&report, "collisions", &label) > 0,
                "{label}: no collision"
            );
        }
        assert!(
            aggregation(&report, "evictions", &label) > 0,
            "{label}: no key took turns"
        );
    }
}

/// `run --top 50` on `workload ARGS`: the program's done line and the report.
fn run_workload(bin: &Path, args: &[&str], json: &Path) -> (WorkloadDone, Value) {
    let out = common::run_command(
        Command::new(TRACER)
            .args(["run", "--top", "50", "--json"])
            .arg(json)
            .arg("--")
            .arg(bin)
            .args(args),
        common::RUN_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "workload {args:?}: tracer failed: {}",
        out.stderr
    );
    let lines = common::json_lines(&out.stdout);
    let text = std::fs::read_to_string(json).unwrap();
    (
        parse_workload(&lines).done,
        serde_json::from_str(&text).unwrap(),
    )
}

/// Every map of the done line in the report with the same writes and top keys.
fn assert_maps_match(label: &str, done: &WorkloadDone, report: &Value) {
    let maps = report["maps"].as_array().unwrap();
    for want in &done.maps {
        let m = maps
            .iter()
            .find(|m| m["id"] == want.id.as_str())
            .unwrap_or_else(|| panic!("{label}: map {} not in the report", want.id));
        assert_eq!(m["writes"], want.writes, "{label}: writes of {}", want.id);
        let top: Vec<(String, u64)> = m["top_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["key"].as_str().unwrap().to_string(),
                    k["writes"].as_u64().unwrap(),
                )
            })
            .collect();
        // Ties may rank in any order: compare the counts in order, and each key's count.
        let counts = |v: &mut Vec<u64>| v.sort_unstable_by(|a, b| b.cmp(a));
        let (mut got, mut truth): (Vec<u64>, Vec<u64>) = (
            top.iter().map(|k| k.1).collect(),
            want.keys.iter().map(|k| k.writes).collect(),
        );
        counts(&mut got);
        counts(&mut truth);
        assert_eq!(got, truth, "{label}: top key counts of {}", want.id);
        for (key, n) in &top {
            if let Some(k) = want.keys.iter().find(|k| k.key == *key) {
                assert_eq!(*n, k.writes, "{label}: writes of {key} in {}", want.id);
            } else {
                let last = truth.last().copied().unwrap_or(0);
                assert_eq!(*n, last, "{label}: {key} ({n}) is not in the program's top");
            }
        }
    }
}

#[test]
fn four_goroutines_in_parallel_tight_loops_lose_nothing_and_count_exactly() {
    require_root();
    let dir = tempdir("aggregation-parallel");
    let tc = common::newest_toolchain();
    let bin = common::build("workload", &tc, Variant::Plain);
    for (args, what) in [
        (&["-goroutines", "4", "-writes", "500000"][..], "Zipf keys"),
        (
            &["-goroutines", "4", "-writes", "50000", "-distinct"][..],
            "all-distinct keys",
        ),
    ] {
        let label = format!("go{} workload {what}", tc.version);
        let (done, report) = run_workload(&bin, args, &dir.join("parallel.json"));
        assert_eq!(done.maps.len(), 4, "{label}: the program's maps");
        let sum: u64 = done.maps.iter().map(|m| m.writes).sum();
        assert_eq!(sum, done.writes, "{label}: the program's own count");
        assert_eq!(report["lost_events"], 0, "{label}: lost events");
        assert_maps_match(&label, &done, &report);
    }
}
