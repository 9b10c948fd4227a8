//! The process being traced, as the loops need it: its executable and binary (opened once),
//! the key plans for its map types, a watch for an exec that ends the trace, its write rate
//! measured before a trace (to size the ring), and a probe session configured for it.
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::OpenObject;

use crate::bpf::KeyPlan;
use crate::decode::keys::plans_for_binary;
use crate::decode::syncmap::hidden_map_types;
use crate::gobin::GoBinary;
use crate::probe::load::{default_slot_sets, Load, EXACT_RING_BYTES, MIN_RING_BYTES};
use crate::probe::process::{process_ended, ExecWatch, ExitWatch};
use crate::probe::session::Session;

/// What the probes capture per write, beyond the map, key and site, and the ring they send it
/// through.
#[derive(Clone, Copy, Debug)]
pub struct Capture {
    /// Key bytes captured (at most 256).
    pub key_bytes: u32,
    pub stack: bool,
    pub timestamps: bool,
    pub goroutine_ids: bool,
    /// Budget mode (see `probe::load::Load::sampled`).
    pub sampled: bool,
    /// Count writes in the kernel instead of taking each one as a record (see
    /// `probe::load::Load::slot_sets`).
    pub aggregate: bool,
    /// The first ring buffer's size (`probe::load`'s sizing rules; default exact mode's).
    pub ring_bytes: u32,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            key_bytes: 0,
            stack: false,
            timestamps: false,
            goroutine_ids: false,
            sampled: false,
            aggregate: false,
            ring_bytes: EXACT_RING_BYTES,
        }
    }
}

pub struct Tracee {
    pub pid: u32,
    pub exe: PathBuf,
    pub bin: GoBinary,
    plans: Vec<(u64, KeyPlan)>,
    /// Map types whose operations are kept out (see `decode::syncmap::hidden_map_types`).
    pub hidden_map_types: Vec<u64>,
    exec: ExecWatch,
    /// Its exit, where the kernel gives a pidfd (else /proc is read each time).
    pub exit: Option<ExitWatch>,
}

impl Tracee {
    /// Process `pid` running `exe` (or, `held`, a child of ours about to exec it).
    pub fn open(pid: u32, exe: &Path, held: bool) -> Result<Tracee> {
        // Before anything else: an exec from here on is noticed.
        let exec = ExecWatch::new(pid, exe, held)?;
        let exit = ExitWatch::new(pid).ok();
        let bin = GoBinary::open(exe).with_context(|| exe.display().to_string())?;
        let types = bin.types();
        let plans = types.as_ref().map(plans_for_binary).unwrap_or_default();
        let hidden_map_types = types.as_ref().map(hidden_map_types).unwrap_or_default();
        // What tracing reads of the whole function table, found now, before its pages go.
        let _ = bin.map_functions();
        bin.release_pages();
        Ok(Tracee {
            pid,
            exe: exe.to_path_buf(),
            bin,
            plans,
            hidden_map_types,
            exec,
            exit,
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
            sync: true,
            sync_hashtrie: false, // set from the binary's points
            ring_bytes: capture.ring_bytes,
            sampled: capture.sampled,
            slot_sets: if capture.aggregate {
                default_slot_sets(capture.sampled)?
            } else {
                0
            },
        };
        Session::start(storage, &self.bin, &self.exe, &load, &self.plans)
    }

    /// The process's map writes per second over `over`, counted by the write probes with their
    /// window closed (no records, a smallest ring), which are then removed.
    pub fn write_rate(&self, over: Duration) -> Result<f64> {
        let mut storage = MaybeUninit::uninit();
        let counting = Capture {
            sampled: true,
            ring_bytes: MIN_RING_BYTES,
            ..Capture::default()
        };
        let session = self.session(&mut storage, counting)?;
        let before = session.counters().hits;
        std::thread::sleep(over);
        let hits = session.counters().hits - before;
        Ok(hits as f64 / over.as_secs_f64())
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

    /// Whether the process has ended for good (/proc is read only once its pidfd fired).
    pub fn ended(&self) -> bool {
        match &self.exit {
            Some(w) if !w.fired() => false,
            _ => process_ended(self.pid),
        }
    }
}
