//! Map internals: what a map's header says at write time (length, capacity, load, memory,
//! overflow buckets, a grow in progress) and its growth events, each tied to the write that
//! triggered it (the same thread's last write before the growth function was entered).
use std::collections::HashMap;

use serde::Serialize;

use crate::bpf::GrowRole;
use crate::decode::records::{GrowEvent, GrowStart, WriteEvent};
use crate::gobin::MapImpl;

/// Largest Swiss table before it splits (`maxTableCapacity` in internal/runtime/maps).
const SWISS_MAX_TABLE: u64 = 1024;
/// Slots of a classic bucket and of a Swiss group.
const SLOTS_PER_BUCKET: u64 = 8;

/// What a growth did, by the runtime's own rules.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrowthKind {
    /// Doubled: classic buckets, or a Swiss table within its largest size.
    Grow,
    /// Classic: rehashed into as many buckets (too many overflow buckets).
    SameSize,
    /// Swiss: the first group of a small map.
    Small,
    /// Swiss: a small map became a table.
    Table,
    /// Swiss: a full-size table split in two.
    Split,
    /// A growth role this version does not know.
    Unknown,
}

/// What a growth's capacities count.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrowthUnit {
    Buckets,
    Slots,
}

impl std::fmt::Display for GrowthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrowthKind::Grow => "grow",
            GrowthKind::SameSize => "same_size",
            GrowthKind::Small => "small",
            GrowthKind::Table => "table",
            GrowthKind::Split => "split",
            GrowthKind::Unknown => "unknown",
        })
    }
}

impl std::fmt::Display for GrowthUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrowthUnit::Buckets => "buckets",
            GrowthUnit::Slots => "slots",
        })
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Growth {
    pub kind: GrowthKind,
    pub unit: GrowthUnit,
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

/// A classic hmap's second header word (`flags | B << 8 | noverflow << 16 | hash0 << 32`), as
/// write records (`header[1]`) and classic growth records (`before[1]`, `after[1]`) carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassicWord(pub u64);

impl ClassicWord {
    /// log2 of the bucket count.
    pub fn b(self) -> u64 {
        (self.0 >> 8) & 0xff
    }

    /// Overflow buckets (approximate once B ≥ 16, as the runtime keeps it).
    pub fn noverflow(self) -> u64 {
        (self.0 >> 16) & 0xffff
    }
}

impl Growth {
    /// What a growth event means, by the runtime's own rules.
    pub fn from_event(g: &GrowEvent) -> Growth {
        use GrowthKind::*;
        let (kind, unit, old, new) = match g.role {
            GrowRole::GROW_HASHGROW => {
                let (b0, b1) = (ClassicWord(g.before[1]).b(), ClassicWord(g.after[1]).b());
                let kind = if b1 > b0 { Grow } else { SameSize };
                (
                    kind,
                    GrowthUnit::Buckets,
                    1u64 << b0.min(63),
                    1u64 << b1.min(63),
                )
            }
            GrowRole::GROW_TO_SMALL => (Small, GrowthUnit::Slots, 0, SLOTS_PER_BUCKET),
            GrowRole::GROW_TO_TABLE => (
                Table,
                GrowthUnit::Slots,
                SLOTS_PER_BUCKET,
                2 * SLOTS_PER_BUCKET,
            ),
            GrowRole::GROW_REHASH => {
                let cap = g.before[1];
                let kind = if 2 * cap <= SWISS_MAX_TABLE {
                    Grow
                } else {
                    Split
                };
                (kind, GrowthUnit::Slots, cap, 2 * cap)
            }
            _ => (Unknown, GrowthUnit::Slots, 0, 0),
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

/// Threads remembered, triggers waiting for their growth, and growths kept: bounds for
/// long-running live views.
const MAX_THREADS: usize = 16_384;
const MAX_WAITING: usize = 16_384;
const MAX_RESOLVED: usize = 10_000;

/// The write a thread made last: what a growth it starts next is charged to.
#[derive(Clone, Debug, Default)]
pub struct Trigger {
    pub map_ptr: u64,
    pub key: String,
    pub site: u64,
}

/// Ties growth events to their triggering writes. All records come through one ring buffer in
/// the order they were made: when a thread enters a growth function (`GrowStart`), its last
/// write before that record is the one that triggered it — a thread runs one goroutine at a time
/// and nothing else writes a map between the assign probe and the growth call. The growth's own
/// record (at RET, possibly from another thread after a reschedule) names that entry by thread
/// and start time. A trigger must write the growing map; otherwise (a lost write record) the
/// growth keeps no trigger rather than a wrong one.
#[derive(Default)]
pub struct GrowthMatcher {
    /// thread → its last write.
    last: HashMap<u32, Trigger>,
    /// (thread, start time) of a growth entered, not yet returned → its trigger.
    waiting: HashMap<(u32, u64), Option<Trigger>>,
    /// Growths resolved: (map type, map header) → growths.
    pub resolved: Vec<((u64, u64), Growth)>,
}

impl GrowthMatcher {
    pub fn on_write(&mut self, ev: &WriteEvent, key_text: &str) {
        if self.last.len() >= MAX_THREADS && !self.last.contains_key(&ev.tid) {
            self.last.clear(); // forget old threads wholesale: rare, and cheap
        }
        // Reuses the thread's string: this runs for every write.
        let w = self.last.entry(ev.tid).or_insert_with(|| Trigger {
            map_ptr: 0,
            key: String::new(),
            site: 0,
        });
        w.map_ptr = ev.map_ptr;
        w.site = ev.site;
        w.key.clear();
        w.key.push_str(key_text);
    }

    /// A growth entered; `counted` is its triggering write when that was counted in the kernel
    /// (else it is the thread's last write record).
    pub fn on_grow_start(&mut self, s: &GrowStart, counted: Option<Trigger>) {
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.clear(); // growth records lost: their triggers are never claimed
        }
        let trigger = match s.trigger {
            Some(_) => counted,
            None => self.last.get(&s.tid).cloned(),
        };
        self.waiting.insert((s.tid, s.start_ns), trigger);
    }

    pub fn on_grow(&mut self, g: &GrowEvent) {
        let mut growth = Growth::from_event(g);
        let trigger = self.waiting.remove(&(g.tid, g.start_ns)).flatten();
        if let Some(w) = trigger.filter(|w| w.map_ptr == g.map_ptr) {
            growth.key = w.key;
            growth.site = w.site;
        }
        if self.resolved.len() >= MAX_RESOLVED {
            // Keep the newest half: live views show recent growth.
            self.resolved.drain(..MAX_RESOLVED / 2);
        }
        self.resolved.push(((g.map_type, g.map_ptr), growth));
    }

    /// A growth not to report (of a map kept out): its entry is no longer waited for.
    pub fn forget(&mut self, g: &GrowEvent) {
        self.waiting.remove(&(g.tid, g.start_ns));
    }

    /// Orders the growths by time (end of the trace).
    pub fn finish(&mut self) {
        self.resolved.sort_by_key(|(_, g)| g.start_ns);
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

/// Reads a header snapshot. `len` is the count after the last write: the header's (read before
/// a write) plus `inserted`, the keys new to the map from that write on (headers are read at a
/// sampled rate). `slot_block_bytes` is the size of one bucket (classic) or group (Swiss), from
/// the map type.
pub fn header_state(
    imp: MapImpl,
    header: &[u64; 4],
    inserted: u64,
    slot_block_bytes: Option<u64>,
) -> HeaderState {
    let len = header[0] + inserted;
    match imp {
        MapImpl::Classic => {
            let word = ClassicWord(header[1]);
            let (b, noverflow) = (word.b(), word.noverflow());
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
    if !matches!(first.kind, GrowthKind::Small | GrowthKind::Table) {
        return None;
    }
    let mut total = 0;
    for g in growth {
        match g.kind {
            GrowthKind::Small | GrowthKind::Table => total = g.new_capacity,
            GrowthKind::Grow | GrowthKind::Split => total += g.new_capacity - g.old_capacity,
            GrowthKind::SameSize | GrowthKind::Unknown => return None,
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::EventFlag;

    fn grow(role: GrowRole, before: [u64; 2], after: [u64; 2]) -> GrowEvent {
        GrowEvent {
            start_ns: 10,
            end_ns: 25,
            map_type: 1,
            map_ptr: 2,
            goid: 7,
            before,
            after,
            pid: 1,
            tid: 3,
            role,
            flags: EventFlag::default(),
        }
    }

    #[test]
    fn classic_grow_doubles_buckets_and_same_size_does_not() {
        let g = Growth::from_event(&grow(GrowRole::GROW_HASHGROW, [13, 1 << 8], [13, 2 << 8]));
        assert_eq!(
            (g.kind, g.old_capacity, g.new_capacity, g.len, g.duration_ns),
            (GrowthKind::Grow, 2, 4, 13, 15)
        );
        let s = Growth::from_event(&grow(
            GrowRole::GROW_HASHGROW,
            [40, 8 | (3 << 8) | (9 << 16)],
            [40, 8 | (3 << 8) | (9 << 16)],
        ));
        assert_eq!(
            (s.kind, s.old_capacity, s.new_capacity),
            (GrowthKind::SameSize, 8, 8)
        );
    }

    #[test]
    fn swiss_rehash_grows_then_splits_past_1024_slots() {
        assert_eq!(
            Growth::from_event(&grow(GrowRole::GROW_REHASH, [14, 16], [0, 0])).kind,
            GrowthKind::Grow
        );
        let s = Growth::from_event(&grow(GrowRole::GROW_REHASH, [896, 1024], [0, 0]));
        assert_eq!(
            (s.kind, s.old_capacity, s.new_capacity),
            (GrowthKind::Split, 1024, 2048)
        );
        let seq: Vec<Growth> = [
            (GrowRole::GROW_TO_SMALL, 0),
            (GrowRole::GROW_TO_TABLE, 8),
            (GrowRole::GROW_REHASH, 16),
            (GrowRole::GROW_REHASH, 32),
        ]
        .iter()
        .map(|&(r, c)| Growth::from_event(&grow(r, [0, c], [0, 0])))
        .collect();
        assert_eq!(capacity_from_growth(&seq), Some(64));
        assert_eq!(capacity_from_growth(&seq[2..]), None);
    }

    #[test]
    fn growth_takes_its_threads_last_write_before_the_entry() {
        let mut m = GrowthMatcher::default();
        let w = |tid, map_ptr, site| WriteEvent {
            map_type: 1,
            map_ptr,
            site,
            pid: 1,
            tid,
            ..Default::default()
        };
        let start = |tid, start_ns| GrowStart {
            start_ns,
            pid: 1,
            tid,
            trigger: None,
        };
        m.on_write(&w(3, 2, 100), "k5");
        m.on_write(&w(4, 2, 200), "other thread");
        m.on_grow_start(&start(3, 10), None);
        // The growing goroutine moved on; thread 3 runs another one that writes.
        m.on_write(&w(3, 2, 300), "after");
        m.on_grow(&grow(GrowRole::GROW_HASHGROW, [8, 0], [8, 1])); // thread 3, started at 10
                                                                   // A growth whose trigger wrote another map (its record was lost) gets no trigger.
        m.on_write(&w(3, 9, 400), "elsewhere");
        m.on_grow_start(&start(3, 40), None);
        m.on_grow(&GrowEvent {
            start_ns: 40,
            ..grow(GrowRole::GROW_HASHGROW, [8, 1], [8, 2])
        });
        m.finish();
        let got: Vec<(&str, u64)> = m
            .resolved
            .iter()
            .map(|(_, g)| (g.key.as_str(), g.site))
            .collect();
        assert_eq!(got, [("k5", 100), ("", 0)]);
    }

    #[test]
    fn classic_header_gives_len_capacity_load_memory() {
        let h = [13, 2 << 8 | 3 << 16, 0xc000, 0];
        let s = header_state(MapImpl::Classic, &h, 1, Some(144));
        assert_eq!(
            (s.len, s.capacity, s.overflow_buckets, s.growing),
            (14, Some(32), Some(3), Some(false))
        );
        assert_eq!(s.memory_bytes, Some(144 * 7));
    }
}
