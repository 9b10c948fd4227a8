//! Command-line interface: what the user typed (clap) and dispatch to one module per command.
mod args;
mod fleet;
mod inspect;
mod profile;
mod run;
mod serve;
mod top;
pub mod top_ui;
mod top_ui_driver;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Which keys of a running Go program's maps are written most, in which map, \
from which code and goroutine, and when maps grow - traced with eBPF uprobes, with no change to \
the Go program.";

const EXAMPLES: &str = "Examples:
  ebpf-map-trace inspect ./server              # what can be traced in this binary, no root needed
  ebpf-map-trace inspect -p $(pidof server) --json
  ebpf-map-trace inspect ./server --type 0x4a1b20 --pc 0x48f00c
  sudo ebpf-map-trace run -- ./server            # exact counts from start to exit
  sudo ebpf-map-trace run -p $(pidof server) --duration 10 --json report.json
  sudo ebpf-map-trace serve --binary /srv/app     # Prometheus metrics on 127.0.0.1:9464";

#[derive(Parser)]
#[command(name = "ebpf-map-trace", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(inspect::Args),
    Run(run::Args),
    Top(top::Args),
    Trace(trace::Args),
    Serve(serve::Args),
}

/// Parses arguments, runs the command, and turns any failure into one line on stderr.
pub fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if !matches!(cli.command, Command::Inspect(_)) {
        // Before any probe exists: a Ctrl-C or SIGTERM from here on ends with a clean detach.
        crate::pipeline::stop::stop_on_signals();
    }
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Top(args) => top::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ebpf-map-trace: error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The command line, or the exit code after `--help`/`--version` (printed in full on stdout) or
/// a usage error (one line on stderr, like every other failure; clap's own adds a blank line and
/// a hint).
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let what = what.join(" ");
            let what = what.strip_prefix("error: ").unwrap_or(&what);
            eprintln!("ebpf-map-trace: error: {what} (see --help)");
            Err(ExitCode::from(2))
        }
    }
}

/// An error and its causes on one line, without repeating a cause its parent already names.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// A closed stdout (`inspect … | head`, `trace … | head`) ends the process quietly, as it does for
/// other command-line tools: Rust ignores SIGPIPE, which turns the next print into a panic.
/// Probes are fd-owned links, so an end by SIGPIPE leaves none behind.
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions; it runs before any
    // other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
