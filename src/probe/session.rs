//! An exact-mode tracing session: loads the write probe configured for one process, installs
//! key plans, attaches to every map-assign function (one uprobe_multi link where the kernel has
//! it, else one link per function) and owns the links: dropping the session detaches them.
use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, UprobeMultiOpts, UprobeOpts};

use crate::bpf::{self, KeyPlan, MapwriteSkel, MapwriteSkelBuilder, COOKIE_ROLE_BITS, KEY_MAX};
use crate::gobin::{Arch, GoBinary, ProbeSite, Role};

pub struct Config {
    pub pid: u32,
    /// Key bytes captured per write (≤ 256).
    pub key_bytes: u32,
    /// Capture each write's goroutine stack (frame-pointer walk).
    pub stack: bool,
    /// Capture each write's kernel time (budget estimates and `trace`; exact counting and
    /// growth tracking do without).
    pub timestamps: bool,
    /// Capture each write's goroutine id (`trace`).
    pub goroutine_ids: bool,
}

/// How the probes were attached, for the report and for `--verbose` users.
#[derive(Clone, Debug)]
pub struct Attached {
    pub functions: Vec<String>,
    pub multi_link: bool,
    /// What could not be attached (never the writes: that is an error).
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub hits: u64,
    pub lost: u64,
    pub read_failed: u64,
}

pub struct Session<'obj> {
    pub skel: MapwriteSkel<'obj>,
    links: Vec<Link>,
    pub attached: Attached,
    points: Points,
    pid: u32,
    exe: std::path::PathBuf,
    multi: bool,
}

/// Where each program goes: (file offset, cookie) pairs.
struct Points {
    writes: Vec<(u64, u64)>,
    grow_entries: Vec<(u64, u64)>,
    grow_rets: Vec<(u64, u64)>,
}

/// Checks what the kernel and our privileges must give before anything is loaded.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && !has_caps() {
        bail!("missing privileges: tracing needs root, or CAP_BPF and CAP_PERFMON (e.g. sudo ebpf-map-trace ...)");
    }
    if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        bail!("this kernel has no uprobes (CONFIG_UPROBE_EVENTS): /sys/bus/event_source/devices/uprobe is missing");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): BPF programs cannot be verified here");
    }
    Ok(())
}

fn has_caps() -> bool {
    // CAP_PERFMON = 38, CAP_BPF = 39 in the effective set (CapEff in /proc/self/status).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 38) != 0 && caps & (1 << 39) != 0)
}

pub(crate) fn uprobe_multi_supported() -> bool {
    // uprobe_multi links arrived in Linux 6.6.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

/// The assign functions to probe, each with its probe point; a function without a recognised
/// prologue is an error (never a silent gap in the counts).
pub fn assign_sites(bin: &GoBinary) -> Result<Vec<(ProbeSite, u64, u8)>> {
    if bin.arch() != Arch::X86_64 {
        bail!(
            "unsupported architecture {}: tracing works on x86-64 only",
            bin.arch()
        );
    }
    let mut out = Vec::new();
    for site in bin.map_functions() {
        let Some(role) = probe_role(site.role) else {
            continue;
        };
        let point = site
            .probe
            .clone()
            .map_err(|e| anyhow!("cannot place a probe: {e}"))?;
        out.push((site, point.file_offset, role));
    }
    if out.is_empty() {
        bail!("no map-assign function found in the binary: it never writes a Go map (or they were renamed)");
    }
    Ok(out)
}

/// `enum grow_role` for a growth function we probe; `None` for the others (`(*table).grow` and
/// `split` run inside `rehash`, whose probes already cover them).
pub fn grow_role(role: Role) -> Option<u32> {
    Some(match role {
        Role::HashGrow => bpf::GROW_HASHGROW,
        Role::GrowToSmall => bpf::GROW_TO_SMALL,
        Role::GrowToTable => bpf::GROW_TO_TABLE,
        Role::TableRehash => bpf::GROW_REHASH,
        _ => return None,
    })
}

/// `enum probe_role` for an assign function; `None` for roles the write probe does not handle.
pub fn probe_role(role: Role) -> Option<u8> {
    Some(match role {
        Role::Assign => 0,
        Role::AssignFast32 => 1,
        Role::AssignFast64 => 2,
        Role::AssignFast64Ptr => 3,
        Role::AssignFastStr => 4,
        _ => return None,
    })
}

/// Bytes of a plain-old-data value.
fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a Copy #[repr(C)] struct generated from C with no padding-sensitive reads
    // on the other side; the slice lives no longer than the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

impl<'obj> Session<'obj> {
    pub fn start(
        storage: &'obj mut MaybeUninit<OpenObject>,
        bin: &GoBinary,
        exe: &Path,
        cfg: &Config,
        plans: &[(u64, KeyPlan)],
    ) -> Result<Session<'obj>> {
        preflight()?;
        let sites = assign_sites(bin)?;
        let multi = uprobe_multi_supported();
        let mut open = MapwriteSkelBuilder::default()
            .open(storage)
            .context("opening the BPF object")?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| anyhow!("BPF object has no rodata"))?;
        rodata.target_tgid = cfg.pid;
        rodata.key_bytes = cfg.key_bytes.min(KEY_MAX as u32);
        rodata.capture_stack = u32::from(cfg.stack);
        rodata.write_time = u32::from(cfg.timestamps);
        rodata.write_goid = u32::from(cfg.goroutine_ids);
        rodata.goid_offset = bin.goid_offset().map(|g| g.offset as u32).unwrap_or(0);
        // Load either the uprobe_multi programs or the per-function ones, not both.
        open.progs.on_mapassign_multi.set_autoload(multi);
        open.progs.on_grow_multi.set_autoload(multi);
        open.progs.on_grow_ret_multi.set_autoload(multi);
        open.progs.on_mapassign.set_autoload(!multi);
        open.progs.on_grow.set_autoload(!multi);
        open.progs.on_grow_ret.set_autoload(!multi);
        let skel = open.load().map_err(|e| load_error(e.into()))?;
        for (addr, plan) in plans {
            skel.maps
                .plans
                .update(&addr.to_le_bytes(), pod_bytes(plan), MapFlags::ANY)
                .context("installing a key plan")?;
        }
        let cookie = |link_addr: u64, role: u64| (link_addr << COOKIE_ROLE_BITS) | role;
        let write_points: Vec<(u64, u64)> = sites
            .iter()
            .map(|(s, off, role)| {
                let probe_addr = s.addr + s.probe.as_ref().map(|p| p.offset).unwrap_or(0);
                (*off, cookie(probe_addr, u64::from(*role)))
            })
            .collect();
        let (mut entries, mut rets) = (Vec::new(), Vec::new());
        let mut warnings = Vec::new();
        for site in bin.map_functions() {
            let Some(role) = grow_role(site.role) else {
                continue;
            };
            match &site.probe {
                Ok(p) => {
                    entries.push((p.file_offset, cookie(site.addr + p.offset, u64::from(role))));
                    for r in &site.ret_offsets {
                        rets.push((site.file_offset + r, cookie(site.addr + r, u64::from(role))));
                    }
                }
                Err(e) => warnings.push(format!("map growth not traced: {e}")),
            }
        }
        if entries.is_empty() || rets.is_empty() {
            entries.clear();
            rets.clear();
        }
        let mut session = Session {
            skel,
            links: Vec::new(),
            attached: Attached {
                functions: sites.iter().map(|(s, _, _)| s.function.clone()).collect(),
                multi_link: multi,
                warnings,
            },
            points: Points {
                writes: write_points,
                grow_entries: entries,
                grow_rets: rets,
            },
            pid: cfg.pid,
            exe: exe.to_path_buf(),
            multi,
        };
        session.attach()?;
        Ok(session)
    }

    /// Attaches every probe (no-op when attached). Budget mode calls this at each window start.
    pub fn attach(&mut self) -> Result<()> {
        if !self.links.is_empty() {
            return Ok(());
        }
        let progs = &self.skel.progs;
        let (pid, exe, multi) = (self.pid, self.exe.as_path(), self.multi);
        let mut links = attach_points(
            &progs.on_mapassign_multi,
            &progs.on_mapassign,
            multi,
            &self.points.writes,
            pid,
            exe,
        )?;
        if !self.points.grow_entries.is_empty() {
            links.extend(attach_points(
                &progs.on_grow_multi,
                &progs.on_grow,
                multi,
                &self.points.grow_entries,
                pid,
                exe,
            )?);
            links.extend(attach_points(
                &progs.on_grow_ret_multi,
                &progs.on_grow_ret,
                multi,
                &self.points.grow_rets,
                pid,
                exe,
            )?);
        }
        self.links = links;
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Kernel-side counters summed over CPUs.
    pub fn counters(&self) -> Counters {
        let read = |idx: u32| -> u64 {
            self.skel
                .maps
                .counters
                .lookup_percpu(&idx.to_le_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|per_cpu| {
                    per_cpu
                        .iter()
                        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap_or_default()))
                        .sum()
                })
                .unwrap_or(0)
        };
        Counters {
            hits: read(bpf::CNT_HITS),
            lost: read(bpf::CNT_LOST),
            read_failed: read(bpf::CNT_READ_FAILED),
        }
    }

    /// Detaches every probe now (also done on drop).
    pub fn detach(&mut self) {
        self.links.clear();
    }
}

/// Attaches one program at every (file offset, cookie) point: one uprobe_multi link where the
/// kernel has it, else one link per point.
fn attach_points(
    prog_multi: &libbpf_rs::ProgramMut<'_>,
    prog_single: &libbpf_rs::ProgramMut<'_>,
    multi: bool,
    points: &[(u64, u64)],
    pid: u32,
    exe: &Path,
) -> Result<Vec<Link>> {
    if multi {
        let opts = UprobeMultiOpts {
            offsets: points.iter().map(|(off, _)| *off as usize).collect(),
            cookies: points.iter().map(|(_, c)| *c).collect(),
            ..Default::default()
        };
        let link = prog_multi
            .attach_uprobe_multi_with_opts(pid as i32, exe, "", opts)
            .map_err(|e| attach_error(e.into(), pid))?;
        return Ok(vec![link]);
    }
    points
        .iter()
        .map(|(off, cookie)| {
            let opts = UprobeOpts {
                cookie: *cookie,
                ..Default::default()
            };
            prog_single
                .attach_uprobe_with_opts(pid as i32, exe, *off as usize, opts)
                .map_err(|e| attach_error(e.into(), pid))
        })
        .collect()
}

fn load_error(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        anyhow!("missing privileges: loading BPF needs root, or CAP_BPF and CAP_PERFMON")
    } else {
        e.context("loading the BPF programs")
    }
}

fn attach_error(e: anyhow::Error, pid: u32) -> anyhow::Error {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return anyhow!("process exited: {pid} ended before the probes were attached");
    }
    e.context(format!("attaching uprobes to process {pid}"))
}
