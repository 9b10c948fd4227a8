//! Life-cycle of a traced program (issue 7), with real uprobes: a target that execs another
//! program ends the trace with a report that says so (the tracer does not hang on the new
//! program); children it forks (os/exec of itself) are not traced; a target that exits ends
//! `top` as well as `run`. Every wait has a timeout.
mod common;

use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::probes::wait_attached;
use common::{json_lines, GoProcess, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "tracing tests need root");
}

fn lifecycle() -> std::path::PathBuf {
    common::build("lifecycle", &common::newest_toolchain(), Variant::Plain)
}

fn report_at(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifecycle");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn read_report(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The map written from main.writeKey.
fn write_key_map(report: &Value) -> &Value {
    report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sites"][0]["function"] == "main.writeKey")
        .expect("main.writeKey's map in the report")
}

fn parent_writes(lines: &[Value]) -> u64 {
    lines
        .iter()
        .find(|l| l["who"] == "parent")
        .and_then(|l| l["writes"].as_u64())
        .expect("the parent's counts line")
}

fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(50));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        true
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        !watchdog.join().unwrap() || out.status.code().is_some(),
        "timed out"
    );
    out
}

#[test]
fn exec_ends_a_command_trace_with_a_report_that_says_why() {
    require_root();
    let json = report_at("exec-cmd.json");
    let t0 = Instant::now();
    let out = run_with_timeout(
        Command::new(TRACER)
            .args(["run", "--json", json.to_str().unwrap(), "--"])
            .arg(lifecycle())
            .args([
                "-mode",
                "exec",
                "-n",
                "1000",
                "-exec",
                "/bin/sleep",
                "-exec-arg",
                "1",
            ]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        stderr.contains("executed another program (") && stderr.contains("sleep)"),
        "the tracer does not say why the trace ended: {stderr}"
    );
    let report = read_report(&json);
    assert!(report["ended"]
        .as_str()
        .is_some_and(|s| s.contains("executed another program")));
    let program = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        write_key_map(&report)["writes"].as_u64(),
        Some(parent_writes(&program))
    );
}

/// Starts the tracer with `args`; its stdout is read to the end by the returned thread.
fn spawn_tracer<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let mut tracer = Command::new(TRACER)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tracer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { out }, &mut s);
        s
    });
    (tracer, reader)
}

/// Waits for the tracer to end by itself within `timeout`; kills it and fails otherwise.
fn wait_for_tracer(tracer: &mut std::process::Child, timeout: Duration, what: &str) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = tracer.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > timeout {
            let _ = tracer.kill();
            let _ = tracer.wait();
            panic!("the tracer did not end within {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exec_ends_a_pid_trace_while_the_new_program_runs_on() {
    require_root();
    for cmd in [&["run"][..], &["top", "--json", "--mode", "exact"][..]] {
        let label = cmd.join(" ");
        let json = report_at("exec-pid.json");
        let p = GoProcess::start_waiting(
            &lifecycle(),
            &[
                "-mode",
                "exec",
                "-n",
                "1000",
                "-exec",
                "/bin/sleep",
                "-exec-arg",
                "30",
            ],
        );
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(["-p".into(), p.pid().to_string()]);
        if cmd[0] == "run" {
            args.extend(["--json".into(), json.to_str().unwrap().into()]);
        }
        let (mut tracer, reader) = spawn_tracer(&args);
        wait_attached(tracer.id(), &label);
        p.release();
        let status = wait_for_tracer(
            &mut tracer,
            Duration::from_secs(15),
            &format!("{label}: target exec'd sleep 30"),
        );
        let stdout = reader.join().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut tracer.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "{label}: {stderr}");
        assert!(
            stderr.contains("executed another program"),
            "{label}: {stderr}"
        );
        // The target is now sleep, alive and untouched.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap();
        assert_eq!(comm.trim(), "sleep", "{label}");
        let report = if cmd[0] == "run" {
            read_report(&json)
        } else {
            json_lines(&stdout).pop().expect("a snapshot")
        };
        assert!(
            report["ended"]
                .as_str()
                .is_some_and(|s| s.contains("executed another program")),
            "{label}: {report}"
        );
        assert_eq!(
            write_key_map(&report)["writes"].as_u64(),
            Some(1000),
            "{label}"
        );
        drop(p); // kills and reaps the sleeping target
    }
}

#[test]
fn forked_children_are_not_traced() {
    require_root();
    let json = report_at("fork.json");
    let out = run_with_timeout(
        Command::new(TRACER)
            .args(["run", "--json", json.to_str().unwrap(), "--"])
            .arg(lifecycle())
            .args(["-mode", "fork", "-n", "1000"]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let program = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        program.iter().any(|l| l["who"] == "child"),
        "the child did not run"
    );
    let report = read_report(&json);
    assert_eq!(
        write_key_map(&report)["writes"].as_u64(),
        Some(parent_writes(&program))
    );
    let text = report.to_string();
    assert!(!text.contains("child:"), "a child's keys were traced");
    assert!(text.contains("parent:"));
}

#[test]
fn target_exit_ends_top() {
    require_root();
    let p = GoProcess::start_waiting(&lifecycle(), &["-mode", "fork", "-n", "2000"]);
    let pid = p.pid().to_string();
    let (mut tracer, reader) = spawn_tracer(&["top", "--json", "--mode", "exact", "-p", &pid]);
    wait_attached(tracer.id(), "top exit");
    p.release();
    let lines = p.finish(); // reaped before the tracer notices
    assert_eq!(parent_writes(&lines), 4000);
    let status = wait_for_tracer(&mut tracer, Duration::from_secs(15), "target exited");
    assert!(status.success());
    let snapshots = reader.join().unwrap();
    assert!(snapshots.contains("parent:"), "no snapshot: {snapshots}");
}
