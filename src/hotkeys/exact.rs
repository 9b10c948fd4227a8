//! Exact counts: every write of the target counted once, per map instance (type and header
//! address), per call site and per key identity — within a memory budget for keys and
//! instances ([`KEY_MEMORY_BUDGET`]): past it, writes of new keys still count in their map's
//! total but not per key (`untracked_key_writes`), and the report says it is incomplete.
use std::collections::{HashMap, HashSet};

use crate::bpf::EventFlag;
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;

/// Estimated bytes the stored keys and map instances may take (see [`key_cost`]).
pub const KEY_MEMORY_BUDGET: usize = 256 << 20;

/// Estimated bytes of one stored key: its identity and text, plus the hash-table slot (with
/// load factor and growth slack), the allocations' headers and rounding.
pub fn key_cost(key: &Key) -> usize {
    key.id.len() + key.text.len() + 160
}

/// Estimated bytes of one map instance's own record (site and goroutine tables included).
pub const INSTANCE_COST: usize = 2048;

/// Map instances first seen after the budget is spent are counted together under this header
/// address (per map type).
pub const OVERFLOW_INSTANCE: u64 = 0;

/// The tracer's stated peak memory (RSS) for `run` (exact mode): twice the key budget (hash
/// tables double as they grow; grouping copies instances' keys), the ring buffers (65 MiB),
/// three copies' worth of the target binary, and 64 MiB for everything else.
pub fn memory_bound_rss(binary_size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    2 * KEY_MEMORY_BUDGET as u64 + 65 * MIB + 3 * binary_size + 64 * MIB
}

#[derive(Clone, Debug, Default)]
pub struct KeyCount {
    pub text: String,
    pub truncated: bool,
    pub writes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct MapCounts {
    pub map_type: u64,
    pub map_ptr: u64,
    pub writes: u64,
    /// Return address (link-time) → writes.
    pub sites: HashMap<u64, u64>,
    /// Key identity → count.
    pub keys: HashMap<Vec<u8>, KeyCount>,
    pub goroutines: HashSet<u64>,
    /// Writes whose key could not be read completely.
    pub read_failed: u64,
    /// Writes of keys not stored individually (the key budget was spent).
    pub untracked_key_writes: u64,
    /// The header as read at the last write, and whether that write added a new key.
    pub last_header: [u64; 4],
    pub last_inserted: bool,
    /// Growths of this map, in time order.
    pub growth: Vec<crate::decode::internals::Growth>,
}

impl MapCounts {
    /// Counts a write; its key only when `store` allows a key not seen before.
    fn add(&mut self, ev: &WriteEvent, key: Key, inserted: bool, store: bool) {
        self.writes += 1;
        *self.sites.entry(ev.site).or_default() += 1;
        if inserted && !store {
            self.untracked_key_writes += 1;
        } else {
            let k = self.keys.entry(key.id).or_insert_with(|| KeyCount {
                text: key.text,
                truncated: key.truncated,
                writes: 0,
            });
            k.writes += 1;
        }
        // Records arrive in the order they were made: the last one has the newest header.
        self.last_header = ev.header;
        self.last_inserted = inserted;
        if ev.goid != 0 && self.goroutines.len() < 100_000 {
            self.goroutines.insert(ev.goid);
        }
    }

    /// Adds another instance's counts into this one (grouping short-lived instances).
    pub fn merge(&mut self, other: &MapCounts) {
        self.writes += other.writes;
        self.read_failed += other.read_failed;
        self.untracked_key_writes += other.untracked_key_writes;
        for (s, n) in &other.sites {
            *self.sites.entry(*s).or_default() += n;
        }
        for (id, k) in &other.keys {
            let e = self.keys.entry(id.clone()).or_insert_with(|| KeyCount {
                writes: 0,
                ..k.clone()
            });
            e.writes += k.writes;
        }
        self.goroutines.extend(other.goroutines.iter().copied());
        self.growth.extend(other.growth.iter().cloned());
        self.growth.sort_by_key(|g| g.start_ns);
    }

    /// The site with the most writes.
    pub fn main_site(&self) -> u64 {
        self.sites
            .iter()
            .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
            .map(|(s, _)| *s)
            .unwrap_or(0)
    }

    /// Keys by writes, descending (ties by text), at most `n`.
    pub fn top_keys(&self, n: usize) -> Vec<&KeyCount> {
        let mut v: Vec<&KeyCount> = self.keys.values().collect();
        v.sort_by(|a, b| b.writes.cmp(&a.writes).then_with(|| a.text.cmp(&b.text)));
        v.truncate(n);
        v
    }
}

#[derive(Default)]
pub struct ExactCounts {
    pub maps: HashMap<(u64, u64), MapCounts>,
    pub events: u64,
    pub read_failed: u64,
    /// Estimated bytes of stored keys and instances, against [`KEY_MEMORY_BUDGET`].
    pub stored_bytes: usize,
    /// Writes whose key was not stored (the budget was spent), over all maps.
    pub untracked_key_writes: u64,
    /// Distinct keys stored.
    pub stored_keys: u64,
}

impl ExactCounts {
    /// Attaches resolved growths to their maps (a map seen only growing gets an entry too).
    pub fn add_growth(&mut self, resolved: Vec<((u64, u64), crate::decode::internals::Growth)>) {
        for ((map_type, map_ptr), g) in resolved {
            self.maps
                .entry((map_type, map_ptr))
                .or_insert_with(|| MapCounts {
                    map_type,
                    map_ptr,
                    ..Default::default()
                })
                .growth
                .push(g);
        }
    }

    pub fn add(&mut self, ev: &WriteEvent, key: Key) {
        let read_failed = ev.flags.has(EventFlag::EV_READ_FAILED);
        self.events += 1;
        let mut id = (ev.map_type, ev.map_ptr);
        if !self.maps.contains_key(&id) {
            if self.stored_bytes + INSTANCE_COST > KEY_MEMORY_BUDGET {
                id.1 = OVERFLOW_INSTANCE;
            } else {
                self.stored_bytes += INSTANCE_COST;
            }
        }
        let m = self.maps.entry(id).or_insert_with(|| MapCounts {
            map_type: id.0,
            map_ptr: id.1,
            ..Default::default()
        });
        if read_failed {
            self.read_failed += 1;
            m.read_failed += 1;
        }
        let inserted = !m.keys.contains_key(&key.id);
        let store = !inserted || self.stored_bytes + key_cost(&key) <= KEY_MEMORY_BUDGET;
        if inserted {
            if store {
                self.stored_bytes += key_cost(&key);
                self.stored_keys += 1;
            } else {
                self.untracked_key_writes += 1;
            }
        }
        m.add(ev, key, inserted, store);
    }

    /// Why these counts are not the whole truth (empty when they are).
    pub fn incomplete_reasons(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.untracked_key_writes > 0 {
            why.push(format!(
                "key budget spent ({} MiB, {} distinct keys stored): {} writes of further new keys are in their maps' totals but not counted per key (untracked_key_writes)",
                KEY_MEMORY_BUDGET >> 20,
                self.stored_keys,
                self.untracked_key_writes
            ));
        }
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(map_ptr: u64) -> WriteEvent {
        WriteEvent {
            ts_ns: 1,
            map_type: 0x1000,
            map_ptr,
            site: 0x2000,
            goid: 1,
            pid: 1,
            tid: 1,
            key_len: 8,
            ..Default::default()
        }
    }

    fn key(i: u64) -> Key {
        Key {
            id: i.to_le_bytes().to_vec(),
            text: format!("k{i:030}"),
            truncated: false,
        }
    }

    #[test]
    fn keys_past_the_budget_are_counted_but_not_stored() {
        let mut c = ExactCounts::default();
        let per_key = key_cost(&key(0));
        let fits = (KEY_MEMORY_BUDGET - INSTANCE_COST) / per_key;
        let n = fits as u64 + 1000;
        for i in 0..n {
            c.add(&write(0xc000), key(i));
        }
        // An old key still counts per key after the budget is spent.
        c.add(&write(0xc000), key(0));
        let m = &c.maps[&(0x1000, 0xc000)];
        assert!(c.stored_bytes <= KEY_MEMORY_BUDGET);
        assert_eq!(m.keys.len(), fits);
        assert_eq!(m.untracked_key_writes, 1000);
        assert_eq!(m.writes, n + 1);
        assert_eq!(m.keys[&key(0).id].writes, 2);
        assert_eq!(c.incomplete_reasons().len(), 1);
        // New instances past the budget are counted together.
        c.add(&write(0xd000), key(1));
        assert!(c.maps.contains_key(&(0x1000, OVERFLOW_INSTANCE)));
    }
}
