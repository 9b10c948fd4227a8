//! Names for the profile writers (`pprof`, `folded`): a stack's return addresses as functions,
//! files and lines from the pclntab, map types by name, and the pseudo-frames that say what was
//! not told apart. Cached, since stacks share most of their frames.
use std::collections::HashMap;

use crate::gobin::GoBinary;

/// Writes of stacks not tracked (bounded mode), per map type.
pub const OTHER_STACKS: &str = "[other stacks]";
/// Writes of keys not named in the profile.
pub const OTHER_KEYS: &str = "[other keys]";
/// Root of a stack whose walk filled every frame: outer frames are missing.
pub const TRUNCATED: &str = "[truncated stack]";

/// One frame: a function (`?` outside every Go function) and the source position in it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// A return address's call instruction: the frames it stands for, innermost first (calls
/// inlined into the function that holds it, then that function).
#[derive(Clone, Debug)]
pub struct Call {
    /// Link-time address inside the call instruction (return address − 1).
    pub pc: u64,
    pub frames: Vec<Frame>,
}

pub struct Symbolizer<'b> {
    bin: &'b GoBinary,
    calls: HashMap<u64, Call>,
    types: HashMap<u64, String>,
}

impl<'b> Symbolizer<'b> {
    pub fn new(bin: &'b GoBinary) -> Self {
        Symbolizer {
            bin,
            calls: HashMap::new(),
            types: HashMap::new(),
        }
    }

    /// The call a return address returns from.
    pub fn call(&mut self, ret: u64) -> &Call {
        let bin = self.bin;
        self.calls.entry(ret).or_insert_with(|| {
            let pc = ret.saturating_sub(1);
            let mut frames: Vec<Frame> = bin
                .frames_at(pc)
                .into_iter()
                .map(|f| Frame {
                    function: f.function,
                    file: f.file,
                    line: f.line,
                })
                .collect();
            if frames.is_empty() {
                let s = super::site_of(bin, ret);
                frames.push(Frame {
                    function: s.function,
                    file: s.file,
                    line: s.line,
                });
            }
            Call { pc, frames }
        })
    }

    /// A map type's name (`map[string]int`), from its descriptor's link-time address.
    pub fn map_type(&mut self, addr: u64) -> &str {
        let bin = self.bin;
        self.types.entry(addr).or_insert_with(|| {
            bin.types()
                .and_then(|r| r.read(addr).ok())
                .map(|t| t.name)
                .unwrap_or_else(|| format!("type@{addr:#x}"))
        })
    }
}
