//! Issue 17, with real uprobes as root: on Go 1.17-1.20 the map functions are probed on their
//! stack check's branch (`jbe morestack`, which the kernel emulates) instead of on the
//! single-stepped `sub rsp` after it. A hit there whose function is about to grow its stack
//! starts the function again, and must not count. The `stackgrow` program makes its map writes
//! where the stack runs out, so that thousands of them grow the stack at the map function's own
//! check; the tracer's counts must still equal the program's, key by key, and the report says how
//! many hits it skipped so (none where the probe sits after the check, Go 1.21+).
mod common;

use std::path::{Path, PathBuf};

use common::{Toolchain, Variant};
use ebpf_map_trace::gobin::probes::Placement;
use ebpf_map_trace::gobin::GoBinary;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

/// Every map function of `bin` that is probed sits where its Go version wants it: on the stack
/// check's branch before Go 1.21 (whose instruction after the check is `sub rsp`), after the
/// check from 1.21 (`push rbp`); emulated by the kernel either way.
fn check_placement(label: &str, bin: &Path, tc: &Toolchain) -> Placement {
    let gobin = GoBinary::open(bin).unwrap_or_else(|e| panic!("{label}: {e:#}"));
    let want = if tc.minor() <= 20 {
        Placement::StackCheckBranch
    } else {
        Placement::AfterStackCheck
    };
    let functions = gobin.map_functions();
    assert!(functions.iter().any(|f| f.role.is_assign()), "{label}");
    for f in functions.iter().filter(|f| f.is_probed()) {
        let p = f.probe.as_ref().unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            p.placement, want,
            "{label}: {} at `{}`",
            f.function, p.instruction
        );
        assert!(p.emulated, "{label}: {} at `{}`", f.function, p.instruction);
        if want == Placement::StackCheckBranch {
            assert!(
                p.instruction.starts_with("jbe"),
                "{label}: {}",
                p.instruction
            );
        }
    }
    want
}

#[test]
fn writes_that_grow_the_stack_at_the_map_functions_check_count_once() {
    require_root();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stack_check");
    std::fs::create_dir_all(&dir).unwrap();
    let toolchains = common::toolchains();
    let mut builds: Vec<(Toolchain, Variant, PathBuf)> = toolchains
        .iter()
        .map(|tc| {
            (
                tc.clone(),
                Variant::Plain,
                common::build("stackgrow", tc, Variant::Plain),
            )
        })
        .collect();
    // The placement that differs, in every variant.
    if let Some(tc) = toolchains.iter().find(|tc| tc.minor() <= 20) {
        for v in [Variant::Stripped, Variant::Pie] {
            builds.push((tc.clone(), v, common::build("stackgrow", tc, v)));
        }
    }
    for (tc, v, bin) in &builds {
        let label = format!("go{} {}", tc.version, v.name());
        let placement = check_placement(&label, bin, tc);
        let (program, report) = common::run_untraced_and_traced(&label, bin, &dir, 20);
        for c in program.iter().filter(|v| v["event"] == "counts") {
            // Every write was an increment of its key's counter (the big map: its count mod 256).
            if c["scenario"] != "big" {
                assert_eq!(c["check"], c["total"], "{label}: {c}");
            }
        }
        // Per map (by its writing function): type, writes, distinct keys, every key's count.
        common::assert_counts_by_function(&label, &program, &report, 20, 3);
        let reentries = report["stack_check_reentries"]
            .as_u64()
            .expect("stack_check_reentries");
        match placement {
            // ~900 rounds each outgrow their stack 2-3 times, at a map function's check: the
            // skipped hits are there, and counting them would have shown as extra writes above.
            Placement::StackCheckBranch => assert!(
                reentries >= 300,
                "{label}: only {reentries} writes grew the stack at their probe"
            ),
            Placement::AfterStackCheck => assert_eq!(reentries, 0, "{label}"),
        }
        eprintln!("{label}: exact, {reentries} hits skipped at a stack check going to morestack");
    }
}
