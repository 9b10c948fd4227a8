//! Connects the live loop (main thread: probes, ring buffers) to the terminal UI (its own thread):
//! the latest snapshot waits in a one-slot mailbox (a paused UI lets newer ones replace it, so
//! nothing piles up); quitting the UI stops the loop, and the loop ending closes the UI.
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::live::{run_live, LiveArgs, OnEvent};
use super::signals::{request_stop, stop_requested};
use super::top_ui::{self, Snapshot};

const LOOP_ENDED: &str = "tracing stopped";

/// `on_event` sees every write (for --pprof/--folded); `coverage` is left at the last refresh's.
pub fn run(args: &LiveArgs, on_event: &mut OnEvent<'_>, coverage: &mut f64) -> Result<ExitCode> {
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
    let live_result = run_live(args, on_event, &mut |_| {}, &mut |r| {
        *coverage = r.report.coverage;
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
        let snapshot = Snapshot {
            map_rates: r.map_rates,
            key_rates,
            key_trends,
            overhead_percent: r.overhead_percent,
            paused_collection: false,
            report: r.report,
        };
        if let Ok(mut slot) = mailbox.lock() {
            *slot = Some(snapshot);
        }
        Ok(!stop_requested())
    });
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
