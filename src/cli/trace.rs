//! `trace`: a stream of individual map operations — writes, deletes, clears (time, pid,
//! goroutine, op, map, key, call site) — with the goroutine's stack on request, filters, grows,
//! and a rate limit that says what it hid.
//! With `--binary`, every process of the executable (`fleet`), merged into one stream and limit.
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use parking_lot::Mutex;
use serde::Serialize;

use super::args::LiveArgs;
use crate::bpf::MapOp;
use crate::decode::internals::Growth;
use crate::decode::keys::Key;
use crate::decode::records::{GrowEvent, WriteEvent};
use crate::gobin::inline::SourceFrame;
use crate::gobin::GoBinary;
use crate::pipeline::watch::run_live;
use crate::probe::process::exe_of;
use crate::report::symbolize::Symbolizer;
use crate::report::{map_id, redact};

#[derive(clap::Args)]
#[command(
    about = "Stream individual map writes, deletes and clears with their goroutine, key and call site (and stack)",
    after_help = "Examples:
  sudo ebpf-map-trace trace -p $(pidof server) --map 'map[string]*main.Session' --stack
  sudo ebpf-map-trace trace -p $(pidof server) --key user:42 --mode exact --json
  sudo ebpf-map-trace trace -p $(pidof server) --op delete,clear   # who empties the cache?
  sudo ebpf-map-trace trace -p $(pidof server) --grows --max-rate 50
  sudo ebpf-map-trace trace --binary /srv/app --json          # every process of /srv/app"
)]
pub struct Args {
    #[command(flatten)]
    live: LiveArgs,
    /// Only operations on maps whose type contains this text (e.g. `map[string]int`).
    #[arg(long = "map", value_name = "TYPE")]
    map_filter: Option<String>,
    /// Only operations on this key (as printed).
    #[arg(long = "key", value_name = "KEY")]
    key_filter: Option<String>,
    /// Only these operations (comma-separated: write, delete, clear; all by default).
    #[arg(long = "op", value_name = "OPS", value_delimiter = ',')]
    ops: Vec<Op>,
    /// Only operations from call sites whose function or file:line contains this text.
    #[arg(long = "site", value_name = "TEXT")]
    site_filter: Option<String>,
    /// Show each operation's goroutine stack (frame-pointer walk, symbolized).
    #[arg(long)]
    stack: bool,
    /// Also show map growth events.
    #[arg(long)]
    grows: bool,
    /// Lines per second at most; operations beyond are counted and the count is reported.
    #[arg(long, default_value_t = 1000)]
    max_rate: u64,
    /// JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// What a map operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Write,
    Delete,
    Clear,
}

impl Op {
    fn of(op: MapOp) -> Op {
        match op {
            MapOp::OP_DELETE => Op::Delete,
            MapOp::OP_CLEAR => Op::Clear,
            _ => Op::Write,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Delete => "delete",
            Op::Clear => "clear",
        }
    }
}

/// One map operation as printed: the operating frame (the innermost of its call site), and
/// with `--stack` the goroutine's whole stack, innermost first (inlined calls expanded), as
/// profiles show it; the text form prints the operating frame once, then the frames above it.
/// `event` is the operation too (`write`, `delete`, `clear`), as is `op`.
#[derive(Serialize)]
struct WriteLine {
    event: &'static str,
    op: Op,
    t_s: f64,
    pid: u32,
    goid: u64,
    map: String,
    map_id: String,
    key: String,
    #[serde(flatten)]
    site: SourceFrame,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stack: Vec<SourceFrame>,
}

/// What every process's loop shares: the clock lines are timed by, and the `--max-rate` limit
/// over the merged stream.
struct Stream {
    started: Instant,
    limit: Mutex<Limit>,
    /// The least coverage of any process's loop.
    coverage: Mutex<f64>,
}

/// `--max-rate`: lines shown this second, and operations hidden in all (writes, deletes,
/// clears).
#[derive(Default)]
struct Limit {
    second: u64,
    shown_this_second: u64,
    hidden: [u64; 3],
}

impl Limit {
    /// Whether a line at `t_s` seconds may be shown (else it is counted as hidden).
    fn admit(&mut self, t_s: f64, max_rate: u64, op: Op) -> bool {
        if t_s as u64 != self.second {
            self.second = t_s as u64;
            self.shown_this_second = 0;
        }
        if self.shown_this_second >= max_rate {
            self.hidden[op as usize] += 1;
            return false;
        }
        self.shown_this_second += 1;
        true
    }
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
    let [writes, deletes, clears] = stream.limit.lock().hidden;
    eprintln!(
        "ebpf-map-trace: {writes} writes not shown ({deletes} deletes, {clears} clears too; over --max-rate {}/s); probes attached {:.1} % of the time ({} mode)",
        args.max_rate,
        *stream.coverage.lock() * 100.0,
        args.live.mode()
    );
    Ok(ExitCode::SUCCESS)
}

/// Streams one process's writes into `stream` until it ends (or the trace does).
fn trace_process(args: &Args, pid: u32, stream: &Stream) -> Result<()> {
    // Symbolization needs the binary; open it once more here (cheap) for the event hook.
    let bin = GoBinary::open(&exe_of(pid)?)?;
    let mut sym = Symbolizer::new(&bin);
    let mut on_event = |ev: &WriteEvent, key: &Key| {
        if let Some(line) = write_line(args, &mut sym, stream, ev, key) {
            print_write(args.json, &line);
        }
    };
    let mut on_grow = |g: &GrowEvent| {
        if args.grows {
            print_grow(args.json, pid, stream.started, g);
        }
    };
    run_live(
        &args.live.options(pid),
        &mut on_event,
        &mut on_grow,
        &mut |r| {
            let mut c = stream.coverage.lock();
            *c = c.min(r.report.coverage);
            Ok(true)
        },
    )
}

/// The line for a write, unless a filter or the rate limit hides it.
fn write_line(
    args: &Args,
    sym: &mut Symbolizer,
    stream: &Stream,
    ev: &WriteEvent,
    key: &Key,
) -> Option<WriteLine> {
    let op = Op::of(ev.op);
    if !args.ops.is_empty() && !args.ops.contains(&op) {
        return None;
    }
    let map = sym.map_type(ev.map_type).to_string();
    if args
        .map_filter
        .as_ref()
        .is_some_and(|f| !map.contains(f.as_str()))
    {
        return None;
    }
    // With --redact the key is shown (and may be filtered) only as its hash.
    let shown_key = if args.live.redact {
        redact(&key.text)
    } else {
        key.text.clone()
    };
    if args.key_filter.as_ref().is_some_and(|f| *f != shown_key) {
        return None;
    }
    let site = sym.call(ev.site).site_frame(ev.map_type).clone();
    if let Some(f) = &args.site_filter {
        let at = format!("{}:{}", site.file, site.line);
        if !site.function.contains(f.as_str()) && !at.contains(f.as_str()) {
            return None;
        }
    }
    let t_s = stream.started.elapsed().as_secs_f64();
    if !stream.limit.lock().admit(t_s, args.max_rate, op) {
        return None;
    }
    let stack = sym.stack(ev.caller_stack());
    Some(WriteLine {
        event: op.name(),
        op,
        t_s,
        pid: ev.pid,
        goid: ev.goid,
        map,
        map_id: map_id(ev.map_ptr),
        key: shown_key,
        site,
        stack,
    })
}

/// One write (and its stack) at a time on the merged stream.
fn print_write(json: bool, line: &WriteLine) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string(line).unwrap_or_default());
        return;
    }
    let _ = writeln!(
        out,
        "{:>10.6} {:>7} g{:<6} {:<6} {} {:?}  {} {}:{}",
        line.t_s,
        line.pid,
        line.goid,
        line.op.name(),
        line.map,
        line.key,
        line.site.function,
        line.site.file,
        line.site.line
    );
    // The writing frame is on the line above: the stack goes on from its caller.
    for f in line.stack.iter().skip(1) {
        let _ = writeln!(out, "{:>28} {} {}:{}", "", f.function, f.file, f.line);
    }
}

/// A growth of process `pid`.
fn print_grow(json: bool, pid: u32, started: Instant, g: &GrowEvent) {
    let growth = Growth::from_event(g);
    if json {
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
            map_id: map_id(g.map_ptr),
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
}
