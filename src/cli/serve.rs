//! `serve`: the agent. Traces one process (`-p`) or every process of an executable (`--binary`,
//! see `fleet`) with the live loop (budget mode by default) and serves Prometheus metrics at
//! `/metrics`, the hot-key report at `/hotkeys` and `/healthz` until Ctrl-C or SIGTERM.
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::args::LiveArgs;
use crate::export::hotkeys::Snapshots;
use crate::export::http::{Agent, HttpServer, Shared};
use crate::export::metrics::{Exporter, KeyLabel};
use crate::pipeline::watch::run_live;

#[derive(clap::Args)]
#[command(
    about = "Agent: Prometheus metrics (/metrics) and the hot-key report (/hotkeys) over HTTP",
    after_help = "Examples:
  sudo ebpf-map-trace serve -p $(pidof server)                  # http://127.0.0.1:9464/metrics
  sudo ebpf-map-trace serve --binary /srv/app --listen 0.0.0.0:9464   # every process of /srv/app
  curl -s localhost:9464/hotkeys | jq '.maps[0].top_keys'"
)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: String,
    /// How hot keys are labelled in metrics: hash (key_hash only) or value (also key="...").
    #[arg(long, value_enum, default_value_t = KeyLabelArg::Hash)]
    pub metrics_key_label: KeyLabelArg,
}

/// `--metrics-key-label` as typed (the exporter's [`KeyLabel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyLabelArg {
    /// Only `key_hash` (FNV-1a 64 of the key text, as `--redact` shows it).
    Hash,
    /// `key_hash` and the key itself (`key`): more cardinality, and key values leave the host.
    Value,
}

impl From<KeyLabelArg> for KeyLabel {
    fn from(k: KeyLabelArg) -> KeyLabel {
        match k {
            KeyLabelArg::Hash => KeyLabel::Hash,
            KeyLabelArg::Value => KeyLabel::Value,
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(pid) = args.live.pid {
        crate::probe::process::exe_of(pid)?;
    }
    if let Some(b) = &args.live.binary {
        // The path may exist only inside containers (see `probe::process::processes_of`): absolute.
        anyhow::ensure!(
            b.is_absolute() || b.exists(),
            "cannot read {}: give the executable's absolute path",
            b.display()
        );
    }
    crate::probe::load::preflight()?;
    let agent: Shared = Arc::new(Mutex::new(Agent {
        metrics: Exporter::new(args.live.top, args.metrics_key_label.into()),
        hotkeys: Snapshots::default(),
    }));
    let http = HttpServer::start(&args.listen, agent.clone())?;
    eprintln!("ebpf-map-trace: serving http://{}/metrics", args.listen);
    let result = match args.live.pid {
        Some(pid) => {
            lock(&agent).metrics.set_targets(1);
            watch(&args.live, pid, &agent)
        }
        None => watch_binary(&args.live, &agent),
    };
    drop(http);
    result.map(|()| ExitCode::SUCCESS)
}

/// Watches every process of `live.binary` (see `fleet`), publishing into `agent`.
fn watch_binary(live: &LiveArgs, agent: &Shared) -> Result<()> {
    super::fleet::follow(
        live,
        |pid| watch(live, pid, agent),
        |pid| {
            let mut a = lock(agent);
            a.metrics.retire(pid);
            a.hotkeys.retire(pid);
        },
        |running| lock(agent).metrics.set_targets(running),
    )
}

/// Runs the live loop on one process, publishing every refresh, until it ends.
fn watch(live: &LiveArgs, pid: u32, agent: &Shared) -> Result<()> {
    run_live(&live.options(pid), &mut |_, _| {}, &mut |_| {}, &mut |r| {
        let mut a = lock(agent);
        a.metrics.update(pid, &r);
        a.hotkeys.update(pid, &r.report);
        Ok(true)
    })
}

fn lock(agent: &Shared) -> std::sync::MutexGuard<'_, Agent> {
    agent.lock().unwrap_or_else(|e| e.into_inner())
}
