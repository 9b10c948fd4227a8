//! Go version inference without build info: the version-string scan of read-only data and
//! the string headers in data that point at it, the choice among the strings found within a
//! layout's version range, the module info recovered from read-only data, and the version
//! string grammar.
//!
//! Input: byte 0 and 1 give the lowest and highest minor version of the range (255: open),
//! bytes 2–3 (little-endian) where the rest splits into read-only data (loaded at 0x1000) and
//! writable data (at 0x100000): a header in data whose pointer is 0x1000 + an offset into the
//! read-only part references the string there. Asserts that every referenced string found is
//! exactly the text at its header's address, that a chosen version lies in the range, and that
//! parsing a found string's text gives the same string back.
#![no_main]

use ebpf_map_trace::gobin::buildinfo;
use ebpf_map_trace::gobin::version::{self, MinorRange, Region};
use libfuzzer_sys::fuzz_target;

const RO_BASE: u64 = 0x1000;
const DATA_BASE: u64 = 0x10_0000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (lo, hi) = (u32::from(data[0]), data[1]);
    let range = MinorRange::new(lo, (hi != 255).then_some(u32::from(hi)));
    let rest = &data[4..];
    let split = usize::from(u16::from_le_bytes([data[2], data[3]])).min(rest.len());
    let (ro, rw) = rest.split_at(split);
    let ro_regions = [Region { vaddr: RO_BASE, bytes: ro }];
    let rw_regions = [Region { vaddr: DATA_BASE, bytes: rw }];

    let found = version::scan(&ro_regions, &rw_regions);
    for s in &found {
        assert_eq!(version::parse_version_string(&s.string.text).as_ref(), Some(&s.string));
        if s.referenced {
            let at = memchr::memmem::find(ro, s.string.text.as_bytes());
            assert!(at.is_some(), "referenced string {:?} not in read-only data", s.string.text);
        }
    }
    let symbol = std::str::from_utf8(rest).ok().and_then(version::parse_version_string);
    if let Some(c) = version::choose(symbol, &found, range) {
        assert!(range.contains(c.string.minor), "{:?} outside {range}", c.string);
        let info = buildinfo::inferred(&c.string.text, &c.string.experiments, &[ro]);
        assert_eq!(info.go_version, c.string.text);
        assert!(buildinfo::parse_go_version(&info.go_version).is_some());
    }
    let _ = buildinfo::framed_modinfo(rest);
    let _ = range.intersect(MinorRange::new(lo.saturating_sub(3), Some(lo + 3)));
});
