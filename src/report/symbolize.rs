//! The one symbolizer: return addresses as source frames (inlined calls expanded, innermost
//! first, from the pclntab and the inline trees) for report sites, `trace` lines and stacks,
//! and profiles; map types by name; the pseudo-frames that say what was not told apart. Cached,
//! since stacks share most of their frames.
use std::collections::HashMap;

use crate::decode::syncmap::{is_sync_function, SYNC_MAP, TYPE_NAME};
use crate::gobin::inline::SourceFrame;
use crate::gobin::GoBinary;

/// Writes of stacks not tracked (bounded mode), per map type.
pub const OTHER_STACKS: &str = "[other stacks]";
/// Writes of keys not named in the profile.
pub const OTHER_KEYS: &str = "[other keys]";
/// Root of a stack whose walk filled every frame: outer frames are missing.
pub const TRUNCATED: &str = "[truncated stack]";

/// A return address's call instruction: the frames it stands for, innermost first (calls
/// inlined into the function that holds it, then that function). Never empty: outside every Go
/// function it is one frame named `?`.
#[derive(Clone, Debug)]
pub struct Call {
    /// Link-time address inside the call instruction (return address − 1).
    pub pc: u64,
    pub frames: Vec<SourceFrame>,
}

impl Call {
    /// The innermost frame: the function (inlined or not) that made the call.
    pub fn leaf(&self) -> &SourceFrame {
        &self.frames[0]
    }

    /// The frame that operated on a map of type `map_type`: the leaf, but for a `sync.Map`
    /// the innermost frame outside the `sync` packages (its methods are inlined wrappers).
    pub fn site_frame(&self, map_type: u64) -> &SourceFrame {
        if map_type != SYNC_MAP {
            return self.leaf();
        }
        self.frames
            .iter()
            .find(|f| !is_sync_function(&f.function))
            .unwrap_or(self.leaf())
    }
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
            let mut frames = bin.frames_at(pc).to_vec();
            if frames.is_empty() {
                frames.push(SourceFrame {
                    function: "?".into(),
                    file: String::new(),
                    line: 0,
                });
            }
            Call { pc, frames }
        })
    }

    /// The frames of a stack of return addresses (innermost first), each call expanded.
    pub fn stack(&mut self, rets: impl IntoIterator<Item = u64>) -> Vec<SourceFrame> {
        let mut out = Vec::new();
        for ret in rets {
            out.extend(self.call(ret).frames.iter().cloned());
        }
        out
    }

    /// A map type's name (`map[string]int`, or `sync.Map`), from its descriptor's link-time
    /// address.
    pub fn map_type(&mut self, addr: u64) -> &str {
        let bin = self.bin;
        self.types.entry(addr).or_insert_with(|| {
            if addr == SYNC_MAP {
                return TYPE_NAME.to_string();
            }
            bin.types()
                .and_then(|r| r.read(addr).ok())
                .map(|t| t.name)
                .unwrap_or_else(|| format!("type@{addr:#x}"))
        })
    }
}

/// A source path's file name: `cache.go` (metric labels).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A source path's last two components: `server/cache.go` (the terminal UI).
pub fn file_in_dir(path: &str) -> &str {
    match path.rmatch_indices('/').nth(1) {
        Some((i, _)) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths_shorten() {
        assert_eq!(file_name("/a/b/c.go"), "c.go");
        assert_eq!(file_in_dir("/a/b/c.go"), "b/c.go");
        assert_eq!((file_name("c.go"), file_in_dir("c.go")), ("c.go", "c.go"));
    }
}
