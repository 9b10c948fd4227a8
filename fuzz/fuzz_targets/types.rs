//! Whole-binary parse: ELF container, `.go.buildinfo`, `.gopclntab` (by section or, for PIE
//! binaries of Go <=1.20, by scan), moduledata (by symbol, `.go.module` or scan), map-function
//! probe sites (x86-64 decoding), goroutine-id offset (DWARF or table), and type descriptors.
//!
//! The input is a whole file. If `GoBinary::parse` accepts it: `map_functions()`,
//! `goid_offset()`, and with `types()`: `map_types()` (a scan of the type-data segment), then
//! `read`, `key_layout` and `map_block_size` on the map types' own addresses, keys and
//! elements, and on addresses taken from the input's last 64 bytes (each as an absolute address
//! and as an offset from the types base). Bytes appended after a real ELF file do not stop it
//! from parsing, so the mutator can steer those addresses.
#![no_main]

use ebpf_map_trace::gobin::types::Detail;
use ebpf_map_trace::gobin::{GoBinary, MapImpl};
use libfuzzer_sys::fuzz_target;

/// Bounds the work done per input on large (real) binaries.
const MAX_MAP_TYPES: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Ok(bin) = GoBinary::parse(data.to_vec()) else {
        return;
    };
    let _ = bin.arch();
    let _ = bin.map_functions();
    let _ = bin.goid_offset();
    let Some(types) = bin.types() else {
        return;
    };
    let base = bin.moduledata.map(|m| m.types).unwrap_or(0);
    let swiss = bin.map_impl == MapImpl::Swiss;

    let mut addrs = Vec::new();
    let tail = &data[data.len().saturating_sub(64)..];
    for c in tail.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().unwrap());
        addrs.push(w);
        addrs.push(base.wrapping_add(w & 0xf_ffff));
    }
    for t in types.map_types().into_iter().take(MAX_MAP_TYPES) {
        addrs.push(t.addr);
        if let Detail::Map { key, elem } = t.detail {
            addrs.push(key);
            addrs.push(elem);
        }
    }

    for addr in addrs {
        if let Ok(t) = types.read(addr) {
            if let Detail::Struct { fields } = &t.detail {
                for f in fields.iter().take(8) {
                    let _ = types.read(f.type_addr);
                }
            }
        }
        if let Ok(layout) = types.key_layout(addr) {
            let _ = layout.is_flat();
        }
        let _ = types.map_block_size(addr, swiss);
    }
});
