//! Reliability (issue 7), with real uprobes as root: the tracer never harms its target. The
//! `stress` program (deep recursion with moving stacks, 10 000 goroutines, async preemption with
//! GOMAXPROCS changes and forced GCs, GC pressure) prints byte-identical output traced and
//! untraced on every toolchain, and the tracer's counts equal the program's own.
mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{json_lines, Toolchain, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Checks a report made with `--top top_n` against the `counts` lines of `stress`: per scenario,
/// the maps written from its function hold exactly its writes and distinct keys; each map lists
/// `top_n` keys (or all it has), every one with its true count; a scenario's only map ranks the
/// program's most written keys.
pub fn assert_stress_counts(label: &str, program: &[Value], report: &Value, top_n: usize) {
    let maps = report["maps"].as_array().expect("report maps");
    let mut scenarios = 0;
    for c in program.iter().filter(|v| v["event"] == "counts") {
        scenarios += 1;
        let sc = c["scenario"].as_str().unwrap();
        let func = c["func"].as_str().unwrap();
        let ours: Vec<&Value> = maps
            .iter()
            .filter(|m| {
                m["sites"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["function"] == func)
            })
            .collect();
        assert!(!ours.is_empty(), "{label} {sc}: no map written from {func}");
        for m in &ours {
            assert_eq!(m["type"], c["type"], "{label} {sc}: map type");
        }
        let writes: u64 = ours.iter().map(|m| m["writes"].as_u64().unwrap()).sum();
        assert_eq!(writes, c["total"].as_u64().unwrap(), "{label} {sc}: writes");
        let distinct: u64 = ours
            .iter()
            .map(|m| m["distinct_keys"].as_u64().unwrap())
            .sum();
        assert_eq!(
            distinct,
            c["distinct"].as_u64().unwrap(),
            "{label} {sc}: distinct keys"
        );
        let truth: HashMap<&str, u64> = c["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["key"].as_str().unwrap(), k["writes"].as_u64().unwrap()))
            .collect();
        for m in &ours {
            let top = m["top_keys"].as_array().unwrap();
            let distinct = m["distinct_keys"].as_u64().unwrap() as usize;
            assert_eq!(
                top.len(),
                top_n.min(distinct),
                "{label} {sc}: top keys of map {}",
                m["id"]
            );
            for k in top {
                let key = k["key"].as_str().unwrap();
                assert_eq!(
                    truth.get(key).copied(),
                    k["writes"].as_u64(),
                    "{label} {sc}: key {key:?}"
                );
            }
        }
        // A scenario with one map: its top keys are the program's most written, in order.
        if let [m] = ours[..] {
            let counts: Vec<u64> = m["top_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["writes"].as_u64().unwrap())
                .collect();
            let want: Vec<u64> = c["keys"]
                .as_array()
                .unwrap()
                .iter()
                .take(top_n)
                .map(|k| k["writes"].as_u64().unwrap())
                .collect();
            assert_eq!(counts, want, "{label} {sc}: ranking of the top {top_n}");
        }
    }
    assert_eq!(
        scenarios, 4,
        "{label}: stress printed {scenarios} scenarios"
    );
}

fn run_untraced_and_traced(label: &str, bin: &Path, dir: &Path) {
    let plain = common::run_output(bin, &[], common::RUN_TIMEOUT);
    assert!(
        plain.status.success(),
        "{label}: untraced run failed: {}",
        plain.stderr
    );
    let json = dir.join(format!("{}.json", label.replace(' ', "-")));
    let traced = common::run_output(
        Path::new(TRACER),
        &[
            "run",
            "--top",
            "20",
            "--json",
            json.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
        ],
        common::RUN_TIMEOUT,
    );
    assert_eq!(
        traced.status.code(),
        Some(0),
        "{label}: traced run failed: {}",
        traced.stderr
    );
    assert!(
        traced.stdout == plain.stdout,
        "{label}: output differs when traced:\n--- untraced\n{}\n--- traced\n{}",
        plain.stdout,
        traced.stdout
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("report JSON");
    assert_eq!(report["lost_events"], 0, "{label}: lost events");
    assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
    assert_stress_counts(label, &json_lines(&plain.stdout), &report, 20);
}

#[test]
fn stress_program_is_unharmed_and_counted_exactly_on_every_toolchain() {
    require_root();
    let dir = tempdir("stress");
    let newest: Toolchain = common::newest_toolchain();
    let mut builds: Vec<(String, std::path::PathBuf)> = common::toolchains()
        .iter()
        .map(|tc| {
            (
                format!("go{} plain", tc.version),
                common::build("stress", tc, Variant::Plain),
            )
        })
        .collect();
    for v in [Variant::Stripped, Variant::Pie] {
        builds.push((
            format!("go{} {}", newest.version, v.name()),
            common::build("stress", &newest, v),
        ));
    }
    for (label, bin) in &builds {
        run_untraced_and_traced(label, bin, &dir);
    }
}

/// Found by this suite: a map whose header lives on a goroutine stack (a local map that does
/// not escape) moves when the stack is copied; keyed by header address, one map was reported as
/// two with keys counted in both (362 distinct keys for 300, Go 1.19). The BPF side now
/// identifies stack maps by (goroutine, offset from the stack top), which copying preserves.
#[test]
fn a_map_on_a_moving_stack_stays_one_map() {
    require_root();
    let dir = tempdir("stackmap");
    let bin = common::build("stress", &common::toolchain("1.19"), Variant::Plain);
    let json = dir.join("report.json");
    let out = common::run_output(
        Path::new(TRACER),
        &[
            "run",
            "--json",
            json.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
            "-stackmap",
        ],
        common::RUN_TIMEOUT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_stress_counts("stackmap", &json_lines(&out.stdout), &report, 10);
    let gc = report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sites"][0]["function"] == "main.writeGC")
        .unwrap();
    assert!(
        gc["id"].as_str().unwrap().starts_with("stack:g"),
        "the stack map's id: {}",
        gc["id"]
    );
}
