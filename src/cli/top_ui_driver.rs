//! Connects the live loop (main thread: probes, ring buffers) to the terminal UI (its own thread):
//! the latest snapshot waits in a one-slot mailbox (a paused UI lets newer ones replace it, so
//! nothing piles up); quitting the UI stops the loop, and the loop ending closes the UI. With
//! `--binary`, one loop per process (`fleet`) and their snapshots merged, each map with its pid.
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use parking_lot::Mutex;

use super::args::LiveArgs;
use super::top_ui::{self, Snapshot};
use crate::pipeline::stop::{request_stop, stop_requested};
use crate::pipeline::watch::{run_live, OnEvent};
use crate::report::live::Refresh;
use crate::report::merge::merge;

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
            *mailbox.lock() = Some(snapshot_of(r));
            Ok(!stop_requested())
        })
    })
}

/// `--binary`: every process of the executable (see `fleet`), merged into one snapshot per
/// refresh whose maps say their process.
pub fn run_fleet(args: &LiveArgs) -> Result<ExitCode> {
    let latest: Mutex<BTreeMap<u32, Snapshot>> = Mutex::default();
    let refresh = Duration::from_secs_f64(args.refresh.max(0.05));
    let mut next = Instant::now();
    with_ui(args, |mailbox| {
        super::fleet::follow(
            args,
            |pid| {
                run_live(&args.options(pid), &mut |_, _| {}, &mut |_| {}, &mut |r| {
                    latest.lock().insert(pid, snapshot_of(r));
                    Ok(!stop_requested())
                })
            },
            |pid| {
                latest.lock().remove(&pid);
            },
            |_| {
                if Instant::now() >= next {
                    next = Instant::now() + refresh;
                    if let Some(merged) = merged(&latest.lock()) {
                        *mailbox.lock() = Some(merged);
                    }
                }
            },
        )
    })
}

/// One snapshot of every process's latest: the reports merged (maps with their pid, by
/// writes; totals summed; the least coverage), each map with its own rates, and the largest
/// overhead.
fn merged(by_pid: &BTreeMap<u32, Snapshot>) -> Option<Snapshot> {
    let report = merge(by_pid.iter().map(|(pid, s)| (*pid, &s.report, None)))?;
    let (report, maps) = report.into_plain();
    let mut out = Snapshot {
        report,
        map_rates: Vec::new(),
        key_rates: Vec::new(),
        key_trends: Vec::new(),
        overhead_percent: by_pid
            .values()
            .map(|s| s.overhead_percent)
            .fold(0.0, f64::max),
        map_pids: Vec::new(),
    };
    for m in maps {
        let s = &by_pid[&m.pid];
        let at = |v: &Vec<Vec<f64>>| v.get(m.index).cloned().unwrap_or_default();
        out.map_pids.push(m.pid);
        out.map_rates
            .push(s.map_rates.get(m.index).copied().unwrap_or(f64::NAN));
        out.key_rates.push(at(&s.key_rates));
        out.key_trends.push(at(&s.key_trends));
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
                    let latest = mailbox.lock().take();
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
