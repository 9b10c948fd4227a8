//! Live views (root, real probes): budget-mode estimates within their stated error bound, `top
//! --once` / `--json` name the hot key, the terminal UI in tmux shows it and quits on `q`,
//! `trace --stack` shows the writing function chain, and memory stays bounded with 5 million
//! distinct keys.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use std::time::Duration;

use common::tmux::{Ended, Session};
use common::{GoProcess, Variant};
use ebpf_map_trace::probe::load;
use serde_json::Value;
use tracer::Tracer;

use tracer::TRACER;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "live tests need root (CAP_BPF + CAP_PERFMON)"
    );
}

fn workload() -> std::path::PathBuf {
    common::build("workload", &common::newest_toolchain(), Variant::Plain)
}

/// Serializes the estimate test with the 5-million-key test: that one loads both cores for
/// seconds, and a target starved of CPU writes in catch-up bursts that windows of 25 ms sample
/// unevenly.
fn timing_sensitive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn the_map<'a>(report: &'a Value, type_name: &str) -> &'a Value {
    report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == type_name)
        .unwrap_or_else(|| panic!("no {type_name} in {report}"))
}

#[test]
fn budget_estimates_are_within_their_error_bound() {
    require_root();
    let _alone = timing_sensitive();
    let target = GoProcess::start_waiting(
        &workload(),
        &["-rate", "20000", "-duration", "6", "-keys", "200"],
    );
    let pid = target.pid().to_string();
    let mut tracer = Tracer::spawn(&[
        "top",
        "-p",
        &pid,
        "--once",
        "--json",
        "--duration",
        "60",
        "--overhead",
        "1",
        "--top",
        "5",
    ]);
    tracer.wait_attached();
    target.release();
    let truth = common::parse_workload(&target.finish());
    let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(90));
    assert!(status.success(), "top {status}: {stderr}");
    let report = json_lines(stdout.as_bytes())
        .pop()
        .expect("a JSON snapshot");
    assert_eq!(report["mode"], "budget");
    let coverage = report["coverage"].as_f64().unwrap();
    assert!(
        coverage > 0.0 && coverage < 1.0,
        "20k writes/s must be sampled at a 1 % budget, coverage {coverage}"
    );
    let m = the_map(&report, "map[string]int");
    let keys = m["top_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 5);
    for k in keys {
        let key = k["key"].as_str().unwrap();
        let est = k["writes_estimated"].as_f64().unwrap();
        let bound = k["error_bound"].as_f64().unwrap();
        let exact = truth
            .done
            .keys
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.writes as f64)
            .unwrap_or_else(|| panic!("{key} is not among the program's top keys"));
        assert!(
            (est - exact).abs() <= bound,
            "{key}: estimate {est} ± {bound}, truth {exact} (coverage {coverage})"
        );
        assert!(bound > 0.0, "a sampled estimate must have a bound");
    }
}

#[test]
fn top_once_and_json_show_the_hot_key() {
    require_root();
    for json in [false, true] {
        let target = GoProcess::start_waiting(
            &workload(),
            &["-rate", "20000", "-duration", "4", "-hot-after", "0"],
        );
        let pid = target.pid().to_string();
        let mut args = vec!["top", "-p", &pid, "--once", "--duration", "60"];
        if json {
            args.push("--json");
        }
        let mut tracer = Tracer::spawn(&args);
        tracer.wait_attached();
        target.release();
        let truth = common::parse_workload(&target.finish());
        assert_eq!(
            truth.done.keys[0].key, "hot:1",
            "the program's own hottest key"
        );
        let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(90));
        assert!(status.success(), "top {status}: {stderr}");
        if json {
            let report = json_lines(stdout.as_bytes()).pop().expect("a snapshot");
            let hot = &the_map(&report, "map[string]int")["top_keys"][0];
            assert_eq!(hot["key"], "hot:1");
        } else {
            let text = &stdout;
            let first = text
                .lines()
                .find(|l| l.trim_start().starts_with("#1 "))
                .unwrap_or_else(|| panic!("no ranked key in:\n{text}"));
            assert_eq!(common::tokens(first).last(), Some("hot:1"), "{first}");
            assert!(common::has_token(text, "coverage"), "{text}");
        }
    }
}

#[test]
fn terminal_ui_in_tmux_shows_the_hot_key_and_quits_on_q() {
    require_root();
    let target = GoProcess::spawn(
        &workload(),
        &["-rate", "20000", "-duration", "30", "-hot-after", "0"],
    );
    // The guard: however this test ends, the session and the tracer in it end with it.
    let ui = Session::start(
        &format!("emt-live-{}", std::process::id()),
        &format!("{TRACER} top -p {} --refresh 0.5", target.pid()),
        140,
        40,
    );
    let screen = ui.wait_screen("the hot key", Duration::from_secs(30), |s| {
        common::has_token(s, "hot:1") && common::has_token(s, "budget")
    });
    let hot_line = screen
        .lines()
        .find(|l| common::has_token(l, "hot:1"))
        .unwrap();
    assert!(hot_line.contains('%'), "{hot_line}");
    ui.send_keys("q");
    assert_eq!(
        ui.wait_ended("quit on q", Duration::from_secs(10)),
        Ended::Code(0),
        "the UI's exit on q"
    );
    drop(target);
}

#[test]
fn trace_stack_shows_the_writing_function_chain() {
    require_root();
    let target = GoProcess::start_waiting(&workload(), &["-rate", "2000", "-duration", "3"]);
    let pid = target.pid().to_string();
    // Only the program's own writes (encoding/json writes a map[string]int of its own when it
    // prints its count): shown + not shown = the program's count.
    let mut tracer = Tracer::spawn(&[
        "trace",
        "-p",
        &pid,
        "--mode",
        "exact",
        "--stack",
        "--json",
        "--max-rate",
        "50",
        "--duration",
        "60",
        "--map",
        "map[string]int",
        "--site",
        "main.writeKey",
    ]);
    tracer.wait_attached();
    target.release();
    let truth = common::parse_workload(&target.finish());
    let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(90));
    assert!(status.success(), "trace {status}: {stderr}");
    let lines: Vec<Value> = json_lines(stdout.as_bytes())
        .into_iter()
        .filter(|v| v["event"] == "write")
        .collect();
    let first = lines.first().expect("trace printed no write");
    let chain: Vec<&str> = first["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert_eq!(first["function"], "main.writeKey");
    assert!(chain.len() >= 4, "{chain:?}");
    // Inlined calls are frames of their own, as in profiles: `write`, the closure that calls
    // writeKey, is inlined into main.main.
    assert_eq!(
        &chain[..4],
        [
            "main.writeKey",
            "main.main.func2",
            "main.main",
            "runtime.main"
        ],
        "{chain:?}"
    );
    assert!(first["goid"].as_u64().unwrap() > 0);
    for l in &lines {
        assert_eq!(
            (&l["map"], &l["function"]),
            (
                &Value::from("map[string]int"),
                &Value::from("main.writeKey")
            ),
            "a line past --map/--site: {l}"
        );
    }
    let hidden = common::writes_not_shown(&stderr);
    assert_eq!(
        lines.len() as u64 + hidden,
        truth.done.writes,
        "{} lines shown + {hidden} not shown vs the program's {} writes: {stderr}",
        lines.len(),
        truth.done.writes
    );
    // At most 50 lines in each second of the trace (a line's t_s says which).
    let mut per_second = std::collections::BTreeMap::<u64, u64>::new();
    for l in &lines {
        *per_second
            .entry(l["t_s"].as_f64().unwrap() as u64)
            .or_default() += 1;
    }
    assert!(
        per_second.values().all(|n| *n <= 50),
        "over --max-rate 50: {per_second:?}"
    );
}

#[test]
fn memory_stays_bounded_with_five_million_distinct_keys() {
    require_root();
    let _alone = timing_sensitive();
    let bin = common::build("growth", &common::newest_toolchain(), Variant::Plain);
    let target = GoProcess::start_waiting(&bin, &["-n", "5000000", "-kind", "string"]);
    let pid = target.pid().to_string();
    let mut tracer = Tracer::spawn(&[
        "top",
        "-p",
        &pid,
        "--mode",
        "exact",
        "--json",
        "--duration",
        "300",
        "--refresh",
        "2",
    ]);
    tracer.wait_attached();
    let tpid = tracer.child.id();
    // A target that has written nothing yet: the ring exact mode starts with.
    let quiet_rings = common::probes::ring_buffer_sizes(tpid);
    // Watch the tracer's peak RSS and its largest ring from another thread while this one
    // reaps the target (a target left a zombie keeps the tracer's uprobe teardown waiting).
    let watcher = std::thread::spawn(move || {
        let (mut peak, mut largest_ring) = (0, 0);
        while let Some(h) = common::vm_hwm_bytes(tpid) {
            peak = peak.max(h);
            let rings = common::probes::ring_buffer_sizes(tpid);
            largest_ring = rings.into_iter().fold(largest_ring, u64::max);
            std::thread::sleep(Duration::from_millis(50));
        }
        (peak, largest_ring)
    });
    target.release();
    let truth = common::parse_growth(&target.finish());
    let (status, stdout, stderr) = tracer.finish_within(Duration::from_secs(120));
    assert!(status.success(), "top {status}: {stderr}");
    let (peak, largest_ring) = watcher.join().unwrap();
    let report = json_lines(stdout.as_bytes()).pop().expect("a snapshot");
    let n = truth.done.n;
    let m = the_map(&report, "map[string]int");
    let observed = m["writes"].as_u64().unwrap();
    let lost = report["lost_events"].as_u64().unwrap();
    let lost_growths = report["lost_growths"].as_u64().unwrap();
    eprintln!(
        "{n} keys: observed {observed}, lost {lost} (and {lost_growths} growth records), tracer peak RSS {} MiB",
        peak >> 20
    );
    // Exact mode: every write of the program observed or counted lost, once (lost growth
    // records count apart, in lost_growths). A lost record names no map: the lost count also
    // holds what the program's other maps lost, the standard library's caches written as it
    // prints its counts (encoding/json's: 19 writes in a run that loses nothing).
    const OTHER_WRITES: u64 = 32;
    assert!(
        observed + lost >= n && observed + lost <= n + OTHER_WRITES,
        "observed {observed} + lost {lost} vs the program's {n} writes (+ at most \
         {OTHER_WRITES} to other maps)"
    );
    // The ring: small while the target is quiet; grown under the flood (each new key is a
    // record, read slower than the program writes them), at most to the largest.
    eprintln!("rings: {quiet_rings:?} while quiet, largest {largest_ring} bytes");
    assert_eq!(
        quiet_rings,
        [u64::from(load::EXACT_RING_BYTES)],
        "the ring while the target is quiet"
    );
    assert!(
        largest_ring > u64::from(load::EXACT_RING_BYTES)
            && largest_ring <= u64::from(load::MAX_RING_BYTES),
        "the ring did not grow under the flood, or grew past the largest: {largest_ring} bytes"
    );
    let size = std::fs::metadata(&bin).unwrap().len();
    let bound = common::stated_peak_rss("top --mode exact", size);
    assert!(
        peak > 0 && peak <= bound,
        "tracer peak RSS {peak} > the bound docs/reliability.md states, {bound}"
    );
}
