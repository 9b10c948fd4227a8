//! `.gopclntab` parser and lookups.
//!
//! Input layout: the first 8 bytes (little-endian) are the text start the caller would supply
//! (used by Go 1.26+ tables, whose header says 0); the rest is the section's bytes. Inputs
//! shorter than 8 bytes are parsed whole with a text start of 0.
//!
//! After a successful parse: `funcs()`, `func_by_name`, and `func_at` / `source_line` on PCs
//! taken from the input (the text start plus 32-bit offsets read from the input's tail, and raw
//! 64-bit words) and on PCs derived from function entries (entry, middle, last byte, end).
#![no_main]

use ebpf_map_trace::gobin::pclntab::Pclntab;
use libfuzzer_sys::fuzz_target;

/// At most this many functions are probed per input, spread over the table, so that inputs
/// made from real tables (thousands of functions) stay fast.
const MAX_PROBED_FUNCS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let (text_start, table) = match data.get(..8) {
        Some(head) => (u64::from_le_bytes(head.try_into().unwrap()), &data[8..]),
        None => (0, data),
    };
    let Ok(tab) = Pclntab::parse(table.to_vec(), text_start) else {
        return;
    };
    let _ = Pclntab::magic(table);

    let mut pcs: Vec<u64> = vec![0, u64::MAX, tab.text_start, tab.text_start.wrapping_sub(1)];
    // PCs from the input: offsets from the text start, and raw words, from the last 64 bytes.
    let tail = &data[data.len().saturating_sub(64)..];
    for c in tail.chunks_exact(4) {
        let off = u32::from_le_bytes(c.try_into().unwrap());
        pcs.push(tab.text_start.wrapping_add(u64::from(off)));
    }
    for c in tail.chunks_exact(8) {
        pcs.push(u64::from_le_bytes(c.try_into().unwrap()));
    }

    let funcs = tab.funcs();
    let step = funcs.len().div_ceil(MAX_PROBED_FUNCS).max(1);
    for f in funcs.iter().step_by(step) {
        pcs.push(f.entry);
        pcs.push(f.entry + (f.end - f.entry) / 2);
        pcs.push(f.end.wrapping_sub(1));
        pcs.push(f.end);
        if let Some(g) = tab.func_by_name(&f.name) {
            assert!(
                g.entry <= f.entry,
                "func_by_name returns the first function of that name"
            );
        }
    }
    if let (Some(first), Some(last)) = (funcs.first(), funcs.last()) {
        pcs.push(first.entry);
        pcs.push(last.end.wrapping_sub(1));
    }

    for pc in pcs {
        if let Some(f) = tab.func_at(pc) {
            // Invariant of the lookup: the function found contains the PC.
            assert!(
                f.entry <= pc && pc < f.end,
                "func_at({pc:#x}) returned {f:?}"
            );
        }
        let _ = tab.source_line(pc);
    }
    let _ = tab.func_by_name("runtime.mapassign");
});
