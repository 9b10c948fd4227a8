//! A reader that goes away (`inspect … | head -1`) ends the tool quietly: no panic message, no
//! "Broken pipe" error line, and the process ends by SIGPIPE as other command-line tools do.
mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let tracer = env!("CARGO_BIN_EXE_ebpf-map-trace");
    // A Go binary to inspect: a Go toolchain's own `go` command (./setup installs them).
    let go = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/go"))
        .expect(".cache/go is missing: run ./setup")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("lib/python3.11/site-packages/go/bin/go"))
        .find(|p| p.exists())
        .expect("no Go toolchain under .cache/go: run ./setup");
    // stdout is a pipe whose reader is already gone: the tool's first write fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(tracer)
        .arg("inspect")
        .arg(&go)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ebpf-map-trace");
    let stderr = common::read_all(child.stderr.take().expect("stderr"));
    let status = common::wait_or_kill(&mut child, Duration::from_secs(60), "inspect");
    let stderr = stderr.join().expect("stderr reader");
    assert_eq!(
        stderr, "",
        "a closed stdout must end the tool without a word"
    );
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "ended by {status:?}, not by SIGPIPE"
    );
}
