//! A test program that prints its own counts (`ops`) run under the tracer: `run` runs it under
//! `run` to its end; `live` runs `trace` or `top` on it to the end (`top_once`: its last snapshot); `Served` runs `serve` on it in
//! exact mode until `/hotkeys` has the program's final counts. Live views start the program held
//! and release it once the probes are in, so every operation it counts is traced. Needs the test
//! file to have `common`, `http`, `ops` and `tracer` as modules.
#![allow(dead_code)] // each test file uses part of it
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, GoProcess};
use crate::http;
use crate::ops::{self, Truth};
use crate::tracer::{Tracer, TRACER};

/// Tracing needs root (CAP_BPF + CAP_PERFMON).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

pub use crate::common::{alone, among_others};

/// A directory of the test's own under `CARGO_TARGET_TMPDIR`.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `run --top TOP --json JSON -- BIN PROG_ARGS...` with the tracer's environment plus `env`,
/// which must succeed with nothing lost and every key read: the program's counts, the JSON
/// report and the table (stderr).
pub fn run(
    label: &str,
    (bin, prog_args): (&Path, &[&str]),
    top: usize,
    json: &Path,
    env: &[(&str, &str)],
) -> (Vec<Truth>, Value, String) {
    let out = Command::new(TRACER)
        .envs(env.iter().copied())
        .args(["run", "--top", &top.to_string(), "--json"])
        .arg(json)
        .arg("--")
        .arg(bin)
        .args(prog_args)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{label}: tracer failed: {table}");
    let truth = ops::parse(&common::json_lines(&String::from_utf8_lossy(&out.stdout)));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["lost_events"], 0, "{label}: lost events");
    assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
    (truth, report, table)
}

/// Runs `bin prog_args...` under `CMD -p PID args...`; the program's counts and the tracer's
/// stdout once both ended.
pub fn live(bin: &Path, prog_args: &[&str], cmd: &str, args: &[&str]) -> (Vec<Truth>, String) {
    let target = GoProcess::start_waiting(bin, prog_args);
    let pid = target.pid().to_string();
    let mut all = vec![cmd, "-p", &pid];
    all.extend_from_slice(args);
    let mut t = Tracer::spawn(&all);
    t.wait_attached_to(target.pid());
    target.release();
    let truth = ops::parse(&target.finish());
    let (st, out, err) = t.finish_within(Duration::from_secs(120));
    assert!(st.success(), "{cmd}: {st}: {err}");
    (truth, out)
}

/// `top -p PID --once --json args...` on `bin prog_args...`: the program's counts and the last
/// JSON snapshot.
pub fn top_once(bin: &Path, prog_args: &[&str], args: &[&str]) -> (Vec<Truth>, Value) {
    let mut all = vec!["--once", "--json"];
    all.extend_from_slice(args);
    let (truth, out) = live(bin, prog_args, "top", &all);
    let report = common::json_lines(&out).pop().expect("a JSON snapshot");
    (truth, report)
}

/// `trace --mode exact --json` on `bin prog_args...`, every line checked against the program's
/// counts (`ops::check_trace`): the counts and the lines.
pub fn trace_exact(label: &str, bin: &Path, prog_args: &[&str]) -> (Vec<Truth>, Vec<Value>) {
    let (truth, out) = live(
        bin,
        prog_args,
        "trace",
        &["--mode", "exact", "--json", "--max-rate", "100000000"],
    );
    let lines = common::json_lines(&out);
    ops::check_trace(label, &truth, &lines);
    (truth, lines)
}

/// `top --once --mode exact --top TOP` on `bin prog_args...`: its last snapshot matches the
/// program's counts (`ops::check_exact`).
pub fn top_exact(label: &str, bin: &Path, prog_args: &[&str], top: usize) {
    let top_arg = top.to_string();
    let (truth, report) = top_once(
        bin,
        prog_args,
        &["--mode", "exact", "--duration", "120", "--top", &top_arg],
    );
    assert_eq!(report["mode"], "exact", "{label}");
    ops::check_exact(label, &truth, &report, top, ops::View::Live);
}

/// A program (run with `-linger`) under `serve --mode exact`, after it printed its counts and
/// `/hotkeys` caught up with them.
pub struct Served {
    pub target: GoProcess,
    pub serve: Tracer,
    pub listen: String,
    pub truth: Vec<Truth>,
    /// `/hotkeys` with every map of `truth` at its final counts.
    pub report: Value,
}

impl Served {
    /// Serves `bin prog_args...` (which must linger after printing its `scenarios` counts
    /// lines) with `--top top`.
    pub fn exact(bin: &Path, prog_args: &[&str], scenarios: usize, top: usize) -> Served {
        let mut target = GoProcess::start_waiting(bin, prog_args);
        let pid = target.pid();
        let listen = http::free_addr();
        let top = top.to_string();
        let pid_s = pid.to_string();
        let mut serve = Tracer::spawn(&[
            "serve",
            "-p",
            &pid_s,
            "--mode",
            "exact",
            "--listen",
            &listen,
            "--refresh",
            "0.5",
            "--top",
            &top,
        ]);
        serve.wait_attached_to(pid);
        target.release();
        let lines = common::poll(60, "the program's counts", || {
            while target.next_line(Duration::from_millis(100)).is_some() {}
            let seen = target.seen();
            (seen.iter().filter(|l| l["event"] == "counts").count() == scenarios)
                .then(|| seen.to_vec())
        });
        let truth = ops::parse(&lines);
        // The agent's report catches up with the program's last operations.
        let mut last = String::new();
        let t0 = std::time::Instant::now();
        let report = loop {
            if let Some((status, body)) = http::get(&listen, "/hotkeys", None) {
                let r: Value = serde_json::from_str(&body).unwrap_or_default();
                let counts = |m: &Value| {
                    let c = |f: &str| m[f].as_u64().unwrap_or(u64::MAX);
                    (c("writes"), c("deletes"), c("clears"))
                };
                let maps = r["maps"].as_array().cloned().unwrap_or_default();
                let missing: Vec<String> = truth
                    .iter()
                    .filter(|t| {
                        !maps.iter().any(|m| {
                            m["id"] == t.id.as_str() && counts(m) == (t.writes, t.deletes, t.clears)
                        })
                    })
                    .map(|t| {
                        let got = maps.iter().find(|m| m["id"] == t.id.as_str()).map(counts);
                        format!(
                            "{} {}: (writes, deletes, clears) {:?} in /hotkeys, {:?} made",
                            t.scenario,
                            t.id,
                            got,
                            (t.writes, t.deletes, t.clears)
                        )
                    })
                    .collect();
                if status == 200 && missing.is_empty() {
                    break r;
                }
                last = format!("status {status}; {}", missing.join("; "));
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out after 30 s waiting for the final counts in /hotkeys: {last}"
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        Served {
            target,
            serve,
            listen,
            truth,
            report,
        }
    }

    /// `/metrics` now.
    pub fn scrape(&self) -> String {
        http::get(&self.listen, "/metrics", None)
            .expect("/metrics answers")
            .1
    }

    /// Ends the program, then `serve`, which must exit cleanly.
    pub fn finish(self, label: &str) {
        self.target.signal(libc::SIGTERM);
        let _ = self.target.finish();
        let (st, _, err) = self.serve.terminate();
        assert!(st.success(), "{label}: {st}: {err}");
    }
}
