//! End-to-end exact tracing (root, real uprobes): the tracer's per-map totals, per-function split
//! and top-20 key counts equal what the Go test programs count themselves, for every toolchain ×
//! variant; attaching to a running program; Ctrl-C leaves the target running and no probe behind.
mod common;
#[path = "support/exact.rs"]
mod exact;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::probes::{assert_links_gone, wait_attached};
use exact::{assert_counts_match, run_keys};
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

/// Starts `keys -wait`, returns the child and its stdout reader after the ready line. The caller
/// waits for the child; a test that panics on the way leaves the reaping to the test harness.
#[allow(clippy::zombie_processes)]
fn start_waiting(
    path: &Path,
    n: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(path)
        .args(["-wait", "-n", n])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rd = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            rd.read_line(&mut line).unwrap() > 0,
            "program ended before ready"
        );
        if line.contains("\"ready\"") {
            return (child, rd);
        }
    }
}

#[test]
fn attach_to_a_running_program_then_sigint_leaves_it_unharmed_and_no_probe_behind() {
    require_root();
    let dir = tempdir("attach");
    for (tc, variant, path) in common::matrix("keys") {
        let label = format!("go{} {variant:?}", tc.version);
        let (mut child, mut rd) = start_waiting(&path, "2000");
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let mut tracer = Command::new(TRACER)
            .args([
                "run",
                "--top",
                "20",
                "-p",
                &child.id().to_string(),
                "--json",
            ])
            .arg(&json)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let links = wait_attached(tracer.id(), &label);
        // SAFETY: signalling our own child processes.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut rd, &mut rest).unwrap();
        let program: Vec<Value> = rest
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The program has finished writing; stop the tracer with Ctrl-C.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
        let st = tracer.wait().unwrap();
        assert!(st.success(), "{label}: tracer exit {st:?}");
        let status = child.wait().unwrap();
        assert!(status.success(), "{label}: target harmed: {status:?}");
        assert_links_gone(&links, &label);
        assert_counts_match(&label, &program, &read_json(&json), 20);
    }
}

#[test]
fn sigint_in_pid_mode_detaches_while_the_target_keeps_running() {
    require_root();
    let path = common::build("keys", &common::toolchain("1.26.6"), common::Variant::Plain);
    let (mut child, mut rd) = start_waiting(&path, "100");
    let mut tracer = Command::new(TRACER)
        .args(["run", "-p", &child.id().to_string()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let links = wait_attached(tracer.id(), "sigint");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    assert!(tracer.wait().unwrap().success());
    assert_links_gone(&links, "sigint");
    // The target is still waiting, alive; now let it run to a normal exit.
    assert!(
        child.try_wait().unwrap().is_none(),
        "target died with the tracer"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut rd, &mut rest).unwrap();
    let counts: Vec<Value> = common::json_lines(&rest)
        .into_iter()
        .filter(|l| l["event"] == "counts")
        .collect();
    assert_eq!(
        counts.len(),
        common::KEYS_SCENARIOS.len(),
        "target did not finish its work: {rest}"
    );
    for c in &counts {
        assert_eq!(c["total"], 100, "the target's own count: {c}");
    }
    assert!(
        child.wait().unwrap().success(),
        "target did not exit normally"
    );
}

#[test]
fn target_exit_ends_a_pid_trace_with_its_report() {
    require_root();
    let path = common::build("keys", &common::newest_toolchain(), common::Variant::Pie);
    let (mut child, mut rd) = start_waiting(&path, "500");
    let json = tempdir("exit").join("report.json");
    let mut tracer = Command::new(TRACER)
        .args([
            "run",
            "--top",
            "20",
            "-p",
            &child.id().to_string(),
            "--json",
        ])
        .arg(&json)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let links = wait_attached(tracer.id(), "exit");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut rd, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    // No signal to the tracer: it must notice the exit by itself.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = tracer.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "tracer did not end when its target exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert_links_gone(&links, "exit");
    let program: Vec<Value> = rest
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_counts_match("exit", &program, &read_json(&json), 20);
}
