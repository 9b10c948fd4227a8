//! `run`: exact tracing of a command from its first instruction (`run -- CMD`), or of a running
//! process (`run -p PID`) until Ctrl-C, `--duration` or its exit; then the report.
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::profile::ProfileArgs;
use crate::decode::internals::GrowthMatcher;
use crate::decode::keys::{plans_for_binary, Decoders};
use crate::decode::records::Record;
use crate::gobin::GoBinary;
use crate::hotkeys::exact::ExactCounts;
use crate::hotkeys::stacks::StackCounts;
use crate::pipeline::stop::stop_requested;
use crate::probe::launch::{resolve_command, HeldChild};
use crate::probe::load::{Load, DEFAULT_RING_BYTES};
use crate::probe::process::{process_ended, ExecWatch};
use crate::probe::session::Session;
use crate::report::{self, table};

#[derive(clap::Args)]
#[command(
    about = "Count every map write of a Go program exactly, then print its hot keys",
    after_help = "Examples:
  ebpf-map-trace run -- ./server -port 8080      # trace from the first instruction to exit
  ebpf-map-trace run -p $(pidof server) --duration 10 --json report.json
  ebpf-map-trace run --top 20 --key-bytes 128 -- ./bench"
)]
pub struct Args {
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

/// What the ring-buffer callbacks build.
#[derive(Default)]
struct Intake {
    counts: ExactCounts,
    decoders: Decoders,
    growth: GrowthMatcher,
    /// Per goroutine stack, with --pprof/--folded.
    stacks: Option<StackCounts>,
}

enum Target {
    Child(HeldChild),
    Running(u32),
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.profile.check_writable()?;
    let (exe, mut target) = match (args.pid, args.command.first()) {
        (Some(pid), _) => (crate::probe::process::exe_of(pid)?, Target::Running(pid)),
        (None, Some(cmd)) => {
            let exe = resolve_command(cmd)?;
            (
                exe,
                Target::Child(HeldChild::spawn(&resolve_command(cmd)?, &args.command)?),
            )
        }
        (None, None) => bail!("nothing to trace: give -p PID or a command after `--` (see --help)"),
    };
    let pid = match &target {
        Target::Child(c) => c.pid,
        Target::Running(p) => *p,
    };
    // Before anything else: an exec from here on is noticed.
    let mut watch = ExecWatch::new(pid, &exe, matches!(target, Target::Child(_)))?;
    let bin = GoBinary::open(&exe).with_context(|| exe.display().to_string())?;
    let types = bin.types();
    let plans = types.as_ref().map(plans_for_binary).unwrap_or_default();
    let mut storage = MaybeUninit::uninit();
    let mut session = Session::start(
        &mut storage,
        &bin,
        &exe,
        &Load {
            pid,
            key_bytes: args.key_bytes,
            stack: args.profile.wanted(),
            timestamps: false,
            goroutine_ids: false,
            goid_offset: bin.goid_offset().map_or(0, |g| g.offset as u32),
            grows: true,
            ring_bytes: DEFAULT_RING_BYTES,
        },
        &plans,
    )?;

    let state = RefCell::new(Intake {
        stacks: args.profile.wanted().then(StackCounts::exact),
        ..Default::default()
    });
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&session.skel.maps.events, |data: &[u8]| {
            match Record::parse(data) {
                Some(Record::GrowStart(g)) => state.borrow_mut().growth.on_grow_start(&g),
                Some(Record::Grow(g)) => state.borrow_mut().growth.on_grow(&g),
                Some(Record::Write(ev)) => {
                    let mut st = state.borrow_mut();
                    let Intake {
                        counts,
                        decoders,
                        growth,
                        stacks,
                    } = &mut *st;
                    let key = decoders.decode(&ev, types.as_ref());
                    growth.on_write(&ev, &key.text);
                    if let Some(s) = stacks {
                        s.add(&ev, &key);
                    }
                    counts.add(
                        &ev,
                        key,
                        ev.flags.has(crate::bpf::EventFlag::EV_READ_FAILED),
                    );
                }
                None => {}
            }
            0
        })
        .context("setting up the ring buffer")?;
    let ring = builder.build().context("setting up the ring buffer")?;

    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    if let Target::Child(c) = &mut target {
        c.release()?;
    }
    let deadline = args
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut exit_status = None;
    let mut ended = None;
    loop {
        ring.consume().context("reading events")?;
        if stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(new) = watch.exec_target() {
            ended = Some(format!(
                "the target (pid {pid}) executed another program ({}): the trace ended there",
                new.display()
            ));
            break;
        }
        match &target {
            Target::Child(c) => {
                if let Some(s) = c.try_wait() {
                    exit_status = Some(s);
                    break;
                }
            }
            Target::Running(p) => {
                if process_ended(*p) {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed().as_secs_f64();
    ring.consume().context("reading events")?;
    session.detach();
    ring.consume().context("reading events")?;
    let counters = session.counters();
    drop(ring);

    let Intake {
        mut counts,
        mut growth,
        stacks,
        ..
    } = state.into_inner();
    if let Some(stacks) = &stacks {
        args.profile.write(
            &bin,
            stacks,
            &crate::report::pprof::Meta {
                binary: exe.display().to_string(),
                coverage: None,
                start: started_wall,
                duration: Duration::from_secs_f64(elapsed),
                redact: args.redact,
            },
        )?;
    }
    growth.finish();
    counts.add_growth(growth.resolved);
    let mut rep = report::build(
        &bin,
        &counts,
        &report::Meta {
            pid,
            binary: exe.display().to_string(),
            duration_s: elapsed,
            lost_events: counters.lost,
            top: args.top,
            redact: args.redact,
        },
    );
    rep.ended = ended;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rep)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    eprint!("{}", table::render(&rep));
    if let Some(why) = &rep.ended {
        eprintln!("ebpf-map-trace: {why}");
    }
    if counters.lost > 0 {
        eprintln!("ebpf-map-trace: warning: {} writes were lost (ring buffer full): counts are lower bounds", counters.lost);
    }
    let status = match (&target, exit_status) {
        (_, Some(s)) => s,
        (Target::Child(c), None) => c.wait(),
        (Target::Running(_), None) => 0,
    };
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}
