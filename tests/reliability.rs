//! Reliability (issue 7), with real uprobes as root: the tracer never harms its target. The
//! `stress` program (deep recursion with moving stacks, 10 000 goroutines, async preemption with
//! GOMAXPROCS changes and forced GCs, GC pressure) prints byte-identical output traced and
//! untraced on every toolchain, and the tracer's counts equal the program's own.
mod common;

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

fn run_untraced_and_traced(label: &str, bin: &Path, dir: &Path) {
    let (program, report) = common::run_untraced_and_traced(label, bin, dir, 20);
    common::assert_counts_by_function(label, &program, &report, 20, 4);
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
    // Stripped and PIE builds of the newest toolchain and of the oldest (Go 1.19: its probes sit
    // on the stack check's branch, not after it).
    let mut variant_tcs = vec![newest];
    variant_tcs.extend(common::toolchains().into_iter().take(1));
    variant_tcs.dedup();
    for tc in &variant_tcs {
        for v in [Variant::Stripped, Variant::Pie] {
            builds.push((
                format!("go{} {}", tc.version, v.name()),
                common::build("stress", tc, v),
            ));
        }
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
    common::assert_counts_by_function("stackmap", &json_lines(&out.stdout), &report, 10, 4);
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
