//! `.go.buildinfo` section parser: the input is the section's bytes.
//!
//! Runs `buildinfo::parse` twice: once with a resolver that knows nothing (the inline-string
//! format of Go 1.18+ needs none), and once with a resolver that treats the pointer-format
//! (Go 1.13–1.17) "virtual addresses" as offsets into the input itself, reading a Go string
//! header (data pointer, length) there and then the string's bytes, so that the pointer path
//! and the module-info text parser see attacker-controlled strings too.
#![no_main]

use ebpf_map_trace::gobin::buildinfo;
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], off: u64, ptr_size: usize) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    let b = data.get(off..off.checked_add(ptr_size)?)?;
    Some(match ptr_size {
        8 => u64::from_le_bytes(b.try_into().ok()?),
        4 => u64::from(u32::from_le_bytes(b.try_into().ok()?)),
        _ => return None,
    })
}

/// A Go string header at `addr` (an offset into `data`), then its bytes, also within `data`.
fn read_string(data: &[u8], addr: u64, ptr_size: usize) -> Option<String> {
    let ptr = word(data, addr, ptr_size)?;
    let len = word(data, addr.checked_add(ptr_size as u64)?, ptr_size)?;
    let start = usize::try_from(ptr).ok()?;
    let len = usize::try_from(len).ok()?;
    let bytes = data.get(start..start.checked_add(len)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = buildinfo::parse(data, |_, _| None) {
        let _ = info.version();
        let _ = info.setting("-buildmode");
    }
    if let Ok(info) = buildinfo::parse(data, |addr, ptr_size| read_string(data, addr, ptr_size)) {
        let _ = info.version();
        let _ = info.setting("GOEXPERIMENT");
        let _ = buildinfo::parse_go_version(&info.go_version);
    }
});
