//! Connects the live loop (main thread: probes, ring buffers) to the terminal UI (its own thread):
//! the latest snapshot waits in a one-slot mailbox (a paused UI lets newer ones replace it, so
//! nothing piles up); quitting the UI stops the loop, and the loop ending closes the UI. With
//! `--binary`, one loop per process (`fleet`) and their snapshots merged, each map with its pid.
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::args::LiveArgs;
use super::top_ui::{self, Snapshot};
use crate::pipeline::stop::{request_stop, stop_requested};
use crate::pipeline::watch::{run_live, OnEvent};
use crate::report::live::Refresh;

const LOOP_ENDED: &str = "tracing stopped";

/// Process `pid`. `on_event` sees every write (for --pprof/--folded); `coverage` is left at the
/// last refresh's.
pub fn run(
    args: &LiveArgs,
    pid: u32,
    on_event: &mut OnEvent<'_>,
    coverage: &mut f64,
) -> Result<ExitCode> {
    with_ui(args, |mailbox| {
        run_live(&args.options(pid), on_event, &mut |_| {}, &mut |r| {
            *coverage = r.report.coverage;
            if let Ok(mut slot) = mailbox.lock() {
                *slot = Some(snapshot_of(r));
            }
            Ok(!stop_requested())
        })
    })
}

/// `--binary`: every process of the executable (see `fleet`), merged into one snapshot per
/// refresh whose maps say their process.
pub fn run_fleet(args: &LiveArgs) -> Result<ExitCode> {
    let latest: Mutex<BTreeMap<u32, Snapshot>> = Mutex::default();
    let lock = || latest.lock().unwrap_or_else(|e| e.into_inner());
    let refresh = Duration::from_secs_f64(args.refresh.max(0.05));
    let mut next = Instant::now();
    with_ui(args, |mailbox| {
        super::fleet::follow(
            args,
            |pid| {
                run_live(&args.options(pid), &mut |_, _| {}, &mut |_| {}, &mut |r| {
                    lock().insert(pid, snapshot_of(r));
                    Ok(!stop_requested())
                })
            },
            |pid| {
                lock().remove(&pid);
            },
            |_| {
                if Instant::now() >= next {
                    next = Instant::now() + refresh;
                    if let (Some(merged), Ok(mut slot)) = (merged(&lock()), mailbox.lock()) {
                        *slot = Some(merged);
                    }
                }
            },
        )
    })
}

/// One snapshot of every process's latest: maps (with their pid) by writes, totals summed, the
/// least coverage and the largest overhead.
fn merged(by_pid: &BTreeMap<u32, Snapshot>) -> Option<Snapshot> {
    let first = by_pid.values().next()?;
    let mut rows = Vec::new();
    let mut report = first.report.clone();
    report.maps.clear();
    report.writes_observed = 0;
    report.lost_events = 0;
    report.read_failures = 0;
    let mut overhead = 0.0f64;
    for (pid, s) in by_pid {
        let r = &s.report;
        report.writes_observed += r.writes_observed;
        report.lost_events += r.lost_events;
        report.read_failures += r.read_failures;
        report.coverage = report.coverage.min(r.coverage);
        overhead = overhead.max(s.overhead_percent);
        for (i, m) in r.maps.iter().enumerate() {
            let at = |v: &Vec<Vec<f64>>| v.get(i).cloned().unwrap_or_default();
            let rate = s.map_rates.get(i).copied().unwrap_or(f64::NAN);
            rows.push((*pid, m.clone(), rate, at(&s.key_rates), at(&s.key_trends)));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.writes_estimated));
    let mut out = Snapshot {
        report,
        map_rates: Vec::new(),
        key_rates: Vec::new(),
        key_trends: Vec::new(),
        overhead_percent: overhead,
        paused_collection: false,
        map_pids: Vec::new(),
    };
    for (pid, m, rate, keys, trends) in rows {
        out.map_pids.push(pid);
        out.report.maps.push(m);
        out.map_rates.push(rate);
        out.key_rates.push(keys);
        out.key_trends.push(trends);
    }
    Some(out)
}

fn snapshot_of(r: Refresh) -> Snapshot {
    let key_rates = r
        .report
        .maps
        .iter()
        .map(|m| {
            m.top_keys
                .iter()
                .map(|k| k.writes_per_s.unwrap_or(0.0))
                .collect()
        })
        .collect();
    let key_trends = r
        .report
        .maps
        .iter()
        .map(|m| m.top_keys.iter().map(|k| k.trend.unwrap_or(1.0)).collect())
        .collect();
    Snapshot {
        map_rates: r.map_rates,
        key_rates,
        key_trends,
        overhead_percent: r.overhead_percent,
        paused_collection: false,
        map_pids: Vec::new(),
        report: r.report,
    }
}

/// Runs the UI on its own thread while `feed` (the tracing) fills its mailbox on this one.
fn with_ui(
    args: &LiveArgs,
    feed: impl FnOnce(&Mutex<Option<Snapshot>>) -> Result<()>,
) -> Result<ExitCode> {
    let mailbox: Arc<Mutex<Option<Snapshot>>> = Arc::new(Mutex::new(None));
    let loop_ended = Arc::new(AtomicBool::new(false));
    let refresh = Duration::from_secs_f64(args.refresh.max(0.05));
    let ui = {
        let (mailbox, loop_ended) = (mailbox.clone(), loop_ended.clone());
        std::thread::spawn(move || {
            let result = top_ui::run(
                || {
                    let latest = mailbox
                        .lock()
                        .map_err(|_| anyhow!("snapshot lock poisoned"))?
                        .take();
                    if latest.is_none() && loop_ended.load(Ordering::SeqCst) {
                        bail!(LOOP_ENDED);
                    }
                    Ok(latest)
                },
                refresh / 4,
            );
            request_stop();
            result
        })
    };
    let live_result = feed(&mailbox);
    loop_ended.store(true, Ordering::SeqCst);
    let ui_result = ui
        .join()
        .map_err(|_| anyhow!("the terminal UI thread panicked"))?;
    live_result?;
    match ui_result {
        Err(e) if e.to_string() == LOOP_ENDED => Ok(ExitCode::SUCCESS),
        other => other.map(|_| ExitCode::SUCCESS),
    }
}
