//! The process being traced, as the loops need it: its executable and binary (opened once),
//! the key plans for its map types, a watch for an exec that ends the trace, and a probe
//! session configured for it.
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::OpenObject;

use crate::bpf::KeyPlan;
use crate::decode::keys::plans_for_binary;
use crate::gobin::GoBinary;
use crate::probe::load::{Load, DEFAULT_RING_BYTES};
use crate::probe::process::{process_ended, ExecWatch};
use crate::probe::session::Session;

/// What the probes capture per write, beyond the map, key and site.
#[derive(Clone, Copy, Debug, Default)]
pub struct Capture {
    /// Key bytes captured (at most 256).
    pub key_bytes: u32,
    pub stack: bool,
    pub timestamps: bool,
    pub goroutine_ids: bool,
    /// Budget mode (see `probe::load::Load::sampled`).
    pub sampled: bool,
}

pub struct Tracee {
    pub pid: u32,
    pub exe: PathBuf,
    pub bin: GoBinary,
    plans: Vec<(u64, KeyPlan)>,
    exec: ExecWatch,
}

impl Tracee {
    /// Process `pid` running `exe` (or, `held`, a child of ours about to exec it).
    pub fn open(pid: u32, exe: &Path, held: bool) -> Result<Tracee> {
        // Before anything else: an exec from here on is noticed.
        let exec = ExecWatch::new(pid, exe, held)?;
        let bin = GoBinary::open(exe).with_context(|| exe.display().to_string())?;
        let plans = bin
            .types()
            .as_ref()
            .map(plans_for_binary)
            .unwrap_or_default();
        Ok(Tracee {
            pid,
            exe: exe.to_path_buf(),
            bin,
            plans,
            exec,
        })
    }

    /// Loads and attaches the probes, capturing `capture`.
    pub fn session<'o>(
        &self,
        storage: &'o mut MaybeUninit<OpenObject>,
        capture: Capture,
    ) -> Result<Session<'o>> {
        let load = Load {
            pid: self.pid,
            key_bytes: capture.key_bytes,
            stack: capture.stack,
            timestamps: capture.timestamps,
            goroutine_ids: capture.goroutine_ids,
            goid_offset: self.bin.goid_offset().map_or(0, |g| g.offset as u32),
            grows: true,
            ring_bytes: DEFAULT_RING_BYTES,
            sampled: capture.sampled,
        };
        Session::start(storage, &self.bin, &self.exe, &load, &self.plans)
    }

    /// Why the trace must end now that the process runs another program, once it did.
    pub fn exec_ended(&self) -> Option<String> {
        self.exec.exec_target().map(|new| {
            format!(
                "the target (pid {}) executed another program ({}): the trace ended there",
                self.pid,
                new.display()
            )
        })
    }

    /// Whether the process has ended for good.
    pub fn ended(&self) -> bool {
        process_ended(self.pid)
    }
}
