//! Bad input and failure cases: each gives one clear line on stderr and a non-zero exit, never a
//! panic (SPEC "Errors").
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// Runs the tracer; asserts failure with exactly one stderr line containing `expect`.
fn fails_with(args: &[&str], expect: &str) {
    fails_with_cmd(Command::new(TRACER).args(args), expect);
}

fn fails_with_cmd(cmd: &mut Command, expect: &str) {
    let stderr = one_error_line(cmd);
    assert!(stderr.contains(expect), "want {expect:?} in: {stderr}");
}

/// Runs `cmd` (watchdog: 60 s) and requires a failure that is not a crash (no signal, no panic)
/// with exactly one stderr line `ebpf-map-trace: error: ...`; returns that line.
fn one_error_line(cmd: &mut Command) -> String {
    let out = common::run_command(cmd, Duration::from_secs(60));
    let what = format!("{cmd:?}");
    common::assert_no_crash(out.status, &what);
    assert!(
        !out.status.success(),
        "expected failure for {what}, stderr: {}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: want one error line, got: {}",
        out.stderr
    );
    assert!(
        lines[0].starts_with("ebpf-map-trace: error: "),
        "{what}: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{}",
        out.stderr
    );
    lines[0].to_string()
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
    // A cut anywhere loses the build info or the function table at the end of the file: every
    // truncated binary is refused with one error line, never inspected as if it were whole.
    for cut in [64, 4096, good.len() / 3, good.len() / 2, good.len() - 4096] {
        let p = write(&format!("trunc-{cut}"), &good[..cut]);
        one_error_line(Command::new(TRACER).args(["inspect", &p]));
    }
    // Flip bytes throughout the pclntab-heavy middle: never a crash; either one error line, or
    // a complete JSON description.
    for step in [997usize, 4099, 65_537] {
        let mut bad = good.clone();
        for i in (good.len() / 4..good.len()).step_by(step) {
            bad[i] ^= 0x5a;
        }
        let p = write(&format!("flip-{step}"), &bad);
        let mut cmd = Command::new(TRACER);
        cmd.args(["inspect", &p, "--json"]);
        let out = common::run_command(&mut cmd, Duration::from_secs(60));
        common::assert_no_crash(out.status, &format!("flips every {step}"));
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("flips every {step}: not JSON ({e}): {}", out.stdout));
            assert!(v["go_version"].is_string(), "flips every {step}: {v}");
        } else {
            one_error_line(&mut cmd);
        }
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
    let out = common::run_command(
        Command::new(TRACER).args(["inspect", p, "--json"]),
        common::RUN_TIMEOUT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
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

/// Runs the tracer in a mount namespace of its own where `hide` (a directory of /sys) is covered
/// by an empty tmpfs: the kernel feature behind it looks absent to the tracer alone.
fn without_sys_dir(hide: &str, args: &[&str]) -> Command {
    assert!(
        Path::new("/usr/bin/unshare").exists(),
        "/usr/bin/unshare is missing (util-linux)"
    );
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args(["--mount", "--", "/bin/sh", "-c"])
        .arg(r#"mount -t tmpfs none "$1" && shift && exec "$@""#)
        .args(["sh", hide, TRACER])
        .args(args);
    cmd
}

#[test]
fn a_kernel_without_uprobes_or_btf_is_named() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (a mount namespace hides the kernel features)"
    );
    // The features are there (the tracing tests need them) ...
    assert!(Path::new("/sys/bus/event_source/devices/uprobe").exists());
    assert!(Path::new("/sys/kernel/btf/vmlinux").exists());
    let bin = common::build(
        "growth",
        &common::newest_toolchain(),
        common::Variant::Plain,
    );
    let b = bin.to_str().unwrap();
    let target = common::GoProcess::start_waiting(&bin, &["-n", "10"]);
    let pid = target.pid().to_string();
    // ... and hidden from the tracer, each is named, by every tracing command.
    for (hide, expect) in [
        (
            "/sys/bus/event_source/devices",
            "this kernel has no uprobes (CONFIG_UPROBE_EVENTS)",
        ),
        ("/sys/kernel/btf", "this kernel has no BTF"),
    ] {
        fails_with_cmd(&mut without_sys_dir(hide, &["run", "--", b]), expect);
        fails_with_cmd(&mut without_sys_dir(hide, &["run", "-p", &pid]), expect);
        for cmd in ["top", "trace", "serve"] {
            for target in [["-p", &pid], ["--binary", b]] {
                let mut args = vec![cmd, "--duration", "1"];
                args.extend(target);
                fails_with_cmd(&mut without_sys_dir(hide, &args), expect);
            }
        }
    }
    target.release();
    let done = target.finish();
    assert_eq!(done.last().unwrap()["n"], 10, "the target, untouched");
}

#[test]
fn bad_option_values_are_one_clean_line() {
    let bin = common::build(
        "growth",
        &common::newest_toolchain(),
        common::Variant::Plain,
    );
    let b = bin.to_str().unwrap();
    // Each error line must name the bad value and what it was given for, as whole words.
    for (args, expect) in [
        (
            vec!["run", "--key-bytes", "257", "--", b],
            &["257", "--key-bytes"][..],
        ),
        (
            vec!["run", "--key-bytes", "0", "--", b],
            &["0", "--key-bytes"],
        ),
        (
            vec!["run", "--duration", "soon", "--", b],
            &["soon", "--duration"],
        ),
        (vec!["top", "-p", "notapid"], &["notapid", "--pid"]),
        (
            vec!["run", "--", "/nonexistent/cmd"],
            &["command", "not", "found", "/nonexistent/cmd"],
        ),
        (
            vec!["top", "--binary", "/nonexistent/bin"],
            &["/nonexistent/bin"],
        ),
    ] {
        let line = one_error_line(Command::new(TRACER).args(&args));
        for token in expect {
            assert!(
                common::has_token(&line, token),
                "{args:?}: want the word {token:?} in {line:?}"
            );
        }
    }
}
