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

/// One frame: the call instruction's function (`?` outside every Go function) and source position. Inlined calls are shown as
/// the function they were inlined into (the pclntab's inline tree is not read).
#[derive(Clone, Debug)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// Link-time address inside the call instruction (return address − 1).
    pub pc: u64,
}

pub struct Symbolizer<'b> {
    bin: &'b GoBinary,
    frames: HashMap<u64, Frame>,
    types: HashMap<u64, String>,
}

impl<'b> Symbolizer<'b> {
    pub fn new(bin: &'b GoBinary) -> Self {
        Symbolizer {
            bin,
            frames: HashMap::new(),
            types: HashMap::new(),
        }
    }

    /// The frame of a return address.
    pub fn frame(&mut self, ret: u64) -> &Frame {
        let bin = self.bin;
        self.frames.entry(ret).or_insert_with(|| {
            let s = super::site_of(bin, ret);
            Frame {
                function: s.function,
                file: s.file,
                line: s.line,
                pc: ret.saturating_sub(1),
            }
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
