//! Exact counts: every write of the target counted once, per map instance (type and header
//! address), per call site and per key identity.
use std::collections::{HashMap, HashSet};

use crate::keys::Key;
use crate::probe::events::WriteEvent;

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
    /// The header as read at the last write, and whether that write added a new key.
    pub last_header: [u64; 4],
    pub last_inserted: bool,
    /// Growths of this map, in time order.
    pub growth: Vec<crate::internals::Growth>,
}

impl MapCounts {
    fn add(&mut self, ev: &WriteEvent, key: Key) {
        self.writes += 1;
        *self.sites.entry(ev.site).or_default() += 1;
        let inserted = !self.keys.contains_key(&key.id);
        let k = self.keys.entry(key.id).or_insert_with(|| KeyCount {
            text: key.text,
            truncated: key.truncated,
            writes: 0,
        });
        k.writes += 1;
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
}

impl ExactCounts {
    /// Attaches resolved growths to their maps (a map seen only growing gets an entry too).
    pub fn add_growth(&mut self, resolved: Vec<((u64, u64), crate::internals::Growth)>) {
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

    pub fn add(&mut self, ev: &WriteEvent, key: Key, read_failed: bool) {
        self.events += 1;
        let m = self
            .maps
            .entry((ev.map_type, ev.map_ptr))
            .or_insert_with(|| MapCounts {
                map_type: ev.map_type,
                map_ptr: ev.map_ptr,
                ..Default::default()
            });
        if read_failed {
            self.read_failed += 1;
            m.read_failed += 1;
        }
        m.add(ev, key);
    }
}
