//! `serve` with real probes: a real Prometheus server scrapes the agent attached to a Go program
//! and a PromQL query returns the program's hot key with the right map label; `/metrics` passes
//! `promtool check metrics`; with `--binary`, two processes of one executable (one started after
//! the agent) both appear under their pids with their own hot keys, and leave when they exit.
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/tracer.rs"]
mod tracer;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{GoProcess, Variant};
use prometheus::Prometheus;
use serde_json::Value;
use tracer::Tracer;

const MAP: &str = "map[string]int";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "serve tests need root (CAP_BPF + CAP_PERFMON)"
    );
}

fn require_file(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install {what} (./setup does)"
    );
}

fn workload() -> PathBuf {
    common::build("workload", &common::newest_toolchain(), Variant::Plain)
}

/// The key hash as `serve` labels it (the `--redact` form without `#`).
fn key_hash(key: &str) -> String {
    common::key_hash(key).trim_start_matches('#').to_string()
}

fn hotkeys(addr: &str) -> Option<Value> {
    let (status, body) = http::get(addr, "/hotkeys", None)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// The top key of `pid`'s `map[string]int` in a merged `/hotkeys` report.
fn top_key_of(report: &Value, pid: u32) -> Option<String> {
    report["maps"]
        .as_array()?
        .iter()
        .find(|m| m["pid"] == pid && m["type"] == MAP)?["top_keys"][0]["key"]
        .as_str()
        .map(String::from)
}

/// Seconds over which the hot key's rate is averaged, in Prometheus and from the program's own
/// progress lines: long next to the gauge's decay (weights 0.7ⁿ of 0.5 s refreshes) and to the
/// program's catch-up bursts (it paces its writes; a loaded machine makes them uneven).
const RATE_SECONDS: usize = 8;

/// How far the averaged rates may differ, as a factor. Rates "now" are taken when the tracer
/// reads the writes, not when they were made: a tracer that falls behind on a loaded machine
/// reads seconds of writes in one refresh (seen: 30,258/s for a key written 5,000/s), which a
/// few one-second samples do not average away; the two windows also differ by the gauge's lag
/// (about a refresh) and the progress lines' one-second steps.
const RATE_FACTOR: f64 = 2.0;

/// The program's write rate over its last `RATE_SECONDS` seconds so far, from its `progress`
/// lines (one a second, cumulative).
fn own_rate(p: &mut GoProcess) -> f64 {
    let progress: Vec<(f64, f64)> = p
        .seen()
        .iter()
        .filter(|l| l["event"] == "progress")
        .map(|l| {
            (
                l["writes"].as_f64().unwrap(),
                l["elapsed_ns"].as_f64().unwrap() / 1e9,
            )
        })
        .collect();
    assert!(
        progress.len() > RATE_SECONDS,
        "{} progress lines",
        progress.len()
    );
    let (w1, t1) = progress[progress.len() - 1];
    let (w0, t0) = progress[progress.len() - 1 - RATE_SECONDS];
    (w1 - w0) / (t1 - t0)
}

#[test]
fn prometheus_scrapes_the_hot_key_and_promtool_accepts_the_metrics() {
    require_root();
    require_file("/usr/bin/promtool", "the Debian package prometheus");
    let mut target = GoProcess::start_waiting(
        &workload(),
        &[
            "-rate",
            "20000",
            "-duration",
            "60",
            "-hot-after",
            "0",
            "-progress",
        ],
    );
    let pid = target.pid();
    let listen = http::free_addr();
    // Exact mode: the rates are counted, not estimated, so they can be held to the program's.
    let mut serve = Tracer::spawn(&[
        "serve",
        "-p",
        &pid.to_string(),
        "--mode",
        "exact",
        "--listen",
        &listen,
        "--refresh",
        "0.5",
        "--metrics-key-label",
        "value",
    ]);
    serve.wait_attached();
    target.release();
    let prom = Prometheus::start(&listen);

    // The agent's own view first: the program's hot key on top of its map.
    common::poll(40, "hot:1 on top in /hotkeys", || {
        (top_key_of(&hotkeys(&listen)?, pid)? == "hot:1").then_some(())
    });

    // promtool accepts what a plain scrape gets.
    let (status, body) = http::get(&listen, "/metrics", None).expect("/metrics answers");
    assert_eq!(status, 200);
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    // Exactly the documented families are in a real scrape, each of its kind — but the load,
    // which a Swiss map (the newest Go's) only has once a grow was seen from its start.
    let scraped: HashSet<(String, String)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    let documented: HashSet<(String, String)> = common::METRIC_FAMILIES
        .iter()
        .filter(|(name, _)| *name != "gomap_map_load")
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    let undocumented: Vec<_> = scraped
        .iter()
        .filter(|(name, _)| name != "gomap_map_load")
        .filter(|f| !documented.contains(*f))
        .collect();
    let missing: Vec<_> = documented.difference(&scraped).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "/metrics vs README's families: missing {missing:?}, not documented {undocumented:?}:\n{body}"
    );

    // Prometheus (OpenMetrics negotiated) stores the series: PromQL finds the hot key at rank 1.
    let promql = format!("gomap_hot_key_writes_per_second{{map=\"{MAP}\",rank=\"1\"}}");
    let series = common::poll(40, "the hot key's series in Prometheus", || {
        let r = prom.query(&promql)?;
        r.into_iter().find(|s| s["metric"]["key"] == "hot:1")
    });
    let labels = &series["metric"];
    assert_eq!(labels["map"], MAP, "{series}");
    assert_eq!(labels["pid"], pid.to_string(), "{series}");
    assert_eq!(labels["key_hash"], key_hash("hot:1"), "{series}");
    // Its rate: one write in four of the program's is hot:1 (-hot-after 0). Once the series
    // has RATE_SECONDS of history, its average then equals the program's own rate over those
    // seconds, a quarter of its writes per second.
    let history = Instant::now();
    while history.elapsed() < Duration::from_secs(RATE_SECONDS as u64 + 1) {
        while target.next_line(Duration::from_millis(100)).is_some() {}
    }
    let avg = format!("avg_over_time({promql}[{RATE_SECONDS}s])");
    let rate: f64 = prom
        .query(&avg)
        .and_then(|r| r.into_iter().find(|s| s["metric"]["key"] == "hot:1"))
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no result for {avg}"));
    while target.next_line(Duration::ZERO).is_some() {}
    let truth = own_rate(&mut target) / 4.0;
    assert!(
        rate <= truth * RATE_FACTOR && rate >= truth / RATE_FACTOR,
        "hot:1 at {rate:.0}/s on average in Prometheus, the program wrote it {truth:.0}/s over the same {RATE_SECONDS} s: {series}"
    );
    // The write counter reached Prometheus too, with its site.
    let writes = prom
        .query(&format!("gomap_writes_total{{map=\"{MAP}\"}}"))
        .unwrap_or_default();
    assert!(
        writes.iter().any(|s| s["metric"]["site"]
            .as_str()
            .unwrap_or("")
            .starts_with("main.writeKey")),
        "no gomap_writes_total for main.writeKey: {writes:?}\n{}",
        prom.log()
    );

    // Reap the target before the agent detaches, then end the agent with SIGTERM.
    drop(target);
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Starts `bin args... -wait` as a container would run it: in its own mount namespace, where
/// `bin`'s directory is bind-mounted on `mnt`, an empty directory of the host; it runs as
/// `mnt/NAME`, a path that has no such file outside its namespace.
fn start_contained(bin: &Path, mnt: &Path, args: &[&str]) -> GoProcess {
    require_file("/usr/bin/unshare", "util-linux");
    let dir = bin.parent().unwrap().to_str().unwrap();
    let inside = mnt.join(bin.file_name().unwrap());
    let mut all = vec![
        "--mount",
        "--",
        "/bin/sh",
        "-c",
        "mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"",
        "sh",
        dir,
        mnt.to_str().unwrap(),
        inside.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    GoProcess::start_waiting(Path::new("/usr/bin/unshare"), &all)
}

#[test]
fn binary_mode_follows_every_process_of_the_executable_across_mount_namespaces() {
    require_root();
    // A copy of its own: the other test's target runs the same executable meanwhile.
    let bin = common::private_copy(&workload(), "serve-binary");
    let mnt = std::env::temp_dir().join(format!("emt-container-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).unwrap();
    let in_container = mnt.join(bin.file_name().unwrap());
    let args = |seed: &'static str| {
        [
            "-rate",
            "5000",
            "-duration",
            "6",
            "-keys",
            "100",
            "-seed",
            seed,
        ]
    };
    let first = start_contained(&bin, &mnt, &args("1"));
    assert!(
        !in_container.exists(),
        "the container's path must not exist outside it"
    );
    let listen = http::free_addr();
    let mut serve = Tracer::spawn(&[
        "serve",
        "--binary",
        in_container.to_str().unwrap(),
        "--mode",
        "exact",
        "--listen",
        &listen,
        "--refresh",
        "0.5",
    ]);
    serve.wait_attached();
    first.release();
    // The second process starts after the agent is up.
    let second = start_contained(&bin, &mnt, &args("2"));
    serve.wait_attached_to(second.pid());
    second.release();
    let pids = [first.pid(), second.pid()];

    // Watch both until they end; keep the last top key seen per pid.
    let mut top: HashMap<u32, String> = HashMap::new();
    // Rank 1 of /metrics is by recent rate: count how often each key hash held it.
    let mut rank1: HashMap<u32, HashMap<String, u32>> = HashMap::new();
    let (mut first, mut second) = (Some(first), Some(second));
    let t0 = Instant::now();
    while first.as_mut().is_some_and(|p| !p.has_exited())
        || second.as_mut().is_some_and(|p| !p.has_exited())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "targets never ended"
        );
        if let Some(report) = hotkeys(&listen) {
            for pid in pids {
                if let Some(k) = top_key_of(&report, pid) {
                    top.insert(pid, k);
                }
            }
        }
        if let Some((_, body)) = http::get(&listen, "/metrics", None) {
            for line in body.lines().filter(|l| {
                l.starts_with("gomap_hot_key_writes_per_second{") && l.contains("rank=\"1\"")
            }) {
                let label = |name: &str| {
                    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
                    line[start..].split('"').next().map(String::from)
                };
                if let (Some(p), Some(h)) = (label("pid"), label("key_hash")) {
                    *rank1
                        .entry(p.parse().unwrap())
                        .or_default()
                        .entry(h)
                        .or_default() += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let truths: Vec<_> = [first.take().unwrap(), second.take().unwrap()]
        .into_iter()
        .map(|p| common::parse_workload(&p.finish()))
        .collect();
    for (pid, truth) in pids.iter().zip(&truths) {
        let want = &truth.done.keys[0].key;
        assert_eq!(
            top.get(pid),
            Some(want),
            "process {pid}: top key in /hotkeys (program's own count: {want})"
        );
        // The key most often ranked first by rate over the scrapes (the last scrape alone may
        // rank a runner-up first: rates are recent, the truth is the whole run's count).
        let most_often = rank1
            .get(pid)
            .and_then(|seen| seen.iter().max_by_key(|(_, n)| **n))
            .map(|(h, _)| h.clone());
        assert_eq!(
            most_often,
            Some(key_hash(want)),
            "process {pid}: rank-1 key hash in /metrics most often ({want}; seen {:?})",
            rank1.get(pid)
        );
    }
    assert_ne!(
        truths[0].done.keys[0].key, truths[1].done.keys[0].key,
        "the two seeds must give different hot keys for this test to tell the processes apart"
    );

    // Exited processes are retired within seconds.
    common::poll(10, "exited processes retired", || {
        let report = hotkeys(&listen);
        let gone = report.as_ref().is_none_or(|r| r.is_null());
        let (_, body) = http::get(&listen, "/metrics", None)?;
        (gone
            && body.lines().any(|l| l == "gomap_targets 0")
            && !pids.iter().any(|p| body.contains(&format!("pid=\"{p}\""))))
        .then_some(())
    });
    let (st, _, err) = serve.terminate();
    let _ = std::fs::remove_dir(&mnt);
    assert!(st.success(), "serve: {st}: {err}");
    let traced: HashSet<u32> = err
        .lines()
        .filter_map(|l| l.strip_prefix("ebpf-map-trace: tracing process "))
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    assert_eq!(traced, pids.into_iter().collect(), "{err}");
}
