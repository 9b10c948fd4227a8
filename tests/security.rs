//! Security (issue 7), with real uprobes: `--redact` keeps key values out of every output of
//! run, top and trace (JSON, table, trace lines, growth triggers); the tracer works with only
//! CAP_BPF + CAP_PERFMON as an unprivileged user (dropped with `capsh`; `run -- CMD` and `top`
//! in budget mode, whose calibration probes the tracer itself), needs CAP_SYS_PTRACE
//! only for another user's process, and names what is missing otherwise.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Output;
use std::time::Duration;

use common::{has_token, key_hash, GoProcess, Variant, WorkloadRun};
use serde_json::Value;
use tracer::{Tracer, TRACER};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (to drop to CAP_BPF + CAP_PERFMON): run them as root"
    );
}

/// A directory any user may write (the unprivileged tracer writes its JSON report there).
fn open_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ebpf-map-trace-security-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    d
}

/// Every key of the `workload` program looks like this; a redacted output must not contain it.
const KEY_MARK: &str = "key:";

fn text(o: &Output) -> String {
    format!("{}{}", o.stdout, o.stderr)
}

/// Runs a tracer command to its end; the watchdog kills it (and what it started) and fails the
/// test if it still runs after [`common::RUN_TIMEOUT`].
fn output(cmd: &mut Command) -> Output {
    common::run_command(cmd, common::RUN_TIMEOUT)
}

/// One live command's output: its arguments, stdout and stderr.
struct LiveOutput {
    what: String,
    json: bool,
    stdout: String,
    stderr: String,
}

impl LiveOutput {
    /// Whether `key` is shown: as a whole word of the text, or as a `key` field of the JSON
    /// lines (trace's writes, top's top keys).
    fn shows(&self, key: &str) -> bool {
        if !self.json {
            return has_token(&self.stdout, key);
        }
        common::json_lines(&self.stdout).iter().any(|l| {
            l["key"] == key
                || l["maps"].as_array().is_some_and(|maps| {
                    maps.iter().any(|m| {
                        m["top_keys"]
                            .as_array()
                            .is_some_and(|ks| ks.iter().any(|k| k["key"] == key))
                    })
                })
        })
    }
}

/// The outputs of the live commands against one paced workload (attached before it writes),
/// and the workload's own counts.
fn live_outputs(redact: bool) -> (Vec<LiveOutput>, WorkloadRun) {
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let p = GoProcess::start_waiting(&bin, &["-rate", "20000", "-duration", "4", "-keys", "50"]);
    let pid = p.pid().to_string();
    let mut base: Vec<Vec<&str>> = vec![
        vec!["top", "--once", "--duration", "2", "--mode", "exact"],
        vec![
            "top",
            "--json",
            "--duration",
            "2",
            "--mode",
            "exact",
            "--refresh",
            "0.5",
        ],
        vec!["trace", "--duration", "2", "--mode", "exact", "--grows"],
        vec![
            "trace",
            "--json",
            "--duration",
            "2",
            "--mode",
            "exact",
            "--grows",
        ],
    ];
    for a in &mut base {
        a.extend(["-p", &pid]);
        if redact {
            a.push("--redact");
        }
    }
    let mut tracers: Vec<Tracer> = base.iter().map(|a| Tracer::spawn(a)).collect();
    for t in &mut tracers {
        t.wait_attached_to(p.pid());
    }
    p.release();
    let outs = tracers
        .into_iter()
        .zip(&base)
        .map(|(t, a)| {
            let (status, stdout, stderr) = t.finish_within(Duration::from_secs(30));
            assert!(
                status.success(),
                "{a:?} failed ({status}): {stdout}{stderr}"
            );
            LiveOutput {
                what: a.join(" "),
                json: a.contains(&"--json"),
                stdout,
                stderr,
            }
        })
        .collect();
    (outs, common::parse_workload(&p.finish()))
}

/// `run -- workload` (its stdout: the workload's own counts), the table (stderr) and the JSON.
fn run_outputs(redact: bool, dir: &Path) -> (WorkloadRun, String, String) {
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let json = dir.join(format!("run-{redact}.json"));
    let mut args = vec!["run", "--json", json.to_str().unwrap()];
    if redact {
        args.push("--redact");
    }
    let o = output(
        Command::new(TRACER)
            .args(&args)
            .arg("--")
            .arg(&bin)
            .args(["-writes", "20000", "-keys", "50"]),
    );
    assert!(o.status.success(), "run failed: {}", text(&o));
    // stdout is the workload's own (it prints its keys); the tracer's are stderr and the file.
    (
        common::parse_workload(&common::json_lines(&o.stdout)),
        o.stderr,
        std::fs::read_to_string(&json).unwrap(),
    )
}

/// The report's map of the workload (the one written from main.writeKey).
fn workload_map(report: &Value) -> &Value {
    report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sites"][0]["function"] == "main.writeKey")
        .unwrap_or_else(|| panic!("no main.writeKey map in {report}"))
}

#[test]
fn redact_keeps_key_values_out_of_every_output() {
    require_root();
    let dir = open_dir("redact");
    // Without --redact the keys are there: the searches below can fail.
    let (truth, table, json) = run_outputs(false, &dir);
    let hot = &truth.done.keys[0];
    assert!(
        has_token(&table, &hot.key),
        "run table: no {}:\n{table}",
        hot.key
    );
    let report: Value = serde_json::from_str(&json).unwrap();
    let m = workload_map(&report);
    assert_eq!(m["top_keys"][0]["key"], hot.key.as_str(), "run JSON");
    let grows = m["growth"].as_array().unwrap();
    assert!(
        grows
            .iter()
            .any(|g| g["key"].as_str().unwrap_or("").starts_with(KEY_MARK)),
        "growths name their triggering key: {grows:?}"
    );
    let (outs, truth) = live_outputs(false);
    let hot = &truth.done.keys[0].key;
    for o in &outs {
        assert!(
            o.shows(hot),
            "{}: hot key {hot} not shown:\n{}",
            o.what,
            o.stdout
        );
    }

    let (truth, table, json) = run_outputs(true, &dir);
    assert!(!table.contains(KEY_MARK), "run table leaks keys:\n{table}");
    assert!(!json.contains(KEY_MARK), "run JSON leaks keys:\n{json}");
    let report: Value = serde_json::from_str(&json).unwrap();
    // The redacted report still ranks the keys: the program's ten hottest, each under its hash,
    // with its exact count (run is exact; --top defaults to 10).
    let hashed: std::collections::HashMap<String, u64> = truth
        .done
        .keys
        .iter()
        .map(|k| (key_hash(&k.key), k.writes))
        .collect();
    let top = workload_map(&report)["top_keys"].as_array().unwrap();
    let counts: Vec<u64> = top.iter().map(|k| k["writes"].as_u64().unwrap()).collect();
    let want: Vec<u64> = truth.done.keys[..10].iter().map(|k| k.writes).collect();
    assert_eq!(counts, want, "redacted top-10 counts vs the program's own");
    for k in top {
        let key = k["key"].as_str().unwrap();
        assert_eq!(
            hashed.get(key).copied(),
            k["writes"].as_u64(),
            "redacted key {key}: not the hash of a key the program wrote that often"
        );
    }
    let hot = key_hash(&truth.done.keys[0].key);
    assert!(
        has_token(&table, &hot),
        "run table: no {hot} (hash of {}):\n{table}",
        truth.done.keys[0].key
    );
    let (outs, truth) = live_outputs(true);
    let hot = key_hash(&truth.done.keys[0].key);
    for o in &outs {
        assert!(
            !o.stdout.contains(KEY_MARK) && !o.stderr.contains(KEY_MARK),
            "{} leaks keys:\n{}{}",
            o.what,
            o.stdout,
            o.stderr
        );
        assert!(
            o.shows(&hot),
            "{}: the hot key's hash {hot} ({}) not shown:\n{}",
            o.what,
            truth.done.keys[0].key,
            o.stdout
        );
    }
}

/// `capsh` and its arguments to run the tracer with `args` as user nobody with only `caps`
/// (e.g. "cap_bpf,cap_perfmon").
fn nobody_with(caps: &str, args: &[&str]) -> (&'static Path, Vec<String>) {
    let capsh = ["/usr/sbin/capsh", "/sbin/capsh", "/usr/bin/capsh"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("capsh is missing: apt package libcap2-bin (./setup installs it)");
    let mut all: Vec<String> = vec!["--keep=1".into(), "--user=nobody".into()];
    if !caps.is_empty() {
        all.extend([format!("--inh={caps}"), format!("--addamb={caps}")]);
    }
    all.extend(["--", "-c", r#"exec "$0" "$@""#, TRACER].map(String::from));
    all.extend(args.iter().map(|a| a.to_string()));
    (capsh, all)
}

/// Runs the tracer with `args` as user nobody with only `caps`, to its end (watchdog as
/// [`output`]).
fn as_nobody_with(caps: &str, args: &[&str]) -> Output {
    let (capsh, all) = nobody_with(caps, args);
    output(Command::new(capsh).args(all))
}

/// A refusal: not a crash (no signal, no panic), one line naming `expect`.
fn one_error_line(o: &Output, expect: &str) {
    let stderr = &o.stderr;
    common::assert_no_crash(o.status, expect);
    assert!(!o.status.success(), "succeeded, want {expect:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line: {stderr}");
    assert!(
        lines[0].starts_with("ebpf-map-trace: error: ") && lines[0].contains(expect),
        "want {expect:?} in {stderr}"
    );
}

#[test]
fn cap_bpf_and_cap_perfmon_are_enough_and_missing_ones_are_named() {
    require_root();
    let dir = open_dir("caps");
    let bin = common::build("growth", &common::newest_toolchain(), Variant::Plain);
    let json = dir.join("report.json");
    let _ = std::fs::remove_file(&json);
    // Only CAP_BPF + CAP_PERFMON, as nobody: traces a command exactly.
    let o = as_nobody_with(
        "cap_bpf,cap_perfmon",
        &[
            "run",
            "--json",
            json.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
            "-n",
            "3000",
        ],
    );
    assert!(o.status.success(), "with CAP_BPF+CAP_PERFMON: {}", text(&o));
    let done: Value = serde_json::from_str(&o.stdout).expect("growth's done line");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let m = report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == done["id"])
        .expect("the program's map in the report");
    assert_eq!(
        m["writes"], done["n"],
        "exact writes with reduced privileges"
    );

    // Nothing: the error names the capabilities.
    let o = as_nobody_with("", &["run", "--", bin.to_str().unwrap(), "-n", "10"]);
    one_error_line(
        &o,
        "missing privileges: tracing needs root, or CAP_BPF and CAP_PERFMON",
    );
    let o = as_nobody_with("cap_bpf", &["run", "--", bin.to_str().unwrap(), "-n", "10"]);
    one_error_line(&o, "CAP_PERFMON");

    // Another user's (root's) process: CAP_SYS_PTRACE is needed as well, and named.
    let p = GoProcess::start_waiting(&bin, &["-n", "2000"]);
    let pid = p.pid().to_string();
    let o = as_nobody_with(
        "cap_bpf,cap_perfmon",
        &["run", "-p", &pid, "--duration", "0.5"],
    );
    one_error_line(&o, "needs root or CAP_SYS_PTRACE");
    let o = as_nobody_with(
        "cap_bpf,cap_perfmon,cap_sys_ptrace",
        &["run", "-p", &pid, "--duration", "0.5"],
    );
    assert!(o.status.success(), "with CAP_SYS_PTRACE too: {}", text(&o));
    p.release();
    p.finish();

    // A process of the same user: top in budget mode (its calibration attaches a probe to the
    // tracer itself) needs nothing more either.
    let workload = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let own = GoProcess::start_waiting(
        Path::new("/usr/bin/setpriv"),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            workload.to_str().unwrap(),
            "-rate",
            "5000",
            "-duration",
            "3",
        ],
    );
    let (capsh, args) = nobody_with(
        "cap_bpf,cap_perfmon",
        &[
            "top",
            "--once",
            "--duration",
            "2",
            "-p",
            &own.pid().to_string(),
        ],
    );
    let mut top = Tracer::spawn_program(capsh, &args);
    top.wait_attached_to(own.pid());
    own.release();
    let truth = common::parse_workload(&own.finish());
    let (status, stdout, stderr) = top.finish_within(Duration::from_secs(30));
    assert!(
        status.success(),
        "top as nobody ({status}): {stdout}{stderr}"
    );
    let hot = &truth.done.keys[0].key;
    assert!(
        has_token(&stdout, hot),
        "top as nobody does not show the program's hottest key {hot}: {stdout}{stderr}"
    );
}

#[test]
fn keys_are_bounded_by_key_bytes_everywhere() {
    require_root();
    let dir = open_dir("keybytes");
    let bin = common::build("lifecycle", &common::newest_toolchain(), Variant::Plain);
    for key_bytes in [256usize, 16] {
        let json = dir.join(format!("long-{key_bytes}.json"));
        let o = output(
            Command::new(TRACER)
                .args(["run", "--key-bytes", &key_bytes.to_string(), "--json"])
                .arg(&json)
                .arg("--")
                .arg(&bin)
                .args(["-mode", "long", "-n", "1000"]),
        );
        assert!(o.status.success(), "{}", text(&o));
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let m = report["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["sites"][0]["function"] == "main.writeKey")
            .expect("the program's map");
        assert_eq!(m["writes"], 1000);
        assert_eq!(m["distinct_keys"], 10, "keys differ in their first bytes");
        for k in m["top_keys"].as_array().unwrap() {
            let key = k["key"].as_str().unwrap();
            assert!(key.len() <= key_bytes, "{} bytes shown", key.len());
            assert_eq!(k["truncated"], true, "{key}");
            assert_eq!(k["writes"], 100);
        }
        let table = &o.stderr;
        let longest = table.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < key_bytes + 200, "a table line of {longest} bytes");
    }
    for cmd in ["run", "top", "trace"] {
        let o = output(Command::new(TRACER).args([cmd, "--key-bytes", "257", "-p", "1"]));
        one_error_line(&o, "invalid value '257' for '--key-bytes");
    }
}
