//! Inlined calls: the frames a PC stands for, innermost first, from the function's inline tree
//! (funcdata 3, entries in `go:func.*`) and its inline-index pc-data table (2), the way the Go
//! runtime's own unwinder expands them. Go 1.18–1.27; elsewhere (or without the tree) a PC is
//! its outer function alone. Each PC is decoded once per binary (`FrameCache`): live views
//! symbolize the same few sites every refresh.
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::GoBinary;

/// pc-data table of inline tree indexes.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// funcdata holding the inline tree.
const FUNCDATA_INL_TREE: u8 = 3;
/// Inlined calls nested deeper than this are cut (the runtime has no such limit, but a corrupt
/// tree must not loop).
const MAX_DEPTH: usize = 64;

/// One frame of a PC: a function and the source position within it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceFrame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// PCs decoded so far and their frames. Bounded: past `FrameCache::MAX` PCs (more than the
/// write sites and stack frames of any real program), further PCs are decoded each time.
#[derive(Default)]
pub struct FrameCache(Mutex<HashMap<u64, Arc<[SourceFrame]>>>);

impl FrameCache {
    const MAX: usize = 1 << 16;
}

impl GoBinary {
    /// The frames `pc` stands for, innermost first: the inlined calls it lies in, then the
    /// function that holds them. Empty if `pc` is in no Go function. Decoded once per PC.
    pub fn frames_at(&self, pc: u64) -> Arc<[SourceFrame]> {
        if let Some(f) = self.frames.0.lock().get(&pc) {
            return f.clone();
        }
        let frames: Arc<[SourceFrame]> = self.decode_frames_at(pc).into();
        let mut cache = self.frames.0.lock();
        if cache.len() < FrameCache::MAX {
            cache.insert(pc, frames.clone());
        }
        frames
    }

    fn decode_frames_at(&self, pc: u64) -> Vec<SourceFrame> {
        let Some(f) = self.pclntab.func_at(pc) else {
            return Vec::new();
        };
        let tree = self
            .moduledata
            .and_then(|m| m.gofunc)
            .zip(self.pclntab.funcdata_offset(f, FUNCDATA_INL_TREE))
            .and_then(|(base, off)| base.checked_add(u64::from(off)));
        let mut frames = Vec::new();
        let mut at = pc;
        let position = |at: u64| {
            let l = self.pclntab.source_line(at);
            (
                l.as_ref().map(|l| l.file.clone()).unwrap_or_default(),
                l.map(|l| l.line).unwrap_or(0),
            )
        };
        while let Some(tree) = tree.filter(|_| frames.len() < MAX_DEPTH) {
            let Some(ix) = self
                .pclntab
                .pcdata(f, PCDATA_INL_TREE_INDEX, at)
                .and_then(|ix| u64::try_from(ix).ok())
            else {
                break;
            };
            let Some((name_off, parent_pc)) = self.inlined_call(tree, ix) else {
                break;
            };
            let (file, line) = position(at);
            frames.push(SourceFrame {
                function: self.pclntab.name_at(name_off).unwrap_or_else(|| "?".into()),
                file,
                line,
            });
            // An instruction whose source position is the inlined call's call site.
            let Some(parent) = f.entry.checked_add(u64::from(parent_pc)) else {
                break;
            };
            at = parent;
        }
        let (file, line) = position(at);
        frames.push(SourceFrame {
            function: f.name.clone(),
            file,
            line,
        });
        frames
    }

    /// Entry `ix` of an inline tree: (name offset, parent PC offset from the function entry).
    fn inlined_call(&self, tree: u64, ix: u64) -> Option<(i32, u32)> {
        // Go 1.20+: funcID, 3 pad bytes, nameOff, parentPc, startLine. 1.18/1.19: parent
        // (int16), funcID, pad, file, line, func_ (nameOff), parentPc.
        let (size, name_at, parent_at) = if self.version >= (1, 20) {
            (16, 4, 8)
        } else {
            (20, 12, 16)
        };
        let b = self
            .elf
            .exact_bytes_at(tree.checked_add(ix.checked_mul(size)?)?, size as usize)?;
        let word = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some((word(name_at), u32::try_from(word(parent_at)).ok()?))
    }
}
