//! `serve`: the agent. Traces one process (`-p`) or every process of an executable (`--binary`,
//! see `fleet`) with the live loop (budget mode by default) and serves Prometheus metrics at
//! `/metrics`, the hot-key report at `/hotkeys` and `/healthz` until Ctrl-C or SIGTERM.
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::live::{run_live, LiveArgs};
use super::signals::install_signal_handlers;
use crate::export::hotkeys::Snapshots;
use crate::export::http::{Agent, HttpServer, Shared};
use crate::export::metrics::{Exporter, KeyLabel};

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
    #[arg(long, value_enum, default_value_t = KeyLabel::Hash)]
    pub metrics_key_label: KeyLabel,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(pid) = args.live.pid {
        crate::target::exe_of(pid)?;
    }
    if let Some(b) = &args.live.binary {
        // The path may exist only inside containers (see `target::processes_of`): absolute.
        anyhow::ensure!(
            b.is_absolute() || b.exists(),
            "cannot read {}: give the executable's absolute path",
            b.display()
        );
    }
    crate::probe::session::preflight()?;
    let agent: Shared = Arc::new(Mutex::new(Agent {
        metrics: Exporter::new(args.live.top, args.metrics_key_label),
        hotkeys: Snapshots::default(),
    }));
    let http = HttpServer::start(&args.listen, agent.clone())?;
    eprintln!("ebpf-map-trace: serving http://{}/metrics", args.listen);
    install_signal_handlers();
    let result = match args.live.pid {
        Some(pid) => {
            lock(&agent).metrics.set_targets(1);
            watch(&args.live, pid, &agent)
        }
        None => super::fleet::watch_binary(&args.live, &agent),
    };
    drop(http);
    result.map(|()| ExitCode::SUCCESS)
}

/// Runs the live loop on one process, publishing every refresh, until it ends.
pub fn watch(live: &LiveArgs, pid: u32, agent: &Shared) -> Result<()> {
    let args = super::fleet::one_process(live, pid);
    run_live(&args, &mut |_, _| {}, &mut |_| {}, &mut |r| {
        let mut a = lock(agent);
        a.metrics.update(pid, &r);
        a.hotkeys.update(pid, &r.report);
        Ok(true)
    })
}

pub fn lock(agent: &Shared) -> std::sync::MutexGuard<'_, Agent> {
    agent.lock().unwrap_or_else(|e| e.into_inner())
}
