//! What each piece of a write probe costs, on this host: the programs of `bpf_costs.bpf.c` (each
//! adding one piece to the one before) attached in turn at the probe point the tracer uses
//! (`runtime.mapassign_faststr` after its stack check) of a Go workload writing string keys in
//! a tight loop, interleaved over rounds. Per variant: the program's own run time per event
//! from the kernel's BPF stats, and the workload's CPU time per write (and the part added over
//! the empty program at the same point). Run through `bench/bpf_costs.sh`.
//!
//! Usage: cargo bench --bench bpf_costs -- WORKLOAD ROUNDS WRITES [VARIANT...]
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ebpf_map_trace::gobin::{GoBinary, Role};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, UprobeMultiOpts};

#[allow(clippy::all, dead_code, non_camel_case_types, non_snake_case)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/bpf_costs.skel.rs"));
}

/// Every variant, in the order they build on each other ("none": no probe at all).
const VARIANTS: &[&str] = &[
    "none",
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

/// (run_time_ns, run_cnt) of a program from the kernel's BPF stats.
fn prog_stats(prog: &libbpf_rs::ProgramMut<'_>) -> Result<(u64, u64)> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: the fd is the program's own, `info` is a bpf_prog_info of `len` bytes that lives
    // across the call, and no pointer field of it is set (the kernel fills in scalars only).
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
            prog.as_fd().as_raw_fd(),
            &mut info,
            &mut len,
        )
    };
    if ret != 0 {
        bail!(
            "bpf_prog_get_info_by_fd: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok((info.run_time_ns, info.run_cnt))
}

/// Runs the workload; its own CPU time (ns) for the writes.
fn run_workload(bin: &Path, writes: u64) -> Result<u64> {
    let out = Command::new(bin)
        .args(["-writes", &writes.to_string()])
        .output()
        .context("running the workload")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let done = text
        .lines()
        .find(|l| l.contains("\"event\":\"done\""))
        .context("workload printed no done line")?;
    let v: serde_json::Value = serde_json::from_str(done)?;
    v["cpu_ns"].as_u64().context("no cpu_ns")
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
    let (Some(bin), Some(rounds), Some(writes)) = (args.first(), args.get(1), args.get(2)) else {
        bail!("usage: bpf_costs WORKLOAD ROUNDS WRITES [VARIANT...]");
    };
    let bin = PathBuf::from(bin).canonicalize()?;
    let rounds: usize = rounds.parse()?;
    let writes: u64 = writes.parse()?;
    let chosen: Vec<&str> = if args.len() > 3 {
        args[3..].iter().map(String::as_str).collect()
    } else {
        VARIANTS.to_vec()
    };
    let go = GoBinary::open(&bin)?;
    let site = go
        .map_functions()
        .into_iter()
        .find(|f| f.role == Role::AssignFastStr)
        .context("no mapassign_faststr")?;
    let offset = site.probe.map_err(anyhow::Error::msg)?.file_offset as usize;

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
    let _stats = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(stats_fd) };
    let mut storage = MaybeUninit::uninit();
    let open = skel::BpfCostsSkelBuilder::default().open(&mut storage)?;
    let skel = open.load().context("loading bench/bpf_costs.bpf.c")?;
    let p = &skel.progs;
    let progs: Vec<(&str, &libbpf_rs::ProgramMut<'_>)> = vec![
        ("v0_empty", &p.v0_empty),
        ("v1_base", &p.v1_base),
        ("v2_ktime", &p.v2_ktime),
        ("v2_cookie", &p.v2_cookie),
        ("v3_site", &p.v3_site),
        ("v3_site_sleep", &p.v3_site_sleep),
        ("v3_site_cfu", &p.v3_site_cfu),
        ("v3_site_64b", &p.v3_site_64b),
        ("v4_site_key", &p.v4_site_key),
        ("v4_site_key_fp", &p.v4_site_key_fp),
        ("v5_site_key_hdr", &p.v5_site_key_hdr),
        ("v6_ring", &p.v6_ring),
        ("v6_ring_nohdr", &p.v6_ring_nohdr),
        ("v7_hash8", &p.v7_hash8),
        ("v7_agg", &p.v7_agg),
        ("v8_agg_check", &p.v8_agg_check),
        ("v9_agg_task", &p.v9_agg_task),
        ("v9_agg_tid", &p.v9_agg_tid),
        ("v10_slot", &p.v10_slot),
        ("v10_slot_seq", &p.v10_slot_seq),
        ("v10_slot_seq_s", &p.v10_slot_seq_s),
    ];
    // per variant: ns/event, cpu ns/write
    let mut samples: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); chosen.len()];
    for round in 0..rounds {
        for (i, name) in chosen.iter().enumerate() {
            let prog = progs.iter().find(|(n, _)| n == name).map(|(_, p)| *p);
            let link: Option<Link> = match prog {
                Some(p) => Some(p.attach_uprobe_multi_with_opts(
                    -1,
                    &bin,
                    "",
                    UprobeMultiOpts {
                        offsets: vec![offset],
                        cookies: vec![0],
                        ..Default::default()
                    },
                )?),
                None if *name == "none" => None,
                None => bail!("no variant {name}"),
            };
            let before = prog.map(prog_stats).transpose()?;
            let cpu = run_workload(&bin, writes)?;
            let after = prog.map(prog_stats).transpose()?;
            drop(link);
            if let (Some(b), Some(a)) = (before, after) {
                let n = (a.1 - b.1).max(1);
                samples[i].0.push((a.0 - b.0) as f64 / n as f64);
            }
            samples[i].1.push(cpu as f64 / writes as f64);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let empty_cpu = chosen
        .iter()
        .position(|n| *n == "v0_empty")
        .map(|i| median(&mut samples[i].1.clone()));
    println!(
        "{:<16} {:>12} {:>16} {:>14} {:>16}",
        "variant", "bpf_ns/event", "(min..max)", "cpu_ns/write", "added_vs_empty"
    );
    for (i, name) in chosen.iter().enumerate() {
        let (ns, cpu) = &mut samples[i];
        let (lo, hi) = (
            ns.iter().copied().fold(f64::INFINITY, f64::min),
            ns.iter().copied().fold(0.0, f64::max),
        );
        let ns_med = if ns.is_empty() { f64::NAN } else { median(ns) };
        let cpu_med = median(cpu);
        println!(
            "{:<16} {:>12.1} {:>16} {:>14.1} {:>16}",
            name,
            ns_med,
            if ns.is_empty() {
                String::new()
            } else {
                format!("({lo:.0}..{hi:.0})")
            },
            cpu_med,
            empty_cpu.map_or(String::new(), |e| format!("{:.1}", cpu_med - e)),
        );
    }
    Ok(())
}
