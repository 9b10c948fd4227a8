//! Bad input and failure cases: each gives one clear line on stderr and a non-zero exit, never a
//! panic (SPEC "Errors").
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// Runs the tracer; asserts failure with exactly one stderr line containing `expect`.
fn fails_with(args: &[&str], expect: &str) {
    fails_with_cmd(Command::new(TRACER).args(args), expect);
}

fn fails_with_cmd(cmd: &mut Command, expect: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure for {cmd:?}, stderr: {stderr}"
    );
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {stderr}");
    assert!(lines[0].starts_with("ebpf-map-trace: error: "), "{stderr}");
    assert!(lines[0].contains(expect), "want {expect:?} in: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_errors");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn write(name: &str, bytes: &[u8]) -> String {
    let p = scratch(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn not_elf() {
    let p = write("text.txt", b"hello, I am not a program\n");
    fails_with(&["inspect", &p], "not an ELF file");
}

#[test]
fn not_go() {
    fails_with(&["inspect", "/bin/true"], "not a Go binary");
}

#[test]
fn missing_file_and_missing_pid() {
    fails_with(
        &["inspect", "/nonexistent/binary"],
        "cannot read /nonexistent/binary",
    );
    fails_with(
        &["inspect", "-p", "999999999"],
        "no such process: 999999999",
    );
    fails_with(&["run", "-p", "999999999"], "no such process: 999999999");
}

#[test]
fn truncated_and_corrupted_go_binaries() {
    let good = std::fs::read(common::build(
        "keys",
        &common::newest_toolchain(),
        common::Variant::Stripped,
    ))
    .unwrap();
    for cut in [64, 4096, good.len() / 3, good.len() / 2, good.len() - 4096] {
        let p = write(&format!("trunc-{cut}"), &good[..cut]);
        let out = Command::new(TRACER).args(["inspect", &p]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "panic at cut {cut}: {stderr}");
        if !out.status.success() {
            assert_eq!(stderr.lines().count(), 1, "cut {cut}: {stderr}");
        }
    }
    // Flip bytes throughout the pclntab-heavy middle: must never panic.
    for step in [997usize, 4099, 65_537] {
        let mut bad = good.clone();
        for i in (good.len() / 4..good.len()).step_by(step) {
            bad[i] ^= 0x5a;
        }
        let p = write(&format!("flip-{step}"), &bad);
        let out = Command::new(TRACER)
            .args(["inspect", &p, "--json"])
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(101),
            "panic with flips every {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn go_older_than_1_17_is_refused() {
    // Rewrite the build info's version string of a real binary to an old release of equal length.
    let tc = common::toolchain("1.21.13");
    let mut data = std::fs::read(common::build("growth", &tc, common::Variant::Plain)).unwrap();
    let places: Vec<usize> = data
        .windows(9)
        .enumerate()
        .filter(|(_, w)| *w == b"go1.21.13")
        .map(|(i, _)| i)
        .collect();
    assert!(!places.is_empty(), "version string in build info");
    for at in places {
        data[at..at + 9].copy_from_slice(b"go1.16.15");
    }
    let p = write("go116", &data);
    fails_with(&["inspect", &p], "too old: Go 1.17 or newer is required");
}

#[test]
fn arm64_is_inspected_but_not_traced() {
    let tc = common::newest_toolchain();
    let out_path = scratch("arm64-prog");
    let src = common::manifest_dir().join("tests/go/growth");
    let st = Command::new(&tc.go)
        .args(["build", "-o"])
        .arg(&out_path)
        .arg(".")
        .current_dir(&src)
        .env("GOARCH", "arm64")
        .env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", common::gotest_dir().join("gocache-arm64"))
        .status()
        .unwrap();
    assert!(st.success(), "cross-building for arm64 failed");
    let p = out_path.to_str().unwrap();
    let out = Command::new(TRACER)
        .args(["inspect", p, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["arch"], "arm64");
    assert!(v["functions"].as_u64().unwrap() > 1000);
    assert!(v["problems"]
        .to_string()
        .contains("only x86-64 can be traced"));
    fails_with(&["run", "--", p], "unsupported architecture arm64");
}

#[test]
fn missing_privileges_are_named() {
    let bin = common::build(
        "growth",
        &common::newest_toolchain(),
        common::Variant::Plain,
    );
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        TRACER,
        "run",
        "--",
    ])
    .arg(&bin)
    .args(["-n", "10"]);
    fails_with_cmd(
        &mut cmd,
        "missing privileges: tracing needs root, or CAP_BPF and CAP_PERFMON",
    );
}

#[test]
fn run_without_target_explains_usage() {
    fails_with(&["run"], "nothing to trace");
}

#[test]
fn binary_without_map_functions_is_refused_for_tracing() {
    // Rename the runtime's map-assign functions in the function table: nothing left to probe.
    let mut data = std::fs::read(common::build(
        "growth",
        &common::newest_toolchain(),
        common::Variant::Stripped,
    ))
    .unwrap();
    let needle = b"runtime.mapassign";
    let places: Vec<usize> = data
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!places.is_empty());
    for at in places {
        data[at + 8..at + 17].copy_from_slice(b"mapXssign");
    }
    let p = write("no-mapassign", &data);
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fails_with(&["run", "--", &p], "no map-assign function found");
}

#[test]
fn a_process_that_has_exited_is_named_as_such() {
    // A zombie: it has exited, its parent (this test) has not reaped it yet.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let t0 = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z')
        {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "`true` did not exit");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let p = pid.to_string();
    for cmd in ["run", "top", "trace"] {
        fails_with(&[cmd, "-p", &p], &format!("process exited: {pid}"));
    }
    fails_with(&["inspect", "-p", &p], &format!("process exited: {pid}"));
    child.wait().unwrap();
}

#[test]
fn kernel_features_cannot_be_removed_here() {
    // "kernel without uprobes or BTF" cannot be produced on this machine (the features are
    // built in); the preflight checks name them. This asserts the machine really has both, so
    // that the other tracing tests run against them.
    assert!(
        Path::new("/sys/bus/event_source/devices/uprobe").exists(),
        "this kernel has no uprobes: tracing tests cannot run"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "this kernel has no BTF: tracing tests cannot run"
    );
}

#[test]
fn bad_option_values_are_one_clean_line() {
    let bin = common::build(
        "growth",
        &common::newest_toolchain(),
        common::Variant::Plain,
    );
    let b = bin.to_str().unwrap();
    for (args, expect) in [
        (vec!["run", "--key-bytes", "257", "--", b], "257"),
        (vec!["run", "--key-bytes", "0", "--", b], "0"),
        (vec!["run", "--duration", "soon", "--", b], "soon"),
        (vec!["top", "-p", "notapid"], "notapid"),
        (
            vec!["run", "--", "/nonexistent/cmd"],
            "command not found: /nonexistent/cmd",
        ),
        (
            vec!["top", "--binary", "/nonexistent/bin"],
            "/nonexistent/bin",
        ),
    ] {
        let out = Command::new(TRACER).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?}: want {expect:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
