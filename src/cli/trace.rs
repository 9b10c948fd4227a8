//! `trace`: a stream of individual map writes (time, pid, goroutine, map, key, call site), with
//! the goroutine's stack on request, filters, grows, and a rate limit that says what it hid.
//! With `--binary`, every process of the executable (`fleet`), merged into one stream and limit.
use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::args::LiveArgs;
use crate::decode::internals::Growth;
use crate::gobin::GoBinary;
use crate::pipeline::watch::run_live;
use crate::report::site_of;
use crate::report::symbolize::Symbolizer;
use crate::sampling::Mode;

#[derive(clap::Args)]
#[command(
    about = "Stream individual map writes with their goroutine, key and call site (and stack)",
    after_help = "Examples:
  sudo ebpf-map-trace trace -p $(pidof server) --map 'map[string]*main.Session' --stack
  sudo ebpf-map-trace trace -p $(pidof server) --key user:42 --mode exact --json
  sudo ebpf-map-trace trace -p $(pidof server) --grows --max-rate 50
  sudo ebpf-map-trace trace --binary /srv/app --json          # every process of /srv/app"
)]
pub struct Args {
    #[command(flatten)]
    live: LiveArgs,
    /// Only writes to maps whose type contains this text (e.g. `map[string]int`).
    #[arg(long = "map", value_name = "TYPE")]
    map_filter: Option<String>,
    /// Only writes of this key (as printed).
    #[arg(long = "key", value_name = "KEY")]
    key_filter: Option<String>,
    /// Only writes from call sites whose function or file:line contains this text.
    #[arg(long = "site", value_name = "TEXT")]
    site_filter: Option<String>,
    /// Show each write's goroutine stack (frame-pointer walk, symbolized).
    #[arg(long)]
    stack: bool,
    /// Also show map growth events.
    #[arg(long)]
    grows: bool,
    /// Lines per second at most; writes beyond are counted and the count is reported.
    #[arg(long, default_value_t = 1000)]
    max_rate: u64,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Frame {
    function: String,
    file: String,
    line: u32,
}

#[derive(Serialize)]
struct WriteLine<'a> {
    event: &'static str,
    t_s: f64,
    pid: u32,
    goid: u64,
    map: &'a str,
    map_id: String,
    key: &'a str,
    function: String,
    file: String,
    line: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stack: Vec<Frame>,
}

/// What every process's loop shares: the clock lines are timed by, and the `--max-rate` limit
/// over the merged stream.
struct Stream {
    started: Instant,
    limit: Mutex<Limit>,
    /// The least coverage of any process's loop.
    coverage: Mutex<f64>,
}

#[derive(Default)]
struct Limit {
    second: u64,
    shown_this_second: u64,
    hidden: u64,
}

pub fn run(mut args: Args) -> Result<ExitCode> {
    args.live.stack = args.stack;
    args.live.goroutine_ids = true;
    let stream = Stream {
        started: Instant::now(),
        limit: Mutex::default(),
        coverage: Mutex::new(1.0),
    };
    match args.live.pid {
        Some(pid) => trace_process(&args, pid, &stream)?,
        None => {
            if let Some(binary) = &args.live.binary {
                super::fleet::require_running(binary)?;
            }
            crate::probe::load::preflight()?;
            super::fleet::follow(
                &args.live,
                |pid| trace_process(&args, pid, &stream),
                |_| {},
                |_| {},
            )?
        }
    }
    let hidden = lock(&stream.limit).hidden;
    eprintln!(
        "ebpf-map-trace: {hidden} writes not shown (over --max-rate {}/s); probes attached {:.1} % of the time ({} mode)",
        args.max_rate,
        *lock(&stream.coverage) * 100.0,
        if args.live.mode() == Mode::Exact { "exact" } else { "budget" }
    );
    Ok(ExitCode::SUCCESS)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Streams one process's writes into `stream` until it ends (or the trace does).
fn trace_process(args: &Args, pid: u32, stream: &Stream) -> Result<()> {
    // Symbolization needs the binary; open it once more here (cheap) for the event hook.
    let bin = GoBinary::open(&crate::probe::process::exe_of(pid)?)?;
    let started = stream.started;
    let mut names = Symbolizer::new(&bin);
    let mut on_event = |ev: &crate::decode::records::WriteEvent, key: &crate::decode::keys::Key| {
        let map = names.map_type(ev.map_type).to_string();
        if args
            .map_filter
            .as_ref()
            .is_some_and(|f| !map.contains(f.as_str()))
        {
            return;
        }
        // With --redact the key is shown (and may be filtered) only as its hash.
        let shown_key = if args.live.redact {
            crate::report::redact(&key.text)
        } else {
            key.text.clone()
        };
        if args.key_filter.as_ref().is_some_and(|f| *f != shown_key) {
            return;
        }
        let site = site_of(&bin, ev.site);
        if let Some(f) = &args.site_filter {
            if !site.function.contains(f.as_str())
                && !format!("{}:{}", site.file, site.line).contains(f.as_str())
            {
                return;
            }
        }
        let t = started.elapsed().as_secs_f64();
        {
            let mut l = lock(&stream.limit);
            if t as u64 != l.second {
                l.second = t as u64;
                l.shown_this_second = 0;
            }
            if l.shown_this_second >= args.max_rate {
                l.hidden += 1;
                return;
            }
            l.shown_this_second += 1;
        }
        let stack: Vec<Frame> = ev
            .caller_stack()
            .map(|ret| {
                let s = site_of(&bin, ret);
                Frame {
                    function: s.function,
                    file: s.file,
                    line: s.line,
                }
            })
            .collect();
        let line = WriteLine {
            event: "write",
            t_s: t,
            pid: ev.pid,
            goid: ev.goid,
            map: &map,
            map_id: crate::report::map_id(ev.map_ptr),
            key: &shown_key,
            function: site.function,
            file: site.file,
            line: site.line,
            stack,
        };
        // One line (and its stack) at a time on the merged stream.
        let mut out = std::io::stdout().lock();
        if args.json {
            let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
        } else {
            let _ = writeln!(
                out,
                "{:>10.6} {:>7} g{:<6} {} {:?}  {} {}:{}",
                line.t_s,
                line.pid,
                line.goid,
                line.map,
                line.key,
                line.function,
                line.file,
                line.line
            );
            for f in &line.stack {
                let _ = writeln!(out, "{:>28} {} {}:{}", "", f.function, f.file, f.line);
            }
        }
    };
    let mut on_grow = |g: &crate::decode::records::GrowEvent| {
        if !args.grows {
            return;
        }
        let growth = Growth::from_event(g);
        if args.json {
            #[derive(Serialize)]
            struct GrowLine<'a> {
                event: &'static str,
                pid: u32,
                map_id: String,
                #[serde(flatten)]
                growth: &'a Growth,
            }
            let l = GrowLine {
                event: "grow",
                pid,
                map_id: crate::report::map_id(g.map_ptr),
                growth: &growth,
            };
            println!("{}", serde_json::to_string(&l).unwrap_or_default());
        } else {
            println!(
                "{:>10.6} {:>7} grow {:#x}: {} {}→{} {} at len {}, {:.1} µs",
                started.elapsed().as_secs_f64(),
                pid,
                g.map_ptr,
                growth.kind,
                growth.old_capacity,
                growth.new_capacity,
                growth.unit,
                growth.len,
                growth.duration_ns as f64 / 1000.0
            );
        }
    };
    run_live(
        &args.live.options(pid),
        &mut on_event,
        &mut on_grow,
        &mut |r| {
            let mut c = lock(&stream.coverage);
            *c = c.min(r.report.coverage);
            Ok(true)
        },
    )
}
