//! `serve`: the agent. Traces one process (`-p`) or every process of an executable (`--binary`,
//! see `fleet`) with the live loop (budget mode by default) and serves Prometheus metrics at
//! `/metrics`, the hot-key report at `/hotkeys` and `/healthz` until Ctrl-C or SIGTERM.
use std::process::ExitCode;
use std::sync::Arc;

use parking_lot::Mutex;

use anyhow::Result;

use super::args::LiveArgs;
use crate::export::http::{Agent, HttpServer, Shared};
use crate::export::metrics::{Exporter, KeyLabel};
use crate::export::web_config::{Watch, WebConfig};
use crate::pipeline::watch::run_live;
use crate::report::merge::Latest;

#[derive(clap::Args)]
#[command(
    about = "Agent: Prometheus metrics (/metrics) and the hot-key report (/hotkeys) over HTTP",
    after_help = "Examples:
  sudo ebpf-map-trace serve -p $(pidof server)                  # http://127.0.0.1:9464/metrics
  sudo ebpf-map-trace serve --binary /srv/app --listen 0.0.0.0:9464   # every process of /srv/app
  sudo ebpf-map-trace serve --binary /srv/app --listen 0.0.0.0:9464 --web.config.file web.yml
  curl -s localhost:9464/hotkeys | jq '.maps[0].top_keys'

Key values stay on the host unless asked: on any --listen but loopback (127.0.0.0/8, ::1)
/hotkeys and the metrics show keys as hashes only, unless --expose-keys is given.

The web config file is the Prometheus exporters' (exporter-toolkit) format:
  tls_server_config:
    cert_file: server.crt
    key_file: server.key
    # client_auth_type: RequireAndVerifyClientCert   # with client_ca_file: ca.crt
  basic_auth_users:
    prometheus: $2y$10$...      # bcrypt hash: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
)]
pub struct Args {
    #[command(flatten)]
    pub live: LiveArgs,
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: String,
    /// How hot keys are labelled in metrics: hash (key_hash only) or value (also key="...";
    /// on a non-loopback --listen only with --expose-keys).
    #[arg(long, value_enum, default_value_t = KeyLabelArg::Hash)]
    pub metrics_key_label: KeyLabelArg,
    /// Serve key values on a non-loopback --listen too (by default they are hashed there).
    #[arg(long, conflicts_with = "redact")]
    pub expose_keys: bool,
    /// TLS and basic authentication, in the exporter-toolkit web config format (YAML).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,
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

pub fn run(mut args: Args) -> Result<ExitCode> {
    args.live.redact |= keys_hidden(&args)?;
    let web = match &args.web_config_file {
        Some(f) => WebConfig::load(f)?,
        None => WebConfig::none(),
    };
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
        reports: Latest::default(),
    }));
    let scheme = web.scheme();
    let reload = args.web_config_file.as_deref().map(Watch::new);
    let http = HttpServer::start(&args.listen, web, reload, agent.clone())?;
    eprintln!("ebpf-map-trace: serving {scheme}://{}/metrics", args.listen);
    let result = match args.live.pid {
        Some(pid) => {
            agent.lock().metrics.set_targets(1);
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
            let mut a = agent.lock();
            a.metrics.retire(pid);
            a.reports.retire(pid);
        },
        |running| agent.lock().metrics.set_targets(running),
    )
}

/// Whether keys must be served as hashes only although `--redact` was not given: on a listen
/// address other hosts can reach, unless `--expose-keys`. Asking there for key values as
/// metric labels without `--expose-keys` is an error rather than quietly hashed.
fn keys_hidden(args: &Args) -> Result<bool> {
    if args.expose_keys || is_loopback(&args.listen) {
        return Ok(false);
    }
    anyhow::ensure!(
        args.metrics_key_label != KeyLabelArg::Value || args.live.redact,
        "--metrics-key-label value on --listen {} would publish key values beyond this host: \
         add --expose-keys to allow it",
        args.listen
    );
    Ok(true)
}

/// Whether `listen` (`host:port`) is reachable only from this host: every address it resolves
/// to is loopback (127.0.0.0/8, ::1). Unresolvable counts as not loopback.
pub fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Runs the live loop on one process, publishing every refresh, until it ends.
fn watch(live: &LiveArgs, pid: u32, agent: &Shared) -> Result<()> {
    let origin = crate::probe::container::origin_of(pid);
    {
        let mut a = agent.lock();
        a.metrics.set_origin(pid, &origin);
        a.reports.set_origin(pid, origin);
    }
    run_live(&live.options(pid), &mut |_, _| {}, &mut |_| {}, &mut |r| {
        let mut a = agent.lock();
        a.metrics.update(pid, &r);
        a.reports.update(pid, r.report);
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_is_127_slash_8_and_ipv6_one_only() {
        for l in [
            "127.0.0.1:9464",
            "127.1.2.3:1",
            "[::1]:9464",
            "localhost:9464",
        ] {
            assert!(is_loopback(l), "{l}");
        }
        for l in [
            "0.0.0.0:9464",
            "[::]:9464",
            "10.0.0.1:9464",
            "[::ffff:127.0.0.1]:1",
            "x",
        ] {
            assert!(!is_loopback(l), "{l}");
        }
    }
}
