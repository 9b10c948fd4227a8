//! End-to-end exact tracing (root, real uprobes): the tracer's per-map totals, per-function split
//! and top-20 key counts equal what the Go test programs count themselves, for every toolchain ×
//! variant; attaching to a running program; Ctrl-C leaves the target running and no probe behind.
mod common;
#[path = "support/exact.rs"]
mod exact;
#[path = "support/tracer.rs"]
mod tracer;

use std::path::Path;
use std::time::Duration;

use common::probes::{assert_links_gone, links_of};
use common::GoProcess;
use exact::{assert_counts_match, run_keys};
use serde_json::Value;
use tracer::Tracer;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn exact_counts_equal_the_programs_own_for_every_toolchain_and_variant() {
    require_root();
    let dir = tempdir("exact");
    for (i, (tc, variant, path)) in common::matrix("keys").into_iter().enumerate() {
        // Every other build is traced with the largest key capture: the BPF program reserves a
        // longer record then, a shape the verifier checks separately.
        let key_bytes = if i % 2 == 0 { "64" } else { "256" };
        let label = format!("go{} {variant:?} --key-bytes {key_bytes}", tc.version);
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let (program, report) = run_keys(&label, &path, &["--key-bytes", key_bytes], &json);
        assert_eq!(report["schema"], "ebpf-map-trace/report/v1");
        assert_eq!(report["lost_events"], 0, "{label}: lost events");
        assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
        assert!(report["target"]["go_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("go{}", tc.version)));
        assert_counts_match(&label, &program, &report, 20);
    }
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `run ARGS` attached to `target`: the tracer, once its probes are on the target, and the ids
/// of its links (to check after it is gone). Both end with their guards if the test fails.
fn attach(target: &GoProcess, args: &[&str], label: &str) -> (Tracer, Vec<u64>) {
    let pid = target.pid().to_string();
    let mut all = vec!["run", "-p", &pid];
    all.extend(args);
    let mut tracer = Tracer::spawn(&all);
    tracer.wait_attached();
    let links = links_of(tracer.child.id());
    assert!(
        !links.is_empty(),
        "{label}: the attached tracer holds no link"
    );
    (tracer, links)
}

#[test]
fn attach_to_a_running_program_then_sigint_leaves_it_unharmed_and_no_probe_behind() {
    require_root();
    let dir = tempdir("attach");
    for (tc, variant, path) in common::matrix("keys") {
        let label = format!("go{} {variant:?}", tc.version);
        let target = GoProcess::start_waiting(&path, &["-n", "2000"]);
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let args = ["--top", "20", "--json", json.to_str().unwrap()];
        let (tracer, links) = attach(&target, &args, &label);
        target.release();
        // Exit 0 and its own counts: the target was not harmed.
        let program = target.finish();
        // The program has finished writing; stop the tracer with Ctrl-C.
        tracer.signal(libc::SIGINT);
        let (st, _, err) = tracer.finish_within(Duration::from_secs(30));
        assert!(st.success(), "{label}: tracer exit {st:?}: {err}");
        assert_links_gone(&links, &label);
        assert_counts_match(&label, &program, &read_json(&json), 20);
    }
}

#[test]
fn sigint_in_pid_mode_detaches_while_the_target_keeps_running() {
    require_root();
    let path = common::build("keys", &common::toolchain("1.26.6"), common::Variant::Plain);
    let mut target = GoProcess::start_waiting(&path, &["-n", "100"]);
    let (tracer, links) = attach(&target, &[], "sigint");
    tracer.signal(libc::SIGINT);
    let (st, _, err) = tracer.finish_within(Duration::from_secs(30));
    assert!(st.success(), "tracer exit {st:?}: {err}");
    assert_links_gone(&links, "sigint");
    // The target is still waiting, alive; now let it run to a normal exit.
    assert!(!target.has_exited(), "target died with the tracer");
    target.release();
    let counts: Vec<Value> = target
        .finish()
        .into_iter()
        .filter(|l| l["event"] == "counts")
        .collect();
    assert_eq!(
        counts.len(),
        common::KEYS_SCENARIOS.len(),
        "target did not finish its work: {counts:?}"
    );
    for c in &counts {
        assert_eq!(c["total"], 100, "the target's own count: {c}");
    }
}

#[test]
fn target_exit_ends_a_pid_trace_with_its_report() {
    require_root();
    let path = common::build("keys", &common::newest_toolchain(), common::Variant::Pie);
    let target = GoProcess::start_waiting(&path, &["-n", "500"]);
    let json = tempdir("exit").join("report.json");
    let args = ["--top", "20", "--json", json.to_str().unwrap()];
    let (tracer, links) = attach(&target, &args, "exit");
    target.release();
    let program = target.finish();
    // No signal to the tracer: it must notice the exit by itself, within 20 s.
    let (status, _, err) = tracer.finish_within(Duration::from_secs(20));
    assert!(status.success(), "tracer exit {status:?}: {err}");
    assert_links_gone(&links, "exit");
    assert_counts_match("exit", &program, &read_json(&json), 20);
}
