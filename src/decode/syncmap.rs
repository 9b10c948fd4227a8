//! `sync.Map` operations as map operations. Their records (see `src/bpf/syncmap.bpf.h`) carry
//! [`SYNC_MAP`] where a runtime map's carry its type; their keys are `interface{}` values
//! (decoded by their dynamic type, as a runtime map's interface keys); their call site is the
//! first frame outside the `sync` packages (the methods are wrappers that are mostly inlined:
//! `sync.(*Map).Store` → the hash-trie's `Swap`).
//!
//! Before Go 1.24 a `sync.Map` keeps keys it has not yet promoted in a runtime map of its own,
//! its dirty map (`map[interface {}]*sync.entry`, a type only package sync can name): writes,
//! deletes and clears of it are the `sync.Map`'s own operations seen a second time, from inside
//! its methods, so they are hidden ([`hidden_map_types`]).
use crate::bpf::SyncMap;
use crate::gobin::types::TypeReader;
use crate::gobin::GoBinary;

/// The map type of a `sync.Map` operation's record.
pub const SYNC_MAP: u64 = SyncMap::SYNC_MAP_TYPE.0 as u64;
/// How a `sync.Map` is named in reports, and its keys' type.
pub const TYPE_NAME: &str = "sync.Map";
pub const KEY_TYPE: &str = "interface {}";
/// The type of a `sync.Map`'s internal dirty map (Go ≤ 1.23).
pub const DIRTY_MAP: &str = "map[interface {}]*sync.entry";

/// Map types whose operations are not shown: a `sync.Map`'s dirty map.
pub fn hidden_map_types(types: &TypeReader<'_>) -> Vec<u64> {
    types
        .map_types()
        .into_iter()
        .filter(|t| t.name == DIRTY_MAP)
        .map(|t| t.addr)
        .collect()
}

/// Whether a function (as the symbolizer names frames) is in package `sync` or
/// `internal/sync`.
pub fn is_sync_function(name: &str) -> bool {
    name.starts_with("sync.") || name.starts_with("internal/sync.")
}

/// The address ranges of the functions of package `sync` and `internal/sync`: a `sync.Map`
/// record whose return address is in one was made by a method called from another method that
/// was not inlined (e.g. through a method value), and its call site is further out.
#[derive(Debug, Default)]
pub struct SyncFunctions {
    /// (entry, end), sorted.
    ranges: Vec<(u64, u64)>,
}

impl SyncFunctions {
    pub fn of(bin: &GoBinary) -> SyncFunctions {
        let mut ranges: Vec<(u64, u64)> = bin
            .pclntab
            .funcs()
            .iter()
            .filter(|f| is_sync_function(&f.name))
            .map(|f| (f.entry, f.end))
            .collect();
        ranges.sort_unstable();
        SyncFunctions { ranges }
    }

    /// The call site of a `sync.Map` operation: its return address `ret`, or where it was
    /// called from a `sync` function (a method that was not inlined), the first of the next
    /// frames' return addresses `outer` that is not (or `ret` when none is known).
    pub fn caller(&self, ret: u64, outer: &[u64]) -> u64 {
        if !self.contains(ret) {
            return ret;
        }
        outer
            .iter()
            .copied()
            .take_while(|&r| r != 0)
            .find(|&r| !self.contains(r))
            .unwrap_or(ret)
    }

    /// Whether the return address `ret` (link-time) is inside one of them.
    pub fn contains(&self, ret: u64) -> bool {
        let pc = ret.saturating_sub(1);
        let i = self.ranges.partition_point(|&(entry, _)| entry <= pc);
        i > 0 && pc < self.ranges[i - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_functions_are_told_by_package() {
        assert!(is_sync_function("sync.(*Map).Store"));
        assert!(is_sync_function(
            "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}]).Swap"
        ));
        assert!(!is_sync_function("sync/atomic.(*Pointer[...]).Load"));
        assert!(!is_sync_function("main.syncStore"));
        let f = SyncFunctions {
            ranges: vec![(0x100, 0x180), (0x200, 0x280)],
        };
        // A return address is one past its call: the call at 0x17f returns to 0x180.
        assert!(f.contains(0x180));
        assert!(!f.contains(0x100));
        assert!(f.contains(0x201));
        assert!(!f.contains(0x281));
        assert!(!f.contains(0x50));
        // A site inside a sync function is replaced by the first caller outside them.
        assert_eq!(f.caller(0x900, &[0x150, 0x950, 0]), 0x900);
        assert_eq!(f.caller(0x150, &[0x250, 0x950, 0x960]), 0x950);
        assert_eq!(f.caller(0x150, &[0x250, 0, 0x960]), 0x150);
    }
}
