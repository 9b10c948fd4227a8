//! `--pprof FILE` and `--folded FILE` (on `run` and `top`): the options, checking early that
//! the files can be written, and writing them from the per-stack counts when tracing ends.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::gobin::GoBinary;
use crate::hotkeys::stacks::StackCounts;
use crate::report::{folded, pprof};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct ProfileArgs {
    /// Write map writes by goroutine stack as a pprof profile (gzipped profile.proto) to FILE:
    /// sample types writes/count (and writes_estimated/count in budget mode), labels `map` (map
    /// type) and `key` (hashed with --redact). The leaf is the writing function, so
    /// `go tool pprof -top FILE` lists writes per writing function; `-tagleaf=map` adds the map
    /// type as a leaf frame, `-tags` lists the labels. Turns on stack capture (extra cost per
    /// write).
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,
    /// Write folded stacks for flame-graph tools to FILE, one line per stack and map type:
    /// `runtime.goexit;runtime.main;main.main;main.save;map[string]int 1200` — functions root first, the map
    /// type written as the leaf frame, then the observed writes. `[other stacks]` counts stacks
    /// beyond the live modes' memory bound, `[truncated stack]` roots stacks deeper than the
    /// capture. Turns on stack capture (extra cost per write).
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,
}

impl ProfileArgs {
    /// Whether stacks must be captured.
    pub fn wanted(&self) -> bool {
        self.pprof.is_some() || self.folded.is_some()
    }

    /// Creates the files now, so a bad path fails before any tracing.
    pub fn check_writable(&self) -> Result<()> {
        for path in self.paths() {
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.pprof
            .iter()
            .chain(self.folded.iter())
            .map(PathBuf::as_path)
    }

    /// Writes the requested files; `meta` describes the trace (budget mode: its coverage).
    pub fn write(&self, bin: &GoBinary, counts: &StackCounts, meta: &pprof::Meta) -> Result<()> {
        if let Some(path) = &self.pprof {
            pprof::write(path, bin, counts, meta)?;
        }
        if let Some(path) = &self.folded {
            folded::write(path, bin, counts)?;
        }
        Ok(())
    }
}
