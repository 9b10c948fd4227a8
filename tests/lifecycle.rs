//! Life-cycle of a traced program (issue 7), with real uprobes: a target that execs another
//! program ends the trace with a report that says so (the tracer does not hang on the new
//! program); children it forks (os/exec of itself) are not traced; a target that exits ends
//! `top` as well as `run`. Every wait has a timeout.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{json_lines, GoProcess, Variant};
use serde_json::Value;
use tracer::{Tracer, TRACER};

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

/// The map's top keys are exactly the parent's ten keys `parent:0` … `parent:9`, each written
/// `writes / 10` times (the program writes key `parent:<i % 10>` for i = 0, 1, …), and no key of
/// the child.
fn assert_parent_keys(map: &Value, writes: u64, label: &str) {
    let mut keys: Vec<(String, u64)> = map["top_keys"]
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
    keys.sort();
    let want: Vec<(String, u64)> = (0..10)
        .map(|i| (format!("parent:{i}"), writes / 10))
        .collect();
    assert_eq!(keys, want, "{label}: top keys of main.writeKey's map");
}

/// Whether the tracer's stderr names the reason: `executed another program (PATH)` with a PATH
/// whose file name is `name` (`/bin/sleep` resolves to `/usr/bin/sleep` on merged-/usr systems).
fn says_exec(stderr: &str, name: &str) -> bool {
    stderr.lines().any(|l| {
        l.split_once("executed another program (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .is_some_and(|(path, _)| std::path::Path::new(path).file_name() == Some(name.as_ref()))
    })
}

#[test]
fn exec_ends_a_command_trace_with_a_report_that_says_why() {
    require_root();
    let json = report_at("exec-cmd.json");
    let t0 = Instant::now();
    // The watchdog: a tracer still waiting for the exec'd program after 30 s is killed and fails.
    let out = common::run_command(
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
    assert!(
        out.status.success(),
        "tracer {}: {}",
        out.status,
        out.stderr
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        says_exec(&out.stderr, "sleep"),
        "the tracer does not say why the trace ended: {}",
        out.stderr
    );
    let report = read_report(&json);
    assert!(report["ended"]
        .as_str()
        .is_some_and(|s| s.contains("executed another program")));
    let program = json_lines(&out.stdout);
    let writes = parent_writes(&program);
    let map = write_key_map(&report);
    assert_eq!(map["writes"].as_u64(), Some(writes));
    assert_parent_keys(map, writes, "run -- CMD");
}

#[test]
fn exec_ends_a_pid_trace_while_the_new_program_runs_on() {
    require_root();
    for cmd in [&["run"][..], &["top", "--json", "--mode", "exact"][..]] {
        let label = cmd.join(" ");
        let json = report_at("exec-pid.json");
        let mut p = GoProcess::start_waiting(
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
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut tracer = Tracer::spawn(&args);
        tracer.wait_attached_to(p.pid());
        p.release();
        // The program's own count, printed just before it exec'd sleep.
        let counts = p
            .next_line(common::RUN_TIMEOUT)
            .expect("the program's counts line");
        let writes = parent_writes(&[counts]);
        let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(15));
        assert!(status.success(), "{label}: tracer {status}: {stderr}");
        assert!(says_exec(&stderr, "sleep"), "{label}: {stderr}");
        // The target is now sleep, alive and untouched.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap();
        assert_eq!(comm.trim(), "sleep", "{label}");
        assert!(!p.has_exited(), "{label}: the exec'd program died");
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
        let map = write_key_map(&report);
        assert_eq!(map["writes"].as_u64(), Some(writes), "{label}");
        assert_parent_keys(map, writes, &label);
        drop(p); // kills and reaps the sleeping target
    }
}

#[test]
fn forked_children_are_not_traced() {
    require_root();
    let json = report_at("fork.json");
    let out = common::run_command(
        Command::new(TRACER)
            .args(["run", "--json", json.to_str().unwrap(), "--"])
            .arg(lifecycle())
            .args(["-mode", "fork", "-n", "1000"]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "tracer {}: {}",
        out.status,
        out.stderr
    );
    let program = json_lines(&out.stdout);
    let child = program
        .iter()
        .find(|l| l["who"] == "child")
        .expect("the child's counts line: the child did not run");
    assert_eq!(child["writes"], 1000, "the child's own count");
    let report = read_report(&json);
    let writes = parent_writes(&program);
    let map = write_key_map(&report);
    assert_eq!(map["writes"].as_u64(), Some(writes));
    // Only the parent's keys: a traced child would add `child:<i>` keys (and writes).
    assert_parent_keys(map, writes, "fork");
    assert_eq!(map["distinct_keys"], 10, "fork: distinct keys");
}

#[test]
fn target_exit_ends_top() {
    require_root();
    let p = GoProcess::start_waiting(&lifecycle(), &["-mode", "fork", "-n", "2000"]);
    let pid = p.pid();
    let mut tracer = Tracer::spawn(&["top", "--json", "--mode", "exact", "-p", &pid.to_string()]);
    tracer.wait_attached_to(pid);
    p.release();
    let lines = p.finish(); // reaped before the tracer notices
    let writes = parent_writes(&lines);
    assert_eq!(writes, 4000, "the program's own count");
    let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(15));
    assert!(status.success(), "tracer {status}: {stderr}");
    let last = json_lines(&stdout).pop().expect("a snapshot");
    let map = write_key_map(&last);
    assert_eq!(
        map["writes"].as_u64(),
        Some(writes),
        "last snapshot: {last}"
    );
    assert_parent_keys(map, writes, "top");
}
