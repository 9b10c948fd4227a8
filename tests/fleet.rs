//! `top --binary` and `trace --binary` with real probes: two processes of one executable (the
//! second started after the tracer), each writing a different hot key, both followed — merged
//! top reports name both pids with each one's exact hot key; trace lines come from both pids.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use std::path::PathBuf;
use std::time::Duration;

use common::tmux::{Ended, Session};
use common::{GoProcess, Variant, WorkloadRun};
use serde_json::Value;
use tracer::Tracer;

const MAP: &str = "map[string]int";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "fleet tests need root (CAP_BPF + CAP_PERFMON)"
    );
}

/// The `workload` program, copied to a path (and inode) of this test's own: `--binary` follows
/// every process of an executable, and the tests of this file run at the same time.
fn workload(test: &str) -> PathBuf {
    let built = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    common::private_copy(&built, &format!("fleet-{test}"))
}

/// Starts two `workload`s of one binary with different seeds, the second after `tracer_args`
/// (followed by `--binary BIN`) attached to the first; releases each once the tracer is on it.
/// Returns the tracer's stdout and stderr after SIGTERM, and each program's pid and own count.
fn two_processes(test: &str, tracer_args: &[&str]) -> (String, String, Vec<(u32, WorkloadRun)>) {
    require_root();
    let bin = workload(test);
    let args = |seed: &'static str| {
        [
            "-rate",
            "4000",
            "-duration",
            "2",
            "-keys",
            "50",
            "-seed",
            seed,
        ]
    };
    let first = GoProcess::start_waiting(&bin, &args("1"));
    let mut all: Vec<&str> = tracer_args.to_vec();
    all.extend(["--binary", bin.to_str().unwrap()]);
    let mut tracer = Tracer::spawn(&all);
    tracer.wait_attached_to(first.pid());
    first.release();
    let second = GoProcess::start_waiting(&bin, &args("2"));
    tracer.wait_attached_to(second.pid());
    second.release();
    let runs: Vec<(u32, WorkloadRun)> = [first, second]
        .into_iter()
        .map(|p| (p.pid(), common::parse_workload(&p.finish())))
        .collect();
    assert_ne!(
        runs[0].1.done.keys[0].key, runs[1].1.done.keys[0].key,
        "the two seeds must give different hot keys for this test to tell the processes apart"
    );
    // Both targets are reaped; the tracer retires them (drops their probes) within a rescan,
    // then ends on SIGTERM.
    let t = tracer.child.id();
    common::probes::wait_until(Duration::from_secs(20), "the tracer retires both", || {
        runs.iter().all(|(pid, _)| !tracer::holds_link_on(t, *pid))
    });
    let (status, out, err) = tracer.terminate();
    assert!(status.success(), "tracer failed ({status}): {err}");
    (out, err, runs)
}

#[test]
fn top_binary_json_merges_every_process_with_its_own_hot_key() {
    let (out, err, runs) = two_processes(
        "top",
        &["top", "--json", "--mode", "exact", "--refresh", "0.3"],
    );
    let reports: Vec<Value> = common::json_lines(&out);
    assert!(!reports.is_empty(), "top printed no report; stderr: {err}");
    assert!(
        reports
            .iter()
            .any(|r| r["pids"].as_array().is_some_and(|p| p.len() == 2)),
        "no merged report listed both processes; stderr: {err}"
    );
    for (pid, run) in &runs {
        let want = &run.done.keys[0];
        // The last report that still had this process's map (maps come by writes, so its own
        // before encoding/json's small one of the same type): its final counts.
        let map = reports
            .iter()
            .rev()
            .find_map(|r| {
                r["maps"]
                    .as_array()?
                    .iter()
                    .find(|m| m["pid"] == *pid && m["type"] == MAP)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no {MAP} of process {pid} in any report; stderr: {err}"));
        let keys = map["top_keys"].as_array().expect("top_keys");
        let hottest = keys
            .iter()
            .max_by_key(|k| k["writes"].as_u64().unwrap_or(0))
            .expect("a top key");
        assert_eq!(
            (hottest["key"].as_str(), hottest["writes"].as_u64()),
            (Some(want.key.as_str()), Some(want.writes)),
            "process {pid}: hottest key and its writes (program's own count)"
        );
    }
}

#[test]
fn trace_binary_json_streams_writes_of_every_process() {
    let (out, err, runs) = two_processes(
        "trace",
        &["trace", "--json", "--mode", "exact", "--max-rate", "100000"],
    );
    let lines = common::json_lines(&out);
    for (pid, run) in &runs {
        let writes: Vec<&Value> = lines
            .iter()
            // encoding/json writes a map[string]int of its own when the program prints its count.
            .filter(|l| {
                l["event"] == "write"
                    && l["pid"] == *pid
                    && l["map"] == MAP
                    && l["function"] == "main.writeKey"
            })
            .collect();
        // Exact mode, attached before the program wrote, nothing over --max-rate: every write.
        assert_eq!(
            writes.len() as u64,
            run.done.writes,
            "process {pid}: write lines vs the program's own count; stderr: {err}"
        );
        let hot = &run.done.keys[0];
        let hot_lines = writes
            .iter()
            .filter(|l| l["key"] == hot.key.as_str())
            .count() as u64;
        assert_eq!(
            hot_lines, hot.writes,
            "process {pid}: lines of its hot key {}",
            hot.key
        );
    }
    assert_eq!(
        common::writes_not_shown(&err),
        0,
        "the merged stream stayed under --max-rate: {err}"
    );
}

#[test]
fn binary_without_a_running_process_is_one_clear_error() {
    for cmd in ["top", "trace"] {
        let out = common::run_command(
            std::process::Command::new(tracer::TRACER).args([
                cmd,
                "--binary",
                "/nonexistent/app",
                "--json",
            ]),
            common::RUN_TIMEOUT,
        );
        let err = &out.stderr;
        assert!(!out.status.success(), "{cmd}: exit status {}", out.status);
        assert_eq!(
            err.trim(),
            "ebpf-map-trace: error: no running process of /nonexistent/app",
            "{cmd}"
        );
    }
}

#[test]
fn top_binary_terminal_ui_lists_maps_of_both_processes() {
    require_root();
    let bin = workload("ui");
    let args = ["-rate", "4000", "-duration", "10", "-keys", "50"];
    let first = GoProcess::spawn(&bin, &args);
    let second = GoProcess::spawn(&bin, &args);
    // The guard: however this test ends, the session and the tracer in it end with it.
    let ui = Session::start(
        &format!("emt-fleet-{}", std::process::id()),
        &format!(
            "{} top --binary {} --mode exact --refresh 0.3",
            tracer::TRACER,
            bin.display()
        ),
        140,
        40,
    );
    // A map row of a process: its pid and the map type as whole words on one line.
    let row_of = |screen: &str, pid: u32| -> Option<String> {
        screen
            .lines()
            .find(|l| common::has_token(l, &pid.to_string()) && common::has_token(l, MAP))
            .map(String::from)
    };
    ui.wait_screen("a map row of each process", Duration::from_secs(20), |s| {
        row_of(s, first.pid()).is_some() && row_of(s, second.pid()).is_some()
    });
    ui.send_keys("q");
    assert_eq!(
        ui.wait_ended("quit on q", Duration::from_secs(10)),
        Ended::Code(0),
        "the UI's exit on q"
    );
    drop((first, second));
}
