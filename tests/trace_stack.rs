//! `trace --stack` as text (root, real probes): inlined calls are frames of their own, as in
//! profiles, and the writing frame is printed once — on the write's own line, the stack lines
//! below it going on from its caller.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use common::{GoProcess, Variant};
use tracer::Tracer;

/// Stack lines are indented this far under their write's line.
const STACK_INDENT: &str = "                            ";

#[test]
fn trace_stack_text_shows_inlined_frames_and_the_writer_once() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "trace tests need root (CAP_BPF + CAP_PERFMON)"
    );
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let target = GoProcess::start_waiting(&bin, &["-rate", "2000", "-duration", "2"]);
    let pid = target.pid().to_string();
    let mut tracer = Tracer::spawn(&[
        "trace",
        "-p",
        &pid,
        "--mode",
        "exact",
        "--stack",
        "--map",
        "map[string]int",
        "--max-rate",
        "20",
        "--duration",
        "60",
    ]);
    tracer.wait_attached();
    target.release();
    let _ = target.finish();
    let (status, out, err) = tracer.terminate();
    assert!(status.success(), "trace: {status}: {err}");
    // The first write and the stack lines under it.
    let mut lines = out.lines().skip_while(|l| !l.contains("map[string]int"));
    let write = lines
        .next()
        .unwrap_or_else(|| panic!("no write line in:\n{out}"));
    let stack: Vec<&str> = lines
        .take_while(|l| l.starts_with(STACK_INDENT))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert!(write.contains(" main.writeKey "), "{write}");
    assert_eq!(
        stack.first().copied(),
        Some("main.main.func2"),
        "the stack goes on from the writer's caller, the inlined closure `write`: {stack:?}\n{out}"
    );
    assert!(
        !stack.contains(&"main.writeKey"),
        "the writing frame is printed once: {stack:?}"
    );
    assert!(
        stack.windows(2).any(|w| w == ["main.main", "runtime.main"]),
        "{stack:?}"
    );
}
