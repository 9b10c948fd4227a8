//! `run`: tracing of a command from its first instruction (`run -- CMD`), or of a running
//! process (`run -p PID`) until Ctrl-C, `--duration` or its exit; then the report. Exact by
//! default (every write counted); `--mode budget` samples within `--overhead` through the live
//! loop and reports estimates with error bounds.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::args::ModeArg;
use super::profile::ProfileArgs;
use crate::pipeline::record::{record, Options, Recording, Target};
use crate::pipeline::tracee::Tracee;
use crate::pipeline::watch::{run_live_on, Options as LiveOptions};
use crate::probe::launch::{resolve_command, HeldChild};
use crate::probe::process::exe_of;
use crate::report::{self, table};

#[derive(clap::Args)]
#[command(
    about = "Count every map write of a Go program exactly (or estimate them within a budget), then print its hot keys",
    after_help = "Examples:
  ebpf-map-trace run -- ./server -port 8080      # trace from the first instruction to exit
  ebpf-map-trace run -p $(pidof server) --duration 10 --json report.json
  ebpf-map-trace run --top 20 --key-bytes 128 -- ./bench
  ebpf-map-trace run --mode budget --overhead 1 -- ./server   # estimates ± bounds, 1 % slowdown"
)]
pub struct Args {
    /// exact: every write counted; budget: probes attached part of the time, counts estimated
    /// (with error bounds) within --overhead.
    #[arg(long, value_enum, default_value_t = ModeArg::Exact)]
    mode: ModeArg,
    /// Budget mode: allowed slowdown of the target, in percent.
    #[arg(long, default_value_t = 1.0, value_name = "PERCENT")]
    overhead: f64,
    /// Trace this running process instead of starting a command.
    #[arg(short, long, conflicts_with = "command")]
    pid: Option<u32>,
    /// Stop after this many seconds (default: until the target exits or Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Keys shown per map.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Bytes of each key captured (longer keys are cut and marked truncated; at most 256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    key_bytes: u32,
    /// Show keys only as hashes.
    #[arg(long)]
    redact: bool,
    /// Also write the report as JSON (schema ebpf-map-trace/report/v1) to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    profile: ProfileArgs,
    /// The command to start and trace, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.profile.check_writable()?;
    let (exe, mut target) = match (args.pid, args.command.first()) {
        (Some(pid), _) => (exe_of(pid)?, Target::Running(pid)),
        (None, Some(cmd)) => {
            let exe = resolve_command(cmd)?;
            let child = HeldChild::spawn(&exe, &args.command)?;
            (exe, Target::Child(child))
        }
        (None, None) => bail!("nothing to trace: give -p PID or a command after `--` (see --help)"),
    };
    let held = matches!(target, Target::Child(_));
    let tracee = Tracee::open(target.pid(), &exe, held)?;
    if args.mode == ModeArg::Budget {
        return run_budget(&args, &tracee, target);
    }
    let rec = record(
        &tracee,
        &mut target,
        Options {
            key_bytes: args.key_bytes,
            stacks: args.profile.wanted(),
            duration: args.duration,
        },
    )?;
    print_results(&args, &tracee, &rec)?;
    let status = target.exit_status(rec.exit_status);
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

/// Budget mode: the live loop until the target ends (or Ctrl-C, `--duration`), then its last
/// report; the exit status is the target's.
fn run_budget(args: &Args, tracee: &Tracee, mut target: Target) -> Result<ExitCode> {
    if args.profile.wanted() {
        bail!("--pprof and --folded need exact mode with run (leave out --mode budget)");
    }
    if !(args.overhead > 0.0 && args.overhead <= 100.0) {
        bail!("--overhead must be a percentage above 0 and at most 100");
    }
    let opts = LiveOptions {
        pid: tracee.pid,
        mode: crate::sampling::Mode::Budget,
        overhead: args.overhead,
        top: args.top,
        key_bytes: args.key_bytes,
        redact: args.redact,
        duration: args.duration,
        refresh: 1.0,
        stack: false,
        goroutine_ids: false,
    };
    let mut last = None;
    let mut release = || match &mut target {
        Target::Child(c) => c.release(),
        Target::Running(_) => Ok(()),
    };
    run_live_on(
        tracee,
        &opts,
        &mut release,
        &mut |_, _| {},
        &mut |_| {},
        &mut |r| {
            last = Some(r.report);
            Ok(true)
        },
    )?;
    let status = target.exit_status(None);
    if let Some(rep) = last {
        let lost = rep.lost_events;
        emit(args, &rep, lost)?;
        let by = rep
            .estimated_by
            .map(|c| format!(", extrapolated by the target's {}", c.describe()))
            .unwrap_or_default();
        eprintln!(
            "coverage {:.1} % (budget {} %){by}: counts are estimates ± their error bounds",
            rep.coverage * 100.0,
            args.overhead
        );
    }
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

/// The profiles asked for, the JSON report asked for, the table and warnings on stderr.
fn print_results(args: &Args, tracee: &Tracee, rec: &Recording) -> Result<()> {
    let binary = tracee.exe.display().to_string();
    if let Some(stacks) = &rec.stacks {
        let meta = crate::report::pprof::Meta {
            binary: binary.clone(),
            coverage: None,
            start: rec.started,
            duration: rec.elapsed,
            redact: args.redact,
        };
        args.profile.write(&tracee.bin, stacks, &meta)?;
    }
    let meta = report::Meta {
        pid: tracee.pid,
        binary,
        duration_s: rec.elapsed.as_secs_f64(),
        lost_events: rec.lost,
        lost_growths: rec.lost_growths,
        stack_check_reentries: rec.stack_check_reentries,
        aggregation: rec.aggregation,
        top: args.top,
        redact: args.redact,
        sampled: None,
    };
    let mut rep = report::build(&tracee.bin, &rec.counts, &meta);
    rep.ended = rec.ended.clone();
    emit(args, &rep, rec.lost)?;
    if let Some(why) = &rep.ended {
        eprintln!("ebpf-map-trace: {why}");
    }
    Ok(())
}

/// The JSON report asked for, the table and the lost-writes warning on stderr.
fn emit(args: &Args, rep: &report::Report, lost: u64) -> Result<()> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rep)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    eprint!("{}", table::render(rep));
    if lost > 0 {
        eprintln!("ebpf-map-trace: warning: {lost} writes were lost (ring buffer full): counts are lower bounds");
    }
    Ok(())
}
