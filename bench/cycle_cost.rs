//! What one attach/detach cycle of budget mode costs the target beyond its probe hits: the
//! kernel rewrites the probed text pages (a copy of each page with the int3 installed, the
//! original put back on detach) under the target's mmap lock, with TLB flushes on the CPUs that
//! run it. A Go workload hashing with no map writes (`tests/go/workload -rate 0.001`) runs for
//! SECONDS while the tracer's probes (the session budget mode loads, gate closed) are detached
//! and re-attached CYCLES times a second; its own CPU time per hash against the same at 0
//! cycles/s (probes attached all along), in interleaved rounds. Prints per rate the median and
//! range of the CPU per hash relative to 0 cycles/s, and the CPU each cycle cost the target.
//!
//! Usage: cargo bench --bench cycle_cost -- WORKLOAD ROUNDS SECONDS [RATE...]   (default 0 5 20)
use std::io::{BufRead, BufReader};
use std::mem::MaybeUninit;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_map_trace::pipeline::tracee::{Capture, Tracee};
use ebpf_map_trace::probe::load::MIN_RING_BYTES;

/// One run: (CPU ns per hash, hashes, cycles done).
fn run(workload: &Path, seconds: f64, rate: f64) -> Result<(f64, u64, u64)> {
    let mut child = Command::new(workload)
        .args(["-wait", "-rate", "0.001", "-duration", &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the workload")?;
    let mut out = BufReader::new(child.stdout.take().context("workload stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?; // {"event":"ready"}
    let pid = child.id();
    let tracee = Tracee::open(pid, workload, false)?;
    let mut storage = MaybeUninit::uninit();
    let capture = Capture {
        sampled: true,
        ring_bytes: MIN_RING_BYTES,
        ..Capture::default()
    };
    let mut session = tracee.session(&mut storage, capture)?;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let t0 = Instant::now();
    let mut cycles = 0;
    while child.try_wait()?.is_none() {
        if rate > 0.0 {
            let next = t0 + Duration::from_secs_f64((cycles + 1) as f64 / rate);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            session.detach();
            session.attach()?;
            cycles += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(session);
    let mut done = String::new();
    for l in out.lines() {
        let l = l?;
        if l.contains("\"done\"") {
            done = l;
        }
    }
    let v: serde_json::Value = serde_json::from_str(&done).context("the workload's done line")?;
    let hashes = v["hashes"].as_u64().unwrap_or(0);
    let cpu_ns = v["cpu_ns"].as_f64().unwrap_or(0.0);
    if hashes == 0 {
        bail!("the workload hashed nothing: {done}");
    }
    Ok((cpu_ns / hashes as f64, hashes, cycles))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 3 {
        bail!("usage: cargo bench --bench cycle_cost -- WORKLOAD ROUNDS SECONDS [RATE...]");
    }
    let workload = Path::new(&args[0]);
    let rounds: usize = args[1].parse()?;
    let seconds: f64 = args[2].parse()?;
    let mut rates: Vec<f64> = args[3..]
        .iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()?;
    if rates.is_empty() {
        rates = vec![0.0, 5.0, 20.0];
    }
    // Per round, per rate: CPU per hash, and cycles done.
    let mut per: Vec<Vec<(f64, u64, u64)>> = vec![Vec::new(); rates.len()];
    for round in 0..rounds {
        for (i, &r) in rates.iter().enumerate() {
            let res = run(workload, seconds, r)?;
            eprintln!("round {round} rate {r}: {res:?}");
            per[i].push(res);
        }
    }
    println!(
        "{} rounds of {seconds} s, interleaved; CPU per hash relative to {} cycles/s",
        rounds, rates[0]
    );
    println!("| cycles/s | CPU per hash, median (min–max) | CPU per cycle, median (min–max) |");
    println!("|---|---|---|");
    for (i, &r) in rates.iter().enumerate() {
        let mut rel = Vec::new();
        let mut per_cycle = Vec::new();
        for (round, &(ns, hashes, cycles)) in per[i].iter().enumerate() {
            let base = per[0][round].0;
            rel.push((ns / base - 1.0) * 100.0);
            if cycles > 0 {
                per_cycle.push((ns - base) * hashes as f64 / cycles as f64 / 1e3);
            }
        }
        let (lo, hi) = minmax(&rel);
        let rel_m = median(&mut rel);
        let cycle = if per_cycle.is_empty() {
            "–".to_string()
        } else {
            let (lo, hi) = minmax(&per_cycle);
            format!("{:.0} µs ({lo:.0}…{hi:.0})", median(&mut per_cycle))
        };
        println!("| {r} | {rel_m:+.2} % ({lo:+.2}…{hi:+.2}) | {cycle} |");
    }
    Ok(())
}

fn minmax(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
