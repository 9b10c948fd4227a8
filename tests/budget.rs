//! Budget mode against the truth (root, real probes, real load generators on loopback): the
//! estimates of `top --once --json --overhead 1` lie within their stated error bounds, and the
//! bounds say something (narrower than the estimate), whether an HTTP server's clients wait for
//! each answer (closed loop, `ab -c 4`), arrive at a fixed rate (open loop, `hey -q`), or a loop
//! does nothing but write; live rates of maps, grouped maps and keys match the true request
//! rate; `run --mode budget` reports estimates within bounds and exits with the target's status.
//! tests/go/kvserver counts its own writes per key exactly (without maps); tests/go/workload
//! counts its writes. These tests run one at a time (they time a target's CPU).
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::probes::holds_target_link;
use common::{ChildGuard, GoProcess, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "budget tests need root (CAP_BPF + CAP_PERFMON)"
    );
}

fn require_tool(tool: &str, package: &str) {
    let found = Command::new("which")
        .arg(tool)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{tool} is not installed (apt-get install {package})");
}

fn kvserver() -> PathBuf {
    common::build("kvserver", &common::newest_toolchain(), Variant::Plain)
}

fn workload() -> PathBuf {
    common::build("workload", &common::newest_toolchain(), Variant::Plain)
}

/// A tracer and what it prints.
struct Tracer {
    child: ChildGuard,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// `top -p PID --json --overhead 1` and `extra`, attached (its probes on the target) when
/// returned.
fn attach_top(pid: u32, extra: &[&str]) -> Tracer {
    let pid = pid.to_string();
    let mut args = vec![
        "top",
        "-p",
        &pid,
        "--json",
        "--overhead",
        "1",
        "--duration",
        "300",
    ];
    args.extend_from_slice(extra);
    let mut child = ChildGuard(
        Command::new(TRACER)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = common::read_all(child.stdout.take().unwrap());
    let stderr = common::read_all(child.stderr.take().unwrap());
    wait_attached(child.id());
    Tracer {
        child,
        stdout,
        stderr,
    }
}

/// Waits until process `tracer` holds a BPF link on its target (not its calibration's).
fn wait_attached(tracer: u32) {
    let t0 = Instant::now();
    while !holds_target_link(tracer) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the tracer never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the tracer with SIGINT; its JSON snapshots (with `--once`, the one report).
fn stop(mut t: Tracer) -> Vec<Value> {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
    unsafe { libc::kill(t.child.id() as libc::pid_t, libc::SIGINT) };
    let status = common::wait_or_kill(&mut t.child, Duration::from_secs(60), "the tracer");
    let (out, err) = (t.stdout.join().unwrap(), t.stderr.join().unwrap());
    assert!(status.success(), "tracer: {status}\n{err}");
    common::json_lines(&out)
}

/// The map written from `function`.
fn map_from<'a>(report: &'a Value, function: &str) -> &'a Value {
    report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["sites"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["function"] == function)
        })
        .unwrap_or_else(|| panic!("no map written from {function} in {report}"))
}

fn key<'a>(map: &'a Value, key: &str) -> &'a Value {
    map["top_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == key)
        .unwrap_or_else(|| panic!("no key {key} in {map}"))
}

/// Asserts that `estimate ± bound` holds `truth`, and that the bound says something: narrower
/// than the truth itself (a bound of ±100 % would cover any estimate of a count).
fn assert_within(what: &str, estimate: &Value, bound: &Value, truth: u64, report: &Value) {
    let (e, b, t) = (
        estimate.as_f64().unwrap(),
        bound.as_f64().unwrap(),
        truth as f64,
    );
    eprintln!(
        "{what}: estimate {e} ± {b} for {t} (error {:+.1} %, bound {:.1} %)",
        100.0 * (e - t) / t,
        100.0 * b / t
    );
    assert!(
        (e - t).abs() <= b,
        "{what}: estimate {e} ± {b}, truth {t} (coverage {})",
        report["coverage"]
    );
    assert!(
        b < t,
        "{what}: a bound of {b} for {t} says nothing (estimate {e})"
    );
}

/// A kvserver with a tracer attached, loaded by `load` (given its URL), then stopped: the
/// tracer's report and the server's done line.
fn traced_server(load: impl FnOnce(&str)) -> (Value, Value) {
    let mut server = GoProcess::spawn(&kvserver(), &[]);
    let ready = server
        .next_line(common::RUN_TIMEOUT)
        .expect("kvserver's ready line");
    let tracer = attach_top(server.pid(), &["--once", "--top", "5"]);
    load(&format!("http://{}/", ready["addr"].as_str().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    let report = stop(tracer).pop().expect("a JSON report");
    server.signal(libc::SIGTERM);
    let done = server.finish().pop().expect("kvserver's done line");
    assert_eq!(report["mode"], "budget");
    (report, done)
}

/// The estimates of one kvserver run: the key written once per request ("GET /"), both maps'
/// writes, and the hottest session key, each within its bound.
fn check_server(report: &Value, done: &Value) {
    let requests = done["requests"].as_u64().unwrap();
    let coverage = report["coverage"].as_f64().unwrap();
    assert!(
        coverage < 1.0,
        "a loaded server is sampled at a 1 % budget (coverage {coverage})"
    );
    // The server reads each request and writes each answer: the bytes its reads and writes
    // move count its progress, whatever the probes cost it.
    assert_eq!(report["estimated_by"], "io_bytes", "{report}");
    let counter = map_from(report, "main.countRequest");
    let k = key(counter, "GET /");
    assert_within(
        "GET /",
        &k["writes_estimated"],
        &k["error_bound"],
        requests,
        report,
    );
    for function in ["main.countRequest", "main.touch"] {
        let m = map_from(report, function);
        assert_within(
            function,
            &m["writes_estimated"],
            &m["error_bound"],
            requests,
            report,
        );
    }
    let hottest = &done["keys"][0];
    let k = key(
        map_from(report, "main.touch"),
        hottest["key"].as_str().unwrap(),
    );
    assert_within(
        "the hottest session key",
        &k["writes_estimated"],
        &k["error_bound"],
        hottest["writes"].as_u64().unwrap(),
        report,
    );
}

#[test]
fn closed_loop_estimates_are_within_their_bounds() {
    require_root();
    require_tool("ab", "apache2-utils");
    let _alone = common::alone();
    let (report, done) = traced_server(|url| {
        let out = common::run_command(
            Command::new("ab").args(["-q", "-c", "4", "-n", "80000", url]),
            common::RUN_TIMEOUT,
        );
        assert!(out.status.success(), "ab: {}", out.stderr);
    });
    assert_eq!(done["requests"], 80000, "{done}");
    check_server(&report, &done);
}

#[test]
fn open_loop_estimates_are_within_their_bounds() {
    require_root();
    require_tool("hey", "hey");
    let _alone = common::alone();
    let (report, done) = traced_server(|url| {
        let out = common::run_command(
            Command::new("hey").args(["-q", "500", "-c", "4", "-z", "15s", url]),
            common::RUN_TIMEOUT,
        );
        assert!(out.status.success(), "hey: {}", out.stderr);
    });
    assert!(done["requests"].as_u64().unwrap() > 2000, "{done}");
    check_server(&report, &done);
}

#[test]
fn a_tight_loop_estimate_is_within_its_bound() {
    require_root();
    let _alone = common::alone();
    let target = GoProcess::start_waiting(&workload(), &["-writes", "100000000"]);
    let tracer = attach_top(target.pid(), &["--once", "--top", "3"]);
    target.release();
    let truth = common::parse_workload(&target.finish());
    let report = stop(tracer).pop().expect("a JSON report");
    // It neither sleeps nor calls the system: only its CPU time can count its progress.
    assert_eq!(report["estimated_by"], "natural_cpu", "{report}");
    let m = map_from(&report, "main.writeKey");
    // Probes take ~97 % of a window's CPU time here: the estimate rests on a small difference
    // of two large numbers, and its bound must say how small (wide, but not unbounded).
    let (e, b, t) = (
        m["writes_estimated"].as_f64().unwrap(),
        m["error_bound"].as_f64().unwrap(),
        truth.done.writes as f64,
    );
    assert!(
        (e - t).abs() <= b,
        "tight loop: estimate {e} ± {b}, truth {t} (coverage {})",
        report["coverage"]
    );
    assert!(
        b.is_finite() && b < 100.0 * t,
        "tight loop: bound {b} for {t}"
    );
}

/// The median of `xs`.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
fn live_rates_of_maps_groups_and_keys_match_the_request_rate() {
    require_root();
    require_tool("hey", "hey");
    let _alone = common::alone();
    let mut server = GoProcess::spawn(&kvserver(), &[]);
    let ready = server
        .next_line(common::RUN_TIMEOUT)
        .expect("kvserver's ready line");
    let tracer = attach_top(server.pid(), &["--top", "3", "--refresh", "1"]);
    let url = format!("http://{}/", ready["addr"].as_str().unwrap());
    let load_started = Instant::now();
    let out = common::run_command(
        Command::new("hey").args(["-q", "250", "-c", "4", "-z", "12s", &url]),
        common::RUN_TIMEOUT,
    );
    assert!(out.status.success(), "hey: {}", out.stderr);
    let load_s = load_started.elapsed().as_secs_f64();
    let snapshots = stop(tracer);
    server.signal(libc::SIGTERM);
    let done = server.finish().pop().expect("kvserver's done line");
    let rate = done["requests"].as_f64().unwrap() * 1e9 / done["elapsed_ns"].as_f64().unwrap();
    // Steady load: from 4 s after the load started (rates decay in over refreshes) to 2 s
    // before it ended.
    let steady: Vec<&Value> = snapshots
        .iter()
        .filter(|s| {
            let t =
                s["duration_s"].as_f64().unwrap() - (snapshots[0]["duration_s"].as_f64().unwrap());
            t > 4.0 && t < load_s - 2.0
        })
        .collect();
    assert!(
        steady.len() >= 4,
        "{} snapshots under steady load",
        steady.len()
    );
    // One write per request each: the counter map, its key, and a group of short-lived
    // net/http header maps (written once per request at the same site).
    let rates = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> {
        steady.iter().map(|s| f(s).expect("a rate")).collect()
    };
    let counter = rates(&|s| map_from(s, "main.countRequest")["writes_per_s"].as_f64());
    let key_rate =
        rates(&|s| key(map_from(s, "main.countRequest"), "GET /")["writes_per_s"].as_f64());
    let group = rates(&|s| {
        s["maps"]
            .as_array()?
            .iter()
            .find(|m| m["type"] == "http.Header" && m["instances"].as_u64() > Some(1))?
            ["writes_per_s"]
            .as_f64()
    });
    for (what, xs) in [("map", &counter), ("key", &key_rate), ("group", &group)] {
        assert!(xs.iter().all(|&x| x >= 0.0), "{what} rates {xs:?}");
        let m = median(xs.clone());
        assert!(
            (m - rate).abs() <= 0.25 * rate,
            "{what}: median rate {m:.0}/s over {xs:?}, true rate {rate:.0}/s"
        );
    }
}

#[test]
fn run_in_budget_mode_reports_bounds_and_exits_with_the_targets_status() {
    require_root();
    let _alone = common::alone();
    let dir = common::gotest_dir().join("budget-run");
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let bin = workload();
    let out = common::run_command(
        Command::new(TRACER).args([
            "run",
            "--mode",
            "budget",
            "--overhead",
            "1",
            "--top",
            "3",
            "--json",
            json.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
            "-rate",
            "20000",
            "-duration",
            "5",
            "-keys",
            "200",
        ]),
        common::RUN_TIMEOUT,
    );
    assert!(out.status.success(), "run --mode budget: {}", out.stderr);
    let truth = common::parse_workload(&common::json_lines(&out.stdout));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["mode"], "budget");
    assert!(
        report["coverage"].as_f64().unwrap() < 1.0,
        "{}",
        report["coverage"]
    );
    let m = map_from(&report, "main.writeKey");
    assert_within(
        "writes",
        &m["writes_estimated"],
        &m["error_bound"],
        truth.done.writes,
        &report,
    );
    let hottest = &truth.done.keys[0];
    let k = key(m, &hottest.key);
    assert_within(
        "the hottest key",
        &k["writes_estimated"],
        &k["error_bound"],
        hottest.writes,
        &report,
    );

    // A target killed by SIGKILL: the tracer reports and exits 128 + 9, as a shell would.
    let mut tracer = ChildGuard(
        Command::new(TRACER)
            .args(["run", "--mode", "budget", "--", bin.to_str().unwrap()])
            .args(["-wait", "-rate", "20000", "-duration", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(tracer.stdout.take().unwrap()));
    let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let pid = ready["pid"].as_i64().unwrap() as libc::pid_t;
    // `run` attached before it let the command start (which printed `ready`); whether the probes
    // are attached now is the duty cycle's choice (the runtime's start-up alone may have spent
    // what the budget allows an idle target).
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is the tracer's child's.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let status = common::wait_or_kill(&mut tracer, Duration::from_secs(60), "run --mode budget");
    assert_eq!(status.code(), Some(128 + 9), "run --mode budget: {status}");
}
