//! Security (issue 7), with real uprobes: `--redact` keeps key values out of every output of
//! run, top and trace (JSON, table, trace lines, growth triggers); the tracer works with only
//! CAP_BPF + CAP_PERFMON as an unprivileged user (dropped with `capsh`; `run -- CMD` and `top`
//! in budget mode, whose calibration probes the tracer itself), needs CAP_SYS_PTRACE
//! only for another user's process, and names what is missing otherwise.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{GoProcess, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

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
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The outputs of the live commands (tracer's own stdout + stderr) against one paced workload.
fn live_outputs(redact: bool) -> Vec<(String, String)> {
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
    let children: Vec<_> = base
        .iter()
        .map(|a| {
            Command::new(TRACER)
                .args(a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700)); // let them attach
    p.release();
    let outs: Vec<(String, String)> = children
        .into_iter()
        .zip(&base)
        .map(|(c, a)| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{a:?} failed: {}", text(&o));
            (a.join(" "), text(&o))
        })
        .collect();
    p.finish();
    outs
}

fn run_outputs(redact: bool, dir: &Path) -> (String, String) {
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let json = dir.join(format!("run-{redact}.json"));
    let mut args = vec!["run", "--json", json.to_str().unwrap()];
    if redact {
        args.push("--redact");
    }
    let o = Command::new(TRACER)
        .args(&args)
        .arg("--")
        .arg(&bin)
        .args(["-writes", "20000", "-keys", "50"])
        .output()
        .unwrap();
    assert!(o.status.success(), "run failed: {}", text(&o));
    // stdout is the workload's own (it prints its keys); the tracer's are stderr and the file.
    (
        String::from_utf8_lossy(&o.stderr).into_owned(),
        std::fs::read_to_string(&json).unwrap(),
    )
}

#[test]
fn redact_keeps_key_values_out_of_every_output() {
    require_root();
    let dir = open_dir("redact");
    // Without --redact the keys are there: the search below can fail.
    let (table, json) = run_outputs(false, &dir);
    assert!(table.contains(KEY_MARK) && json.contains(KEY_MARK));
    let report: Value = serde_json::from_str(&json).unwrap();
    let grows = report["maps"][0]["growth"].as_array().unwrap();
    assert!(
        grows
            .iter()
            .any(|g| g["key"].as_str().unwrap_or("").starts_with(KEY_MARK)),
        "growths name their triggering key: {grows:?}"
    );
    for (what, out) in live_outputs(false) {
        assert!(
            out.contains(KEY_MARK),
            "{what}: no key shown without --redact"
        );
    }

    let (table, json) = run_outputs(true, &dir);
    assert!(!table.contains(KEY_MARK), "run table leaks keys:\n{table}");
    assert!(!json.contains(KEY_MARK), "run JSON leaks keys:\n{json}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let top = report["maps"][0]["top_keys"].as_array().unwrap();
    assert!(top.len() >= 10, "redacted report still ranks keys");
    assert!(top
        .iter()
        .all(|k| k["key"].as_str().unwrap().starts_with('#')));
    for (what, out) in live_outputs(true) {
        assert!(!out.contains(KEY_MARK), "{what} leaks keys:\n{out}");
        assert!(out.contains("#"), "{what}: no hashed key shown:\n{out}");
    }
}

/// `capsh` running `args` as user nobody with only `caps` (e.g. "cap_bpf,cap_perfmon").
fn as_nobody_with(caps: &str, args: &[&str]) -> Output {
    let capsh = ["/usr/sbin/capsh", "/sbin/capsh", "/usr/bin/capsh"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("capsh is missing: apt package libcap2-bin (./setup installs it)");
    let mut cmd = Command::new(capsh);
    cmd.arg("--keep=1").arg("--user=nobody");
    if !caps.is_empty() {
        cmd.arg(format!("--inh={caps}"))
            .arg(format!("--addamb={caps}"));
    }
    cmd.args(["--", "-c", r#"exec "$0" "$@""#, TRACER])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn one_error_line(o: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
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
    let done: Value = serde_json::from_slice(&o.stdout).expect("growth's done line");
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
    let mut own = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&workload)
        .args(["-rate", "5000", "-duration", "6"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let o = as_nobody_with(
        "cap_bpf,cap_perfmon",
        &[
            "top",
            "--once",
            "--duration",
            "2",
            "-p",
            &own.id().to_string(),
        ],
    );
    let _ = own.kill();
    let _ = own.wait();
    assert!(o.status.success(), "top as nobody: {}", text(&o));
    assert!(
        text(&o).contains(KEY_MARK),
        "top as nobody showed no keys: {}",
        text(&o)
    );
}

#[test]
fn keys_are_bounded_by_key_bytes_everywhere() {
    require_root();
    let dir = open_dir("keybytes");
    let bin = common::build("lifecycle", &common::newest_toolchain(), Variant::Plain);
    for key_bytes in [256usize, 16] {
        let json = dir.join(format!("long-{key_bytes}.json"));
        let o = Command::new(TRACER)
            .args(["run", "--key-bytes", &key_bytes.to_string(), "--json"])
            .arg(&json)
            .arg("--")
            .arg(&bin)
            .args(["-mode", "long", "-n", "1000"])
            .output()
            .unwrap();
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
        let table = String::from_utf8_lossy(&o.stderr);
        let longest = table.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < key_bytes + 200, "a table line of {longest} bytes");
    }
    for cmd in ["run", "top", "trace"] {
        let o = Command::new(TRACER)
            .args([cmd, "--key-bytes", "257", "-p", "1"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{cmd} accepts --key-bytes 257");
        assert!(text(&o).contains("257"), "{cmd}: {}", text(&o));
    }
}
