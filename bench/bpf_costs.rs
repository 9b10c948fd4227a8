//! What a probed map write costs, on this host, side by side: a Go workload (tests/go/workload)
//! writing string keys in tight loops runs once per variant and round, the variants interleaved
//! over the rounds so that other load on the machine hits them alike. Variants:
//! - `none`: no probe;
//! - the programs of `bpf_costs.bpf.c` (`v0_empty` … `v10_slot_seq_s`), each adding one piece
//!   of a write probe to the one before, attached at the tracer's probe point;
//! - `records` and `kernel`: the tracer's own program loaded in this process, each write as a
//!   record (`trace`, stacks) or counted in the kernel (exact mode), the ring read as it fills;
//! - `tracer`: the tracer itself (`ebpf-map-trace run -p`), which also gives its own CPU time;
//! - `bpftrace`: the one-liner users write, `@[str(key)] = count()` at the function's entry.
//!
//! Per variant: the program's run time per event from the kernel's BPF stats, the workload's
//! CPU time per write (and what the probe adds over `v0_empty`, the empty program at the same
//! point), and for `tracer` its own CPU time per write. Medians over the rounds, with min..max.
//!
//! Usage: cargo bench --bench bpf_costs -- WORKLOAD TRACER ROUNDS WRITES [--args 'WORKLOAD ARGS']
//! [VARIANT...] (run through bench/bpf_costs.sh).
use std::io::{BufRead, BufReader};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_map_trace::decode::keys::plans_for_binary;
use ebpf_map_trace::gobin::{GoBinary, Role};
use ebpf_map_trace::probe::load::{default_slot_sets, Load, MAX_RING_BYTES};
use ebpf_map_trace::probe::session::Session;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, RingBufferBuilder, UprobeMultiOpts};

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/bpf_costs.skel.rs"));
}

/// The cost-breakdown programs, in the order they build on each other.
const STEPS: &[&str] = &[
    "v0_empty",
    "v1_base",
    "v2_ktime",
    "v2_cookie",
    "v3_site",
    "v3_site_sleep",
    "v3_site_cfu",
    "v3_site_64b",
    "v4_site_key",
    "v4_site_key_fp",
    "v5_site_key_hdr",
    "v6_ring",
    "v6_ring_nohdr",
    "v7_hash8",
    "v7_agg",
    "v8_agg_check",
    "v9_agg_task",
    "v9_agg_tid",
    "v10_slot",
    "v10_slot_seq",
    "v10_slot_seq_s",
];

/// What one run of one variant measured.
#[derive(Default, Clone)]
struct Sample {
    /// BPF run time per event.
    bpf_ns: Option<f64>,
    /// The workload's CPU time per write.
    cpu_ns: f64,
    /// The tracer's own CPU time per write while the workload wrote, and over its whole run
    /// (loading, attaching, the report included).
    tracer_ns: Option<f64>,
    tracer_total_ns: Option<f64>,
    /// Writes the tracer reported lost.
    lost: Option<u64>,
    /// Whether the tracer counted every write exactly (`tracer` only).
    exact: Option<bool>,
}

/// (run_time_ns, run_cnt) of a program from the kernel's BPF stats.
fn prog_stats(fd: impl AsFd) -> Result<(u64, u64)> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes that lives across the call, with no
    // pointer field set (the kernel fills in scalars only).
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    if ret != 0 {
        bail!(
            "bpf_prog_get_info_by_fd: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok((info.run_time_ns, info.run_cnt))
}

/// The workload started with -wait: its pid once it is ready.
struct Workload {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
    pid: u32,
}

impl Workload {
    fn start(bin: &Path, writes: u64, args: &[String]) -> Result<Workload> {
        let mut child = Command::new(bin)
            .args(["-wait", "-writes", &writes.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the workload")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut ready = String::new();
        lines.read_line(&mut ready)?;
        if !ready.contains("\"ready\"") {
            bail!("workload did not get ready: {ready}");
        }
        let pid = child.id();
        Ok(Workload { child, lines, pid })
    }

    /// Lets it write; its done line once it has finished, while `poll` runs meanwhile.
    fn finish(mut self, mut poll: impl FnMut()) -> Result<serde_json::Value> {
        // SAFETY: kill on our own child's pid, which has not been waited for yet.
        unsafe { libc::kill(self.pid as i32, libc::SIGUSR1) };
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            std::io::Read::read_to_string(&mut self.lines, &mut all).map(|_| all)
        });
        while !reader.is_finished() {
            poll();
            std::thread::sleep(Duration::from_millis(20));
        }
        poll();
        self.child.wait()?;
        let all = reader.join().expect("reader thread")?;
        let done = all
            .lines()
            .find(|l| l.contains("\"event\":\"done\""))
            .context("workload printed no done line")?;
        Ok(serde_json::from_str(done)?)
    }
}

struct Bench {
    bin: PathBuf,
    tracer: PathBuf,
    go: GoBinary,
    writes: u64,
    args: Vec<String>,
    /// File offset of mapassign_faststr's probe point.
    offset: usize,
}

impl Bench {
    fn total_writes(&self) -> u64 {
        let g = self
            .args
            .iter()
            .position(|a| a == "-goroutines")
            .and_then(|i| self.args.get(i + 1)?.parse().ok())
            .unwrap_or(1);
        self.writes * g
    }

    fn sample(&self, done: &serde_json::Value, stats: Option<(u64, u64)>) -> Sample {
        Sample {
            // No event counted: the probe never ran (not attached yet), nothing to divide.
            bpf_ns: stats.filter(|s| s.1 > 0).map(|(t, n)| t as f64 / n as f64),
            cpu_ns: done["cpu_ns"].as_f64().unwrap_or(0.0) / self.total_writes() as f64,
            ..Default::default()
        }
    }

    /// A cost-breakdown program attached at the probe point (`None`: no probe); `ring` is read
    /// as it fills.
    fn step(
        &self,
        prog: Option<&libbpf_rs::ProgramMut<'_>>,
        ring: &libbpf_rs::RingBuffer<'_>,
        at: Option<usize>,
    ) -> Result<Sample> {
        let w = Workload::start(&self.bin, self.writes, &self.args)?;
        let link: Option<Link> = match prog {
            Some(p) => Some(p.attach_uprobe_multi_with_opts(
                w.pid as i32,
                &self.bin,
                "",
                UprobeMultiOpts {
                    offsets: vec![at.unwrap_or(self.offset)],
                    cookies: vec![0],
                    ..Default::default()
                },
            )?),
            None => None,
        };
        let before = prog.map(prog_stats).transpose()?;
        let done = w.finish(|| {
            let _ = ring.consume();
        })?;
        let after = prog.map(prog_stats).transpose()?;
        drop(link);
        let stats = before.zip(after).map(|(b, a)| (a.0 - b.0, a.1 - b.1));
        Ok(self.sample(&done, stats))
    }

    /// The tracer's program in this process: each write as a record, or counted in the kernel.
    fn program(&self, aggregate: bool) -> Result<Sample> {
        let w = Workload::start(&self.bin, self.writes, &self.args)?;
        let plans = self
            .go
            .types()
            .map(|t| plans_for_binary(&t))
            .unwrap_or_default();
        let cfg = Load {
            pid: w.pid,
            key_bytes: 64,
            stack: false,
            timestamps: false,
            goroutine_ids: false,
            goid_offset: self.go.goid_offset().map_or(0, |g| g.offset as u32),
            grows: true,
            sync: true,
            sync_hashtrie: false, // set from the binary's points
            ring_bytes: MAX_RING_BYTES,
            sampled: false,
            slot_sets: if aggregate {
                default_slot_sets(false)?
            } else {
                0
            },
        };
        let mut storage = MaybeUninit::uninit();
        let session = Session::start(&mut storage, &self.go, &self.bin, &cfg, &plans)?;
        let mut rb = RingBufferBuilder::new();
        rb.add(&session.skel.maps.events, |_: &[u8]| 0)?;
        let ring = rb.build()?;
        let prog = &session.skel.progs.on_mapassign_multi;
        let before = prog_stats(prog)?;
        let done = w.finish(|| {
            let _ = ring.consume();
        })?;
        let after = prog_stats(prog)?;
        Ok(self.sample(&done, Some((after.0 - before.0, after.1 - before.1))))
    }

    /// `ebpf-map-trace run -p` on the workload: its program's stats (an fd to it is held so
    /// that they outlive the tracer), its own CPU time, and whether it counted exactly.
    fn tracer(&self) -> Result<Sample> {
        let w = Workload::start(&self.bin, self.writes, &self.args)?;
        let json = std::env::temp_dir().join(format!("bpf_costs-{}.json", w.pid));
        let mut t = Command::new(&self.tracer)
            .args(["run", "-p", &w.pid.to_string(), "--json"])
            .arg(&json)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let fd = owned_program(t.id(), "on_mapassign_mu")?;
        // Attach and the ring's setup follow the load: the tracer's CPU is read once they are
        // done, for what it spends while the workload writes.
        std::thread::sleep(Duration::from_millis(1500));
        let before = prog_stats(&fd)?;
        let cpu_before = task_cpu_ns(t.id())?;
        let done = w.finish(|| {})?;
        let cpu_during = task_cpu_ns(t.id())? - cpu_before;
        let after = prog_stats(&fd)?;
        let tracer_cpu = wait_cpu(&mut t)?;
        let mut s = self.sample(&done, Some((after.0 - before.0, after.1 - before.1)));
        s.tracer_ns = Some(cpu_during as f64 / self.total_writes() as f64);
        s.tracer_total_ns = Some(tracer_cpu as f64 / self.total_writes() as f64);
        let report = std::fs::read_to_string(&json)?;
        s.exact = Some(exact(&done, &report));
        s.lost = serde_json::from_str::<serde_json::Value>(&report)?["lost_events"].as_u64();
        let _ = std::fs::remove_file(json);
        Ok(s)
    }

    /// The bpftrace one-liner, at the entry of mapassign_faststr.
    fn bpftrace(&self) -> Result<Sample> {
        let w = Workload::start(&self.bin, self.writes, &self.args)?;
        let script = format!(
            "uprobe:{}:runtime.mapassign_faststr {{ @[str(reg(\"cx\"), reg(\"di\"))] = count(); }}",
            self.bin.display()
        );
        // bpftrace's maps hold 4096 keys unless told otherwise: past that, a new key's update
        // fails early and goes uncounted. Room for every key the workload can write makes it do
        // the tracer's job (all-distinct keys: one per write).
        let mut bt = Command::new("bpftrace")
            .args(["-e", &script])
            .env("BPFTRACE_MAP_KEYS_MAX", (self.writes + 4096).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bpftrace (apt-get install bpftrace)")?;
        let fd = owned_program(bt.id(), "")?;
        // bpftrace attaches after it loads (seen taking over 0.5 s on a loaded machine).
        std::thread::sleep(Duration::from_millis(2000));
        let before = prog_stats(&fd)?;
        let done = w.finish(|| {})?;
        let after = prog_stats(&fd)?;
        // SAFETY: kill on our own child's pid, not waited for yet.
        unsafe { libc::kill(bt.id() as i32, libc::SIGINT) };
        let t0 = Instant::now();
        while bt.try_wait()?.is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                bt.kill()?; // seen hung after SIGINT on a loaded machine
                bt.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(self.sample(&done, Some((after.0 - before.0, after.1 - before.1))))
    }
}

/// An fd to a program that process `pid` holds (its /proc fdinfo names the program id) whose
/// name starts with `prefix`: the programs of other jobs on the machine are never taken.
fn owned_program(pid: u32, prefix: &str) -> Result<OwnedFd> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))?.flatten() {
            let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let Some(id) = info
                .lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(fd) = program_named(id, prefix) {
                return Ok(fd);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("process {pid} loaded no program {prefix}* within 30 s")
}

/// An fd to program `id` when its name starts with `prefix`.
fn program_named(id: u32, prefix: &str) -> Option<OwnedFd> {
    // SAFETY: plain syscall wrappers; the fd returned is owned by the OwnedFd made from it, and
    // `info` is plain data of `len` bytes that lives across the call.
    unsafe {
        let fd = libbpf_rs::libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        if libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) != 0
        {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(info.name.as_ptr()).to_string_lossy();
        name.starts_with(prefix).then_some(fd)
    }
}

/// CPU time of every thread of process `pid` so far, in ns (the scheduler's own accounting,
/// /proc/PID/task/TID/schedstat, exact to the ns unlike the tick-based stat).
fn task_cpu_ns(pid: u32) -> Result<u64> {
    let mut sum = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(t?.path().join("schedstat")).unwrap_or_default();
        sum += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(sum)
}

/// Waits for `child`; its user + system CPU time in ns.
fn wait_cpu(child: &mut Child) -> Result<u64> {
    let mut status = 0;
    // SAFETY: rusage is plain data written by wait4 for our own child, not waited for yet.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `status` and `ru` live across the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Ok(ns(ru.ru_utime) + ns(ru.ru_stime))
}

/// Whether the report counts every map of the workload exactly (writes and top keys).
fn exact(done: &serde_json::Value, report: &str) -> bool {
    let Ok(report) = serde_json::from_str::<serde_json::Value>(report) else {
        return false;
    };
    let empty = vec![];
    let maps = report["maps"].as_array().unwrap_or(&empty);
    done["maps"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .all(|want| {
            maps.iter().any(|m| {
                m["id"] == want["id"]
                    && m["writes"] == want["writes"]
                    && want["keys"]
                        .as_array()
                        .unwrap_or(&empty)
                        .iter()
                        .take(10)
                        .all(|k| {
                            m["top_keys"]
                                .as_array()
                                .unwrap_or(&empty)
                                .iter()
                                .any(|t| t["key"] == k["key"] && t["writes"] == k["writes"])
                        })
            })
        })
}

fn median(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[v.len() / 2], v[0], v[v.len() - 1]))
}

fn fmt(v: Option<(f64, f64, f64)>) -> String {
    v.map_or("-".into(), |(m, lo, hi)| {
        format!("{m:.0} ({lo:.0}..{hi:.0})")
    })
}

/// Per round, `f` of a variant's sample against the same round's sample of variant `base`.
fn paired(
    chosen: &[String],
    samples: &[Vec<Sample>],
    s: &[Sample],
    base: &str,
    f: impl Fn(&Sample, &Sample) -> Option<f64>,
) -> Option<(f64, f64, f64)> {
    let b = &samples[chosen.iter().position(|n| n == base)?];
    median(s.iter().zip(b).filter_map(|(x, y)| f(x, y)).collect())
}

fn print_table(chosen: &[String], samples: &[Vec<Sample>]) {
    println!(
        "{:<10} {:>16} {:>16} {:>18} {:>16} {:>16} {:>16} {:>16} {:>6} {:>6}",
        "variant",
        "bpf_ns/event",
        "cpu_ns/write",
        "added_ns/write",
        "added÷v0_empty",
        "bpf÷bpftrace",
        "tracer_ns/write",
        "(whole run)",
        "lost",
        "exact"
    );
    for (name, s) in chosen.iter().zip(samples) {
        let bpf = median(s.iter().filter_map(|x| x.bpf_ns).collect());
        let cpu = median(s.iter().map(|x| x.cpu_ns).collect());
        let added = paired(chosen, samples, s, "none", |x, n| Some(x.cpu_ns - n.cpu_ns));
        let vs_empty = (|| {
            let none = &samples[chosen.iter().position(|n| n == "none")?];
            let empty = &samples[chosen.iter().position(|n| n == "v0_empty")?];
            let r = (0..s.len().min(none.len()).min(empty.len()))
                .map(|i| (s[i].cpu_ns - none[i].cpu_ns) / (empty[i].cpu_ns - none[i].cpu_ns))
                .collect();
            median(r)
        })();
        let vs_bpftrace = paired(chosen, samples, s, "bpftrace", |x, b| {
            Some(x.bpf_ns? / b.bpf_ns?)
        });
        let tracer = median(s.iter().filter_map(|x| x.tracer_ns).collect());
        let total = median(s.iter().filter_map(|x| x.tracer_total_ns).collect());
        let lost: Vec<u64> = s.iter().filter_map(|x| x.lost).collect();
        let lost = lost.iter().max().map_or("-".into(), |m| m.to_string());
        let exact: Vec<bool> = s.iter().filter_map(|x| x.exact).collect();
        let exact = if exact.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", exact.iter().filter(|e| **e).count(), exact.len())
        };
        println!(
            "{:<10} {:>16} {:>16} {:>18} {:>16} {:>16} {:>16} {:>16} {:>6} {:>6}",
            name,
            fmt(bpf),
            fmt(cpu),
            fmt(added),
            fmt2(vs_empty),
            fmt2(vs_bpftrace),
            fmt(tracer),
            fmt(total),
            lost,
            exact
        );
    }
}

fn fmt2(v: Option<(f64, f64, f64)>) -> String {
    v.map_or("-".into(), |(m, lo, hi)| {
        format!("{m:.2} ({lo:.2}..{hi:.2})")
    })
}

/// The cost-breakdown program named `name`.
fn step_prog<'a>(
    p: &'a skel::BpfCostsProgs<'_>,
    name: &str,
) -> Option<&'a libbpf_rs::ProgramMut<'a>> {
    Some(match name {
        "v0_empty" => &p.v0_empty,
        "v1_base" => &p.v1_base,
        "v2_ktime" => &p.v2_ktime,
        "v2_cookie" => &p.v2_cookie,
        "v3_site" => &p.v3_site,
        "v3_site_sleep" => &p.v3_site_sleep,
        "v3_site_cfu" => &p.v3_site_cfu,
        "v3_site_64b" => &p.v3_site_64b,
        "v4_site_key" => &p.v4_site_key,
        "v4_site_key_fp" => &p.v4_site_key_fp,
        "v5_site_key_hdr" => &p.v5_site_key_hdr,
        "v6_ring" => &p.v6_ring,
        "v6_ring_nohdr" => &p.v6_ring_nohdr,
        "v7_hash8" => &p.v7_hash8,
        "v7_agg" => &p.v7_agg,
        "v8_agg_check" => &p.v8_agg_check,
        "v9_agg_task" => &p.v9_agg_task,
        "v9_agg_tid" => &p.v9_agg_tid,
        "v10_slot" => &p.v10_slot,
        "v10_slot_seq" => &p.v10_slot_seq,
        "v10_slot_seq_s" => &p.v10_slot_seq_s,
        _ => return None,
    })
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let workload_args = match args.iter().position(|a| a == "--args") {
        Some(i) if i + 1 < args.len() => {
            let v = args.remove(i + 1);
            args.remove(i);
            v.split_whitespace().map(String::from).collect()
        }
        _ => Vec::new(),
    };
    let [bin, tracer, rounds, writes, rest @ ..] = &args[..] else {
        bail!("usage: bpf_costs WORKLOAD TRACER ROUNDS WRITES [--args 'ARGS'] [VARIANT...]");
    };
    let bin = PathBuf::from(bin).canonicalize()?;
    let rounds: usize = rounds.parse()?;
    let go = GoBinary::open(&bin)?;
    let offset = go
        .map_functions()
        .into_iter()
        .find(|f| f.role == Role::AssignFastStr)
        .context("no mapassign_faststr")?
        .probe
        .map_err(anyhow::Error::msg)?
        .file_offset as usize;
    let bench = Bench {
        bin,
        tracer: PathBuf::from(tracer).canonicalize()?,
        go,
        writes: writes.parse()?,
        args: workload_args,
        offset,
    };
    let chosen: Vec<String> = if rest.is_empty() {
        let mut all = vec!["none".to_string()];
        all.extend(STEPS.iter().map(|s| s.to_string()));
        all.extend(["records", "kernel", "tracer", "bpftrace"].map(String::from));
        all
    } else {
        rest.to_vec()
    };
    // Held for the whole run: the kernel keeps its BPF stats on while any such fd is open,
    // whatever others do with the kernel.bpf_stats_enabled sysctl meanwhile.
    // SAFETY: a plain syscall wrapper; the fd it returns is owned below.
    let stats_fd = unsafe {
        libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
    };
    if stats_fd < 0 {
        bail!(
            "cannot enable BPF stats: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the fd was just returned to us and nothing else owns it.
    let _stats = unsafe { OwnedFd::from_raw_fd(stats_fd) };
    let mut storage = MaybeUninit::uninit();
    let open = skel::BpfCostsSkelBuilder::default().open(&mut storage)?;
    let costs = open.load().context("loading bench/bpf_costs.bpf.c")?;
    let mut rb = RingBufferBuilder::new();
    rb.add(&costs.maps.ring, |_: &[u8]| 0)?;
    let ring = rb.build()?;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); chosen.len()];
    for round in 0..rounds {
        for (i, name) in chosen.iter().enumerate() {
            let s = match name.as_str() {
                "none" => bench.step(None, &ring, None)?,
                "records" => bench.program(false)?,
                "kernel" => bench.program(true)?,
                "tracer" => bench.tracer()?,
                "bpftrace" => bench.bpftrace()?,
                step => {
                    let (step, at) = match step.split_once('@') {
                        Some((s, off)) => (
                            s,
                            Some(usize::from_str_radix(off.trim_start_matches("0x"), 16)?),
                        ),
                        None => (step, None),
                    };
                    let prog = step_prog(&costs.progs, step)
                        .with_context(|| format!("no variant {step}"))?;
                    bench.step(Some(prog), &ring, at)?
                }
            };
            samples[i].push(s);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    print_table(&chosen, &samples);
    Ok(())
}
