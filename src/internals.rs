//! Map internals: what a map's header says at write time (length, capacity, load, memory,
//! overflow buckets, a grow in progress) and its growth events, each tied to the write that
//! triggered it (the same goroutine's last write before the growth started).
use std::collections::HashMap;

use serde::Serialize;

use crate::gobin::MapImpl;
use crate::probe::abi::{GROW_HASHGROW, GROW_REHASH, GROW_TO_SMALL, GROW_TO_TABLE};
use crate::probe::events::{GrowEvent, WriteEvent};

/// Largest Swiss table before it splits (`maxTableCapacity` in internal/runtime/maps).
const SWISS_MAX_TABLE: u64 = 1024;
/// Slots of a classic bucket and of a Swiss group.
const SLOTS_PER_BUCKET: u64 = 8;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Growth {
    pub kind: &'static str,
    pub unit: &'static str,
    pub old_capacity: u64,
    pub new_capacity: u64,
    /// Elements when the growth started (before the triggering insert).
    pub len: u64,
    /// The triggering write's key (filled in when the write is matched).
    pub key: String,
    pub goid: u64,
    /// Return address of the triggering write (link-time); symbolized in the report.
    #[serde(skip)]
    pub site: u64,
    pub duration_ns: u64,
    #[serde(skip)]
    pub start_ns: u64,
}

impl Growth {
    /// What a growth event means, by the runtime's own rules.
    pub fn from_event(g: &GrowEvent) -> Growth {
        let (kind, unit, old, new) = match g.role {
            GROW_HASHGROW => {
                let (b0, b1) = (g.before[1] & 0xff, g.after[1] & 0xff);
                let kind = if b1 > b0 { "grow" } else { "same_size" };
                (kind, "buckets", 1u64 << b0.min(63), 1u64 << b1.min(63))
            }
            GROW_TO_SMALL => ("small", "slots", 0, SLOTS_PER_BUCKET),
            GROW_TO_TABLE => ("table", "slots", SLOTS_PER_BUCKET, 2 * SLOTS_PER_BUCKET),
            GROW_REHASH => {
                let cap = g.before[1];
                let kind = if 2 * cap <= SWISS_MAX_TABLE {
                    "grow"
                } else {
                    "split"
                };
                (kind, "slots", cap, 2 * cap)
            }
            _ => ("unknown", "slots", 0, 0),
        };
        Growth {
            kind,
            unit,
            old_capacity: old,
            new_capacity: new,
            len: g.before[0],
            key: String::new(),
            goid: g.goid,
            site: 0,
            duration_ns: g.end_ns.saturating_sub(g.start_ns),
            start_ns: g.start_ns,
        }
    }
}

/// Writes remembered per goroutine to find a growth's trigger among them.
const HISTORY: usize = 64;
/// Goroutines remembered, and growths kept: bounds for long-running live views.
const MAX_GOROUTINES: usize = 4096;
const MAX_RESOLVED: usize = 10_000;

/// Ties growth events to their triggering writes: the same goroutine's last write that started
/// before the growth (both come through one ring buffer, in order).
#[derive(Default)]
pub struct GrowthMatcher {
    pending: Vec<((u64, u64), Growth)>,
    /// goroutine → its recent writes: (time, key text, site), oldest first.
    recent: HashMap<u64, std::collections::VecDeque<(u64, String, u64)>>,
    /// Growths resolved: (map type, map header) → growths.
    pub resolved: Vec<((u64, u64), Growth)>,
}

impl GrowthMatcher {
    pub fn on_grow(&mut self, g: &GrowEvent) {
        self.pending
            .push(((g.map_type, g.map_ptr), Growth::from_event(g)));
    }

    pub fn on_write(&mut self, ev: &WriteEvent, key_text: &str) {
        if !self.pending.is_empty() {
            self.resolve(|g| g.goid == ev.goid && g.start_ns < ev.ts_ns);
        }
        if self.recent.len() >= MAX_GOROUTINES && !self.recent.contains_key(&ev.goid) {
            self.recent.clear(); // forget old goroutines wholesale: rare, and cheap
        }
        let h = self.recent.entry(ev.goid).or_default();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back((ev.ts_ns, key_text.to_string(), ev.site));
    }

    /// Resolves every growth still waiting (end of the trace).
    pub fn finish(&mut self) {
        self.resolve(|_| true);
        self.resolved.sort_by_key(|(_, g)| g.start_ns);
    }

    fn resolve(&mut self, ready: impl Fn(&Growth) -> bool) {
        let mut i = 0;
        while i < self.pending.len() {
            if ready(&self.pending[i].1) {
                let (map, mut g) = self.pending.swap_remove(i);
                let trigger = self
                    .recent
                    .get(&g.goid)
                    .and_then(|h| h.iter().rev().find(|(ts, _, _)| *ts < g.start_ns));
                if let Some((_, key, site)) = trigger {
                    g.key = key.clone();
                    g.site = *site;
                }
                if self.resolved.len() >= MAX_RESOLVED {
                    // Keep the newest half: live views show recent growth.
                    self.resolved.drain(..MAX_RESOLVED / 2);
                }
                self.resolved.push((map, g));
            } else {
                i += 1;
            }
        }
    }
}

/// A map's state from its header as last read at a write.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct HeaderState {
    pub len: u64,
    /// Slots (classic: 8 per bucket); `None` where the header alone cannot tell (Swiss maps
    /// with a directory of tables: see `capacity_from_growth`).
    pub capacity: Option<u64>,
    pub load: Option<f64>,
    /// Bytes of buckets (classic) or groups (Swiss) the map holds.
    pub memory_bytes: Option<u64>,
    /// Classic maps: overflow buckets (a sign of hash collisions) and a grow in progress.
    pub overflow_buckets: Option<u64>,
    pub growing: Option<bool>,
}

/// Reads a header snapshot. `len` is the count after the last write (the header is read before
/// the write; `inserted` says whether that write added a key). `slot_block_bytes` is the size of
/// one bucket (classic) or group (Swiss), from the map type.
pub fn header_state(
    imp: MapImpl,
    header: &[u64; 4],
    inserted: bool,
    slot_block_bytes: Option<u64>,
) -> HeaderState {
    let len = header[0] + u64::from(inserted);
    match imp {
        MapImpl::Classic => {
            let b = (header[1] >> 8) & 0xff;
            let noverflow = (header[1] >> 16) & 0xffff;
            let buckets = 1u64 << b.min(63);
            let capacity = buckets * SLOTS_PER_BUCKET;
            let growing = header[3] != 0;
            let blocks = buckets + noverflow + if growing { buckets / 2 } else { 0 };
            HeaderState {
                len,
                capacity: Some(capacity),
                load: Some(len as f64 / capacity as f64),
                memory_bytes: slot_block_bytes.map(|s| s * blocks),
                overflow_buckets: Some(noverflow),
                growing: Some(growing),
            }
        }
        MapImpl::Swiss => {
            let (dir_ptr, dir_len) = (header[2], header[3]);
            let capacity = match (dir_ptr, dir_len) {
                (0, 0) => Some(0),
                (_, 0) => Some(SLOTS_PER_BUCKET),
                _ => None,
            };
            HeaderState {
                len,
                capacity,
                load: capacity.filter(|&c| c > 0).map(|c| len as f64 / c as f64),
                memory_bytes: capacity
                    .zip(slot_block_bytes)
                    .map(|(c, g)| c / SLOTS_PER_BUCKET * g),
                overflow_buckets: None,
                growing: None,
            }
        }
    }
}

/// Swiss maps with tables: the capacity after the last growth, when every growth of the map
/// was seen from its first (the small map's 8 slots, or the first table).
pub fn capacity_from_growth(growth: &[Growth]) -> Option<u64> {
    let first = growth.first()?;
    if first.kind != "small" && first.kind != "table" {
        return None;
    }
    let mut total = 0;
    for g in growth {
        match g.kind {
            "small" | "table" => total = g.new_capacity,
            "grow" | "split" => total += g.new_capacity - g.old_capacity,
            _ => return None,
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grow(role: u32, before: [u64; 2], after: [u64; 2]) -> GrowEvent {
        GrowEvent {
            start_ns: 10,
            end_ns: 25,
            map_type: 1,
            map_ptr: 2,
            goid: 7,
            before,
            after,
            role,
            flags: 0,
        }
    }

    #[test]
    fn classic_grow_doubles_buckets_and_same_size_does_not() {
        let g = Growth::from_event(&grow(GROW_HASHGROW, [13, 1], [13, 2]));
        assert_eq!(
            (g.kind, g.old_capacity, g.new_capacity, g.len, g.duration_ns),
            ("grow", 2, 4, 13, 15)
        );
        let s = Growth::from_event(&grow(
            GROW_HASHGROW,
            [40, 3 | (9 << 8)],
            [40, 3 | (9 << 8) | (8 << 24)],
        ));
        assert_eq!(
            (s.kind, s.old_capacity, s.new_capacity),
            ("same_size", 8, 8)
        );
    }

    #[test]
    fn swiss_rehash_grows_then_splits_past_1024_slots() {
        assert_eq!(
            Growth::from_event(&grow(GROW_REHASH, [14, 16], [0, 0])).kind,
            "grow"
        );
        let s = Growth::from_event(&grow(GROW_REHASH, [896, 1024], [0, 0]));
        assert_eq!(
            (s.kind, s.old_capacity, s.new_capacity),
            ("split", 1024, 2048)
        );
        let seq: Vec<Growth> = [
            (GROW_TO_SMALL, 0),
            (GROW_TO_TABLE, 8),
            (GROW_REHASH, 16),
            (GROW_REHASH, 32),
        ]
        .iter()
        .map(|&(r, c)| Growth::from_event(&grow(r, [0, c], [0, 0])))
        .collect();
        assert_eq!(capacity_from_growth(&seq), Some(64));
        assert_eq!(capacity_from_growth(&seq[2..]), None);
    }

    #[test]
    fn growth_takes_the_goroutines_last_write_before_it() {
        let mut m = GrowthMatcher::default();
        let w = |ts, goid, site| WriteEvent {
            ts_ns: ts,
            map_type: 1,
            map_ptr: 2,
            site,
            goid,
            header: [0; 4],
            stack: vec![],
            pid: 1,
            tid: 1,
            key_len: 0,
            role: 0,
            flags: 0,
            key: vec![],
        };
        m.on_write(&w(5, 7, 100), "k5");
        m.on_grow(&grow(GROW_HASHGROW, [8, 0], [8, 1])); // started at 10
        m.on_write(&w(6, 8, 200), "other goroutine");
        m.on_write(&w(30, 7, 300), "after");
        m.finish();
        assert_eq!(m.resolved.len(), 1);
        assert_eq!(
            (m.resolved[0].1.key.as_str(), m.resolved[0].1.site),
            ("k5", 100)
        );
    }

    #[test]
    fn classic_header_gives_len_capacity_load_memory() {
        let h = [13, 2 << 8 | 3 << 16, 0xc000, 0];
        let s = header_state(MapImpl::Classic, &h, true, Some(144));
        assert_eq!(
            (s.len, s.capacity, s.overflow_buckets, s.growing),
            (14, Some(32), Some(3), Some(false))
        );
        assert_eq!(s.memory_bytes, Some(144 * 7));
    }
}
