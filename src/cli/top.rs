//! `top`: a live view of hot keys per map — a terminal UI, or one snapshot (`--once`), or JSON
//! lines (`--json`). Budget mode by default. With `--binary`, every process of the executable
//! (`fleet`), merged into one report per refresh.
use std::process::ExitCode;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use parking_lot::Mutex;

use super::args::{resolve_pid, LiveArgs};
use super::profile::ProfileArgs;
use crate::hotkeys::stacks::StackCounts;
use crate::pipeline::watch::{run_live, OnEvent};
use crate::report::merge::{merge, Latest};
use crate::report::table;
use crate::report::Report;
use crate::sampling::Mode;

#[derive(clap::Args)]
#[command(
    about = "Live view of the hottest keys per map (budget mode: a bounded, known slowdown)",
    after_help = "Keys in the terminal UI: q quit, Up/Down select map, s sort keys, p pause.

Examples:
  sudo ebpf-map-trace top -p $(pidof server)               # terminal UI, 1 % overhead budget
  sudo ebpf-map-trace top -p $(pidof server) --once --duration 10
  sudo ebpf-map-trace top --binary /srv/app --json --overhead 0.5 > hot.jsonl"
)]
pub struct Args {
    #[command(flatten)]
    live: LiveArgs,
    /// Print one snapshot as a table after --duration (default 5 s) and exit.
    #[arg(long)]
    once: bool,
    /// Print snapshots as JSON lines (schema ebpf-map-trace/report/v1) instead of the UI.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    profile: ProfileArgs,
}

pub fn run(mut args: Args) -> Result<ExitCode> {
    if args.once && args.live.duration.is_none() {
        args.live.duration = Some(5.0);
    }
    if let (Some(binary), false) = (&args.live.binary, args.profile.wanted()) {
        super::fleet::require_running(binary)?;
        if args.once || args.json {
            return show_fleet(&args);
        }
        crate::probe::load::preflight()?;
        return super::top_ui_driver::run_fleet(&args.live);
    }
    // One process: -p, or with --pprof/--folded the oldest of --binary.
    let pid = resolve_pid(args.live.pid, args.live.binary.as_deref())?;
    if !args.profile.wanted() {
        return show(&args, pid, &mut |_, _| {}, &mut 1.0);
    }
    // Stacks per write, bounded; written when top ends (symbolized from the binary, opened here).
    args.profile.check_writable()?;
    let exe = crate::probe::process::exe_of(pid)?;
    let bin = crate::gobin::GoBinary::open(&exe)?;
    args.live.stack = true;
    let mut stacks = StackCounts::bounded();
    let (start, started) = (std::time::SystemTime::now(), std::time::Instant::now());
    let mut coverage = 1.0;
    let code = show(
        &args,
        pid,
        &mut |ev, key| stacks.add(ev, key),
        &mut coverage,
    )?;
    let meta = crate::report::pprof::Meta {
        binary: exe.display().to_string(),
        coverage: (args.live.mode() == Mode::Budget).then_some(coverage),
        start,
        duration: started.elapsed(),
        redact: args.live.redact,
    };
    args.profile.write(&bin, &stacks, &meta)?;
    Ok(code)
}

/// The view itself; `coverage` is left at the last snapshot's.
fn show(args: &Args, pid: u32, on_event: &mut OnEvent<'_>, coverage: &mut f64) -> Result<ExitCode> {
    if args.once || args.json {
        let mut last = None;
        run_live(&args.live.options(pid), on_event, &mut |_| {}, &mut |r| {
            *coverage = r.report.coverage;
            if args.json && !args.once {
                println!("{}", serde_json::to_string(&r.report)?);
            }
            last = Some((r.report, r.overhead_percent));
            Ok(true)
        })?;
        if let Some((report, overhead)) = last.filter(|_| args.once) {
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", table::render(&report));
                println!(
                    "coverage {:.1} %, estimated overhead {:.2} %",
                    report.coverage * 100.0,
                    overhead
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    super::top_ui_driver::run(&args.live, pid, on_event, coverage)
}

/// The processes' reports so far.
#[derive(Default)]
struct Fleet {
    /// The live processes' latest reports (for the stream).
    live: Latest,
    /// Every process's last report and overhead, ended ones too (for `--once`).
    last: BTreeMap<u32, (Report, f64)>,
    /// Whether a report came in since the last print.
    fresh: bool,
}

impl Fleet {
    /// Prints the merged report of the live processes if a report came in since the last print.
    fn print_fresh(&mut self) {
        if std::mem::take(&mut self.fresh) {
            println!("{}", json(&self.live.merged()));
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `--binary` with `--once` or `--json`: every process of the executable (see `fleet`), one merged
/// report per refresh as `serve`'s `/hotkeys` (`pids`, and each map's `pid`).
fn show_fleet(args: &Args) -> Result<ExitCode> {
    crate::probe::load::preflight()?;
    let fleet: Mutex<Fleet> = Mutex::default();
    let stream = args.json && !args.once;
    let refresh = Duration::from_secs_f64(args.live.refresh.max(0.05));
    let mut next_print = Instant::now() + refresh;
    super::fleet::follow(
        &args.live,
        |pid| {
            let options = args.live.options(pid);
            run_live(&options, &mut |_, _| {}, &mut |_| {}, &mut |r| {
                let mut f = fleet.lock();
                f.live.update(pid, r.report.clone());
                f.last.insert(pid, (r.report, r.overhead_percent));
                f.fresh = true;
                Ok(true)
            })
        },
        // A process that ended keeps its last report in `--once`; the stream prints its final
        // report (if not yet printed) and then drops it.
        |pid| {
            let mut f = fleet.lock();
            if stream {
                f.print_fresh();
            }
            f.live.retire(pid)
        },
        |_| {
            if stream && Instant::now() >= next_print {
                next_print = Instant::now() + refresh;
                fleet.lock().print_fresh();
            }
        },
    )?;
    let f = fleet.lock();
    if args.once && args.json {
        let all = merge(f.last.iter().map(|(pid, (r, _))| (*pid, r, None)));
        println!("{}", json(&all));
    } else if args.once {
        println!("{} processes", f.last.len());
        for (pid, (report, overhead)) in &f.last {
            println!("process {pid}:");
            print!("{}", table::render(report));
            println!(
                "coverage {:.1} %, estimated overhead {:.2} %",
                report.coverage * 100.0,
                overhead
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
