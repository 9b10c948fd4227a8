//! Overload (issue 7), with real uprobes: millions of distinct keys at the highest write rate
//! in exact `run`. The tracer's peak RSS stays under the bound docs/reliability.md states;
//! the calm phase before the flood (fewer writes than the ring holds) is counted exactly, key by
//! key; every write and delete of the flood (the program counts both) is either observed or
//! counted lost, and no more are counted lost than went unobserved; keys past the key budget are counted in their map but reported as
//! untracked; nothing hangs (a watchdog kills the tracer after 240 s and fails); and the report
//! says it is incomplete (JSON `complete: false` with reasons, `INCOMPLETE:` lines). `run`'s
//! ring buffer is the largest from the start (nothing is known of a launched command's rate).
//! `RELIAB_FLOOD_N` sets the number of keys (default 4 million, to keep CI short; the README
//! records a 10-million run).
mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Variant;
use ebpf_map_trace::probe::load;
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its peak RSS
fn millions_of_distinct_keys_stay_in_bounds_and_are_reported_incomplete() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "tracing tests need root");
    let n: u64 = std::env::var("RELIAB_FLOOD_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let bin = common::build("flood", &common::newest_toolchain(), Variant::Plain);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("overload");
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let mut tracer = Command::new(TRACER)
        .args(["run", "--json", json.to_str().unwrap(), "--"])
        .arg(&bin)
        .args(["-n", &n.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0) // the watchdog kills the tracer and its target together
        .spawn()
        .unwrap();
    let out = common::read_all(tracer.stdout.take().unwrap());
    let err = common::read_all(tracer.stderr.take().unwrap());
    // wait4 gives the tracer's own peak RSS (its target is its child, not ours).
    let t0 = Instant::now();
    // The ring buffers the tracer holds, first and largest seen.
    let (mut first_rings, mut largest_ring) = (Vec::new(), 0);
    let (status, maxrss_kib) = loop {
        let rings = common::probes::ring_buffer_sizes(tracer.id());
        if first_rings.is_empty() {
            first_rings = rings.clone();
        }
        largest_ring = rings.into_iter().fold(largest_ring, u64::max);
        let mut st = 0;
        // SAFETY: wait4 on our own child with valid out-pointers.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(tracer.id() as i32, &mut st, libc::WNOHANG, &mut ru) };
        if r == tracer.id() as i32 {
            break (st, ru.ru_maxrss as u64);
        }
        if t0.elapsed() > Duration::from_secs(240) {
            common::kill_group(&mut tracer);
            panic!(
                "tracer hung: still running after {:?} (killed)",
                t0.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "tracer status {status:#x}: {stderr}"
    );
    let done: Value = serde_json::from_str(stdout.trim()).expect("flood's done line");
    assert_eq!(done["writes"].as_u64(), Some(n));
    let calm = done["calm"].as_u64().expect("flood's calm count");
    let deletes_made = done["deletes"].as_u64().expect("flood's delete count");

    eprintln!("rings: first seen {first_rings:?}, largest {largest_ring} bytes");
    assert_eq!(
        (first_rings, largest_ring),
        (
            vec![u64::from(load::MAX_RING_BYTES)],
            u64::from(load::MAX_RING_BYTES)
        ),
        "run's ring: the largest, from the start"
    );

    let size = std::fs::metadata(&bin).unwrap().len();
    let bound = common::stated_peak_rss("run", size);
    let rss = maxrss_kib * 1024;
    eprintln!(
        "{n} keys in {:.1}s: tracer peak RSS {} MiB (stated bound {} MiB)",
        t0.elapsed().as_secs_f64(),
        rss >> 20,
        bound >> 20
    );
    assert!(rss < bound, "peak RSS {rss} over the stated bound {bound}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let lost = report["lost_events"].as_u64().unwrap();
    let map_of = |function: &str| -> &Value {
        report["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["sites"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["function"] == function))
            })
            .unwrap_or_else(|| panic!("{function}'s map not in the report"))
    };
    // The calm phase: fewer records than the ring holds, so every write is seen, key by key.
    let calm_map = map_of("main.writeCalm");
    assert_eq!(calm_map["writes"].as_u64(), Some(calm), "calm writes");
    assert_eq!(calm_map["distinct_keys"].as_u64(), Some(calm), "calm keys");
    assert_eq!(
        calm_map["untracked_key_writes"], 0,
        "calm keys are within the budget"
    );
    for k in calm_map["top_keys"].as_array().unwrap() {
        assert!(
            k["key"].as_str().unwrap().starts_with("calm:") && k["writes"] == 1,
            "{k}"
        );
    }
    let map = map_of("main.writeKey");
    let writes = map["writes"].as_u64().unwrap();
    let distinct = map["distinct_keys"].as_u64().unwrap();
    let untracked = map["untracked_key_writes"].as_u64().unwrap();
    let deletes = map["deletes"].as_u64().unwrap();
    let grows = map["grows"].as_u64().unwrap();
    eprintln!("calm {calm}; flood observed {writes} writes and {deletes} deletes, lost {lost}, distinct stored {distinct}, untracked {untracked}, grows seen {grows}");
    // Every operation is observed or counted lost, once (lost growth records count apart, in
    // lost_growths).
    assert!(writes <= n, "more writes than the program made");
    assert!(
        deletes <= deletes_made,
        "{deletes} deletes observed, the program made {deletes_made}"
    );
    let (observed, made) = (writes + deletes, n + deletes_made);
    assert_eq!(
        observed + lost,
        made,
        "{writes} writes + {deletes} deletes + {lost} lost vs the program's {n} + {deletes_made}"
    );
    // Key accounting: every key is written once, and deleted at most once after. Each observed
    // write is of a key not seen before: stored, or counted untracked past the key budget; a
    // delete adds a key (or an untracked one) only when its write was lost or not stored.
    assert!(
        distinct + untracked >= writes && distinct + untracked <= observed,
        "key accounting: {distinct} stored + {untracked} untracked vs {writes} writes and {deletes} deletes"
    );
    let reasons = report["incomplete"].as_array().unwrap();
    if lost > 0 || untracked > 0 {
        assert_eq!(report["complete"], false, "{reasons:?}");
        assert!(
            stderr.lines().any(|l| l.starts_with("INCOMPLETE: ")),
            "table does not say so: {stderr}"
        );
    }
    if lost > 0 {
        let words = [lost.to_string(), "writes".into(), "lost".into()];
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert!(
            reasons
                .iter()
                .any(|r| common::has_words(r.as_str().unwrap(), &words)),
            "no reason says {lost} writes lost: {reasons:?}"
        );
    }
    if untracked > 0 {
        assert!(reasons
            .iter()
            .any(|r| r.as_str().unwrap().contains("key budget")));
    }
    assert!(
        lost > 0 || untracked > 0,
        "the flood neither filled the ring nor the key budget: raise RELIAB_FLOOD_N"
    );
}
