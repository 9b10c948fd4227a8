//! Options every live command (`top`, `trace`, `serve`) takes, as typed, and what they become:
//! the live loop's [`Options`] for one process.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::pipeline::watch::Options;
use crate::probe::process;
use crate::sampling::Mode;

/// `--mode` as typed (the sampling layer's [`Mode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Probes always attached: every write counted.
    Exact,
    /// Probes attached part of the time to keep the target's slowdown under --overhead.
    Budget,
}

/// Options every live command takes.
#[derive(clap::Args, Clone, Debug)]
pub struct LiveArgs {
    /// Process to watch.
    #[arg(
        short,
        long,
        required_unless_present = "binary",
        conflicts_with = "binary"
    )]
    pub pid: Option<u32>,
    /// Watch every process of this executable, now and later (`--pprof`/`--folded`: the oldest).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// exact: every write; budget: sampled within --overhead.
    #[arg(long, value_enum, default_value_t = ModeArg::Budget)]
    pub mode: ModeArg,
    /// Budget mode: allowed slowdown of the target, in percent.
    #[arg(long, default_value_t = 1.0, value_name = "PERCENT")]
    pub overhead: f64,
    /// Keys shown per map.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Bytes of each key captured (at most 256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub key_bytes: u32,
    /// Show keys only as hashes.
    #[arg(long)]
    pub redact: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub refresh: f64,
    /// Capture goroutine stacks (set by `trace --stack`).
    #[arg(skip)]
    pub stack: bool,
    /// Capture each write's goroutine id (set by `trace`).
    #[arg(skip)]
    pub goroutine_ids: bool,
}

/// Resolves `-p PID | --binary PATH` to one running process.
pub fn resolve_pid(pid: Option<u32>, binary: Option<&Path>) -> Result<u32> {
    if let Some(pid) = pid {
        process::exe_of(pid)?;
        return Ok(pid);
    }
    let binary = binary.context("give -p PID or --binary PATH")?;
    let pids = process::processes_of(binary)?;
    match pids.as_slice() {
        [] => bail!(
            "no running process of {}{}",
            binary.display(),
            process::uninspectable_note()
        ),
        [p] => Ok(*p),
        [p, ..] => {
            eprintln!(
                "ebpf-map-trace: {} processes run {}; watching the oldest, {p} (-p to choose)",
                pids.len(),
                binary.display()
            );
            Ok(*p)
        }
    }
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Exact => Mode::Exact,
            ModeArg::Budget => Mode::Budget,
        }
    }
}

impl LiveArgs {
    pub fn mode(&self) -> Mode {
        self.mode.into()
    }

    /// The live loop's options for process `pid`.
    pub fn options(&self, pid: u32) -> Options {
        Options {
            pid,
            mode: self.mode(),
            overhead: self.overhead,
            top: self.top,
            key_bytes: self.key_bytes,
            redact: self.redact,
            duration: self.duration,
            refresh: self.refresh,
            stack: self.stack,
            goroutine_ids: self.goroutine_ids,
        }
    }
}
