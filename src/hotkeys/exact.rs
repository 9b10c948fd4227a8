//! Exact counts: every write, delete and clear of the target counted once, per map instance
//! (type and header address), per call site and (writes and deletes) per key identity — within
//! a memory budget for keys and instances ([`KEY_MEMORY_BUDGET`]): past it, operations on new
//! keys still count in their map's totals but not per key (`untracked_key_writes`), and the
//! report says it is incomplete.
use std::collections::{HashMap, HashSet};

use crate::bpf::{EventFlag, MapOp};
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
    /// Live views: how much `writes` may over-count (the sketch's bound), writes per second now
    /// (estimated) and the ratio to a refresh ago.
    pub error: u64,
    pub per_s: Option<f64>,
    pub trend: Option<f64>,
    pub deletes: u64,
    /// Whether the key is in the map now: written since its last delete, in the map's current
    /// clear epoch (see [`MapCounts::epoch`]).
    pub present: bool,
    pub epoch: u32,
}

/// Operations of each kind (at a site).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    pub writes: u64,
    pub deletes: u64,
    pub clears: u64,
}

impl Ops {
    pub fn add(&mut self, op: MapOp, n: u64) {
        match op {
            MapOp::OP_DELETE => self.deletes += n,
            MapOp::OP_CLEAR => self.clears += n,
            _ => self.writes += n,
        }
    }

    pub fn merge(&mut self, other: &Ops) {
        self.writes += other.writes;
        self.deletes += other.deletes;
        self.clears += other.clears;
    }

    pub fn total(&self) -> u64 {
        self.writes + self.deletes + self.clears
    }
}

#[derive(Clone, Debug, Default)]
pub struct MapCounts {
    pub map_type: u64,
    pub map_ptr: u64,
    pub writes: u64,
    pub deletes: u64,
    pub clears: u64,
    /// Return address (link-time) → operations made from there.
    pub sites: HashMap<u64, Ops>,
    /// Key identity → count.
    pub keys: HashMap<Vec<u8>, KeyCount>,
    pub goroutines: HashSet<u64>,
    /// Writes whose key could not be read completely.
    pub read_failed: u64,
    /// Writes (and deletes) of keys not stored individually (the key budget was spent).
    pub untracked_key_writes: u64,
    /// The newest header read (headers are read at a sampled rate, and at every operation sent
    /// as a record), as that operation left it (less the key a delete removed, nothing after a
    /// clear), and the keys writes added to the map from that operation on: its length now is
    /// the header's plus these. (A key the tracer has not seen in the map counts as added.)
    pub last_header: [u64; 4],
    pub inserted_since_header: u64,
    /// Growths of this map, in time order.
    pub growth: Vec<crate::decode::internals::Growth>,
    /// Clears seen so far: keys written before the last clear are no longer in the map.
    pub epoch: u32,
    /// Live views: writes per second now (estimated), how much more the map's writes vary from
    /// window to window than Poisson thinning (`sampling::Extrapolation::dispersion`; 1 or less:
    /// not more), and the rate of every key tracked (for distributions).
    pub per_s: Option<f64>,
    pub dispersion: f64,
    /// Budget mode: operations counted in census windows (exact, not scaled: see
    /// `sampling::estimate`).
    pub census_ops: u64,
    pub key_rates: Vec<f64>,
}

impl MapCounts {
    /// Counts an operation's record; its key (writes and deletes) only when `store` allows a
    /// key not seen before.
    fn add(&mut self, ev: &WriteEvent, key: Key, inserted: bool, store: bool) {
        self.sites.entry(ev.site).or_default().add(ev.op, 1);
        if ev.goid != 0 && self.goroutines.len() < 100_000 {
            self.goroutines.insert(ev.goid);
        }
        // Records arrive in the order they were made: a record's header is the newest read.
        if let Some(h) = ev.header() {
            self.header_read(h);
        }
        if ev.op == MapOp::OP_CLEAR {
            self.clears += 1;
            self.epoch = self.epoch.wrapping_add(1);
            (self.last_header[0], self.inserted_since_header) = (0, 0); // empty (capacity stays)
            return;
        }
        let delete = ev.op == MapOp::OP_DELETE;
        if delete {
            self.deletes += 1;
        } else {
            self.writes += 1;
        }
        if inserted && !store {
            self.untracked_key_writes += 1;
            self.inserted_since_header += u64::from(!delete);
            return;
        }
        let epoch = self.epoch;
        let k = self.keys.entry(key.id).or_insert_with(|| KeyCount {
            text: key.text,
            truncated: key.truncated,
            ..Default::default()
        });
        let was_present = k.present && k.epoch == epoch;
        (k.present, k.epoch) = (!delete, epoch);
        if delete {
            k.deletes += 1;
            // The header was read before the delete: the key it removed is gone now.
            self.last_header[0] -= u64::from(was_present).min(self.last_header[0]);
        } else {
            k.writes += 1;
            // A key written again after its delete (or a clear) is inserted again.
            self.inserted_since_header += u64::from(!was_present);
        }
    }

    /// Counts `n` operations of `key` (`op` at `site`) counted in the kernel: repeats of an
    /// operation whose record came first, so they change no key's presence; the key only when
    /// `stored`.
    fn add_counted(&mut self, site: u64, op: MapOp, key: &Key, n: u64, stored: bool) {
        self.sites.entry(site).or_default().add(op, n);
        match op {
            MapOp::OP_CLEAR => self.clears += n,
            MapOp::OP_DELETE => self.deletes += n,
            _ => self.writes += n,
        }
        if op == MapOp::OP_CLEAR {
            return;
        }
        if !stored {
            self.untracked_key_writes += n;
            return;
        }
        let k = self.keys.entry(key.id.clone()).or_insert_with(|| KeyCount {
            text: key.text.clone(),
            truncated: key.truncated,
            ..Default::default()
        });
        if op == MapOp::OP_DELETE {
            k.deletes += n;
        } else {
            k.writes += n;
        }
    }

    /// A map header read before an operation (records arrive in the order they were made: the
    /// last one read is the newest).
    pub fn header_read(&mut self, header: &[u64; 4]) {
        self.last_header = *header;
        self.inserted_since_header = 0;
    }

    /// Adds another instance's counts into this one (grouping short-lived instances). Growths
    /// are appended: sort them by time (`sort_growth`) once all instances are in.
    pub fn merge(&mut self, other: &MapCounts) {
        self.writes += other.writes;
        self.deletes += other.deletes;
        self.clears += other.clears;
        self.read_failed += other.read_failed;
        self.untracked_key_writes += other.untracked_key_writes;
        for (s, n) in &other.sites {
            self.sites.entry(*s).or_default().merge(n);
        }
        for (id, k) in &other.keys {
            let e = self.keys.entry(id.clone()).or_insert_with(|| KeyCount {
                writes: 0,
                deletes: 0,
                error: 0,
                per_s: None,
                trend: None,
                ..k.clone()
            });
            e.writes += k.writes;
            e.deletes += k.deletes;
            e.error += k.error;
            e.per_s = sum_rates(e.per_s, k.per_s);
            e.trend = match (e.trend, k.trend) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        self.per_s = sum_rates(self.per_s, other.per_s);
        self.dispersion = self.dispersion.max(other.dispersion);
        self.census_ops += other.census_ops;
        self.key_rates.extend_from_slice(&other.key_rates);
        self.goroutines.extend(other.goroutines.iter().copied());
        self.growth.extend(other.growth.iter().cloned());
    }

    /// Puts the growths in time order (after `merge`s).
    pub fn sort_growth(&mut self) {
        self.growth.sort_by_key(|g| g.start_ns);
    }

    /// The site with the most writes (then deletes, then clears).
    pub fn main_site(&self) -> u64 {
        self.sites
            .iter()
            .max_by_key(|(s, n)| (n.writes, n.deletes, n.clears, std::cmp::Reverse(**s)))
            .map(|(s, _)| *s)
            .unwrap_or(0)
    }

    /// Written keys by writes, descending (ties by text), at most `n`.
    pub fn top_keys(&self, n: usize) -> Vec<&KeyCount> {
        self.top_by(n, |k| k.writes)
    }

    /// Deleted keys by deletes, descending (ties by text), at most `n`.
    pub fn top_deletes(&self, n: usize) -> Vec<&KeyCount> {
        self.top_by(n, |k| k.deletes)
    }

    fn top_by(&self, n: usize, count: impl Fn(&KeyCount) -> u64) -> Vec<&KeyCount> {
        let mut v: Vec<&KeyCount> = self.keys.values().filter(|k| count(k) > 0).collect();
        v.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.text.cmp(&b.text)));
        v.truncate(n);
        v
    }

    /// Distinct keys written.
    pub fn written_keys(&self) -> usize {
        self.keys.values().filter(|k| k.writes > 0).count()
    }
}

/// The sum of two rates where either is known.
fn sum_rates(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

#[derive(Default)]
pub struct ExactCounts {
    pub maps: HashMap<(u64, u64), MapCounts>,
    /// Operations of every kind.
    pub events: u64,
    /// Operations by kind, over all maps.
    pub ops: Ops,
    pub read_failed: u64,
    /// Estimated bytes of stored keys and instances, against [`KEY_MEMORY_BUDGET`].
    pub stored_bytes: usize,
    /// Writes and deletes whose key was not stored (the budget was spent), over all maps.
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

    /// One operation's record (its key decoded).
    pub fn add(&mut self, ev: &WriteEvent, key: Key) {
        let read_failed = ev.flags.has(EventFlag::EV_READ_FAILED);
        self.events += 1;
        self.ops.add(ev.op, 1);
        let id = self.instance(ev.map_type, ev.map_ptr);
        let m = self.maps.get_mut(&id).expect("instance() made the entry");
        if read_failed {
            self.read_failed += 1;
            m.read_failed += 1;
        }
        let inserted = ev.op != MapOp::OP_CLEAR && !m.keys.contains_key(&key.id);
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

    /// `n` operations of `ev`'s map, site, op and key, counted in the kernel (`ev` is the record
    /// of the operation that took their slot, counted before).
    pub fn add_counted(&mut self, ev: &WriteEvent, key: &Key, n: u64) {
        self.events += n;
        self.ops.add(ev.op, n);
        let id = self.instance(ev.map_type, ev.map_ptr);
        let m = self.maps.get_mut(&id).expect("instance() made the entry");
        let keyed = ev.op != MapOp::OP_CLEAR;
        let known = m.keys.contains_key(&key.id);
        let stored = keyed && (known || self.stored_bytes + key_cost(key) <= KEY_MEMORY_BUDGET);
        if stored && !known {
            self.stored_bytes += key_cost(key);
            self.stored_keys += 1;
        }
        if keyed && !stored {
            self.untracked_key_writes += n;
        }
        m.add_counted(ev.site, ev.op, key, n, stored);
    }

    /// A map header read at a sampled operation that sent no record.
    pub fn header_read(&mut self, map_type: u64, map_ptr: u64, header: &[u64; 4]) {
        if let Some(m) = self.maps.get_mut(&(map_type, map_ptr)) {
            m.header_read(header);
        }
    }

    /// The entry of map instance (type, header address), made if new: instances first seen
    /// once the budget is spent count together (per type) under [`OVERFLOW_INSTANCE`].
    fn instance(&mut self, map_type: u64, map_ptr: u64) -> (u64, u64) {
        let mut id = (map_type, map_ptr);
        if !self.maps.contains_key(&id) {
            if self.stored_bytes + INSTANCE_COST > KEY_MEMORY_BUDGET {
                id.1 = OVERFLOW_INSTANCE;
            } else {
                self.stored_bytes += INSTANCE_COST;
            }
        }
        self.maps.entry(id).or_insert_with(|| MapCounts {
            map_type: id.0,
            map_ptr: id.1,
            ..Default::default()
        });
        id
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
pub(crate) mod tests {
    use super::*;

    /// A write of map `map_ptr` (type 0x1000, one site): the counting tests' fixture.
    pub(crate) fn write(map_ptr: u64) -> WriteEvent {
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

    /// Key `i`.
    pub(crate) fn key(i: u64) -> Key {
        Key {
            id: i.to_le_bytes().to_vec(),
            text: format!("k{i:030}"),
            truncated: false,
        }
    }

    fn op(map_ptr: u64, op: MapOp, site: u64, len: u64) -> WriteEvent {
        WriteEvent {
            op,
            site,
            header: [len, 0, 0, 0],
            flags: EventFlag::EV_HEADER,
            ..write(map_ptr)
        }
    }

    #[test]
    fn deletes_and_clears_count_apart_from_writes() {
        let mut c = ExactCounts::default();
        for _ in 0..3 {
            c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 0), key(1));
            c.add(&op(0xc000, MapOp::OP_DELETE, 0x20, 1), key(1));
        }
        // A key only ever deleted (absent) is a delete, not a written key.
        c.add(&op(0xc000, MapOp::OP_DELETE, 0x20, 0), key(2));
        c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 0), key(3));
        c.add(&op(0xc000, MapOp::OP_CLEAR, 0x30, 1), key(0));
        let m = &c.maps[&(0x1000, 0xc000)];
        assert_eq!((m.writes, m.deletes, m.clears), (4, 4, 1));
        assert_eq!(
            c.ops,
            Ops {
                writes: 4,
                deletes: 4,
                clears: 1
            }
        );
        let top: Vec<(&str, u64, u64)> = m
            .top_deletes(10)
            .iter()
            .map(|k| (k.text.as_str(), k.deletes, k.writes))
            .collect();
        assert_eq!(
            top,
            [(key(1).text.as_str(), 3, 3), (key(2).text.as_str(), 1, 0)]
        );
        let written: Vec<&str> = m.top_keys(10).iter().map(|k| k.text.as_str()).collect();
        assert_eq!(written, [key(1).text.as_str(), key(3).text.as_str()]);
        assert_eq!(m.written_keys(), 2);
        assert_eq!(m.sites[&0x20].deletes, 4);
        assert_eq!(m.sites[&0x30].clears, 1);
        // The last clear left the map empty.
        assert_eq!(m.last_header[0], 0);
        assert_eq!(m.inserted_since_header, 0);
    }

    #[test]
    fn the_length_follows_writes_deletes_and_clears() {
        let mut c = ExactCounts::default();
        let len = |c: &ExactCounts| {
            let m = &c.maps[&(0x1000, 0xc000)];
            m.last_header[0] + m.inserted_since_header
        };
        // Churn: written (len 0 → 1), deleted (1 → 0), written again: inserted again.
        c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 0), key(1));
        assert_eq!(len(&c), 1);
        c.add(&op(0xc000, MapOp::OP_DELETE, 0x20, 1), key(1));
        assert_eq!(len(&c), 0);
        c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 0), key(1));
        assert_eq!(len(&c), 1);
        // Deleting a key that is not there leaves the length.
        c.add(&op(0xc000, MapOp::OP_DELETE, 0x20, 1), key(2));
        assert_eq!(len(&c), 1);
        // After a clear, nothing is present: a delete removes nothing, a write adds.
        c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 1), key(2));
        c.add(&op(0xc000, MapOp::OP_CLEAR, 0x30, 2), key(0));
        assert_eq!(len(&c), 0);
        c.add(&op(0xc000, MapOp::OP_DELETE, 0x20, 0), key(1));
        assert_eq!(len(&c), 0);
        c.add(&op(0xc000, MapOp::OP_WRITE, 0x10, 0), key(2));
        assert_eq!(len(&c), 1);
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
