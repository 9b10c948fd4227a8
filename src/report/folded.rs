//! `--folded FILE`: folded stacks for flame-graph tools (flamegraph.pl, inferno, speedscope):
//! one line per (goroutine stack, map type), `root;…;writer;MAPTYPE COUNT`. Frames are function
//! names, root first, inlined calls included; the leaf is the map type written (e.g. `map[string]int`), so the flame
//! graph's top row shows which map each writer fills. `[truncated stack]` is the root of stacks
//! deeper than the capture, `[other stacks]` stands for stacks not tracked (bounded live mode).
//! Counts are observed writes (in budget mode the proportions, not the totals, are meaningful).
//! `;` inside a name (struct map types) becomes `,` so that it cannot split a frame.
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use super::symbolize::{Symbolizer, OTHER_STACKS, TRUNCATED};
use crate::gobin::GoBinary;
use crate::hotkeys::stacks::StackCounts;

/// The folded text: lines by count, descending, then by text.
pub fn render(bin: &GoBinary, counts: &StackCounts) -> String {
    let mut sym = Symbolizer::new(bin);
    // Stacks that differ only in addresses within the same functions fold into one line.
    let mut lines: HashMap<String, u64> = HashMap::new();
    for (stack, map_type, writes) in counts.per_stack() {
        let mut frames: Vec<String> = Vec::new();
        match stack {
            Some(id) => {
                if id.truncated || id.frames.is_empty() {
                    frames.push(TRUNCATED.into());
                }
                for &ret in id.frames.iter().rev() {
                    let call = sym.call(ret);
                    frames.extend(call.frames.iter().rev().map(|f| clean(&f.function)));
                }
            }
            None => frames.push(OTHER_STACKS.into()),
        }
        frames.push(clean(sym.map_type(map_type)));
        *lines.entry(frames.join(";")).or_default() += writes;
    }
    let mut lines: Vec<(String, u64)> = lines.into_iter().collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    lines
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}\n"))
        .collect()
}

pub fn write(path: &Path, bin: &GoBinary, counts: &StackCounts) -> Result<()> {
    std::fs::write(path, render(bin, counts)).with_context(|| format!("writing {}", path.display()))
}

/// A frame name that cannot break the format: no `;`, no line breaks.
fn clean(name: &str) -> String {
    name.replace(';', ",").replace(['\n', '\r'], " ")
}
