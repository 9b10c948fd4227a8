//! `top`: a live view of hot keys per map — a terminal UI, or one snapshot (`--once`), or JSON
//! lines (`--json`). Budget mode by default.
use std::process::ExitCode;

use anyhow::Result;

use super::live::{run_live, LiveArgs};
use crate::report::table;

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
}

pub fn run(mut args: Args) -> Result<ExitCode> {
    if args.once && args.live.duration.is_none() {
        args.live.duration = Some(5.0);
    }
    if args.once || args.json {
        let mut last = None;
        run_live(&args.live, &mut |_, _| {}, &mut |_| {}, &mut |r| {
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
    super::top_ui_driver::run(&args.live)
}
