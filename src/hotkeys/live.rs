//! Budget-mode counting with bounded memory: per map, total observed writes, write sites, and two
//! top-k sketches of keys — one cumulative (the report's counts) and one decayed each window
//! (what is hot now: rates and trends). At most `MAX_MAPS` map instances are tracked; further
//! instances of a type are folded into one entry per type.
use std::collections::HashMap;

use super::exact::{ExactCounts, KeyCount, MapCounts};
use super::sketch::TopK;
use crate::bpf::EventFlag;
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;

/// Keys tracked per map and sketch.
pub const KEYS_PER_MAP: usize = 256;
/// Map instances tracked before folding by type.
pub const MAX_MAPS: usize = 128;
/// How much of a key's recent weight survives each refresh: the steady state of a decayed sum
/// is weight × (1 − DECAY) per refresh.
pub const DECAY: f64 = 0.7;
/// Sites tracked per map (call sites are few; this only bounds pathological code).
const MAX_SITES: usize = 256;

pub struct LiveMap {
    pub map_type: u64,
    pub map_ptr: u64,
    pub observed: u64,
    pub window_observed: u64,
    pub sites: HashMap<u64, u64>,
    pub cumulative: TopK,
    pub recent: TopK,
    pub last_header: [u64; 4],
    /// Recent weight of the top keys at the previous window, for trends.
    prev_recent: HashMap<Vec<u8>, f64>,
}

impl LiveMap {
    fn new(map_type: u64, map_ptr: u64) -> Self {
        LiveMap {
            map_type,
            map_ptr,
            observed: 0,
            window_observed: 0,
            sites: HashMap::new(),
            cumulative: TopK::new(KEYS_PER_MAP),
            recent: TopK::new(KEYS_PER_MAP),
            last_header: [0; 4],
            prev_recent: HashMap::new(),
        }
    }

    /// Trend of a key: its recent weight now over its (decayed) weight a window ago.
    pub fn trend(&self, id: &[u8], now: f64, decay: f64) -> f64 {
        match self.prev_recent.get(id) {
            Some(&prev) if prev > 0.0 => now / (prev * decay).max(1e-9),
            _ => 2.0,
        }
    }
}

#[derive(Default)]
pub struct LiveCounts {
    pub maps: HashMap<(u64, u64), LiveMap>,
    pub events: u64,
    pub read_failed: u64,
}

impl LiveCounts {
    pub fn add(&mut self, ev: &WriteEvent, key: &Key) {
        self.events += 1;
        if ev.flags.has(EventFlag::EV_READ_FAILED) {
            self.read_failed += 1;
        }
        let mut id = (ev.map_type, ev.map_ptr);
        if !self.maps.contains_key(&id) && self.maps.len() >= MAX_MAPS {
            id = (ev.map_type, 0); // fold further instances of this type
        }
        let m = self
            .maps
            .entry(id)
            .or_insert_with(|| LiveMap::new(id.0, id.1));
        m.observed += 1;
        m.window_observed += 1;
        if m.sites.len() < MAX_SITES || m.sites.contains_key(&ev.site) {
            *m.sites.entry(ev.site).or_default() += 1;
        }
        m.cumulative.add(&key.id, &key.text, key.truncated, 1.0);
        m.recent.add(&key.id, &key.text, key.truncated, 1.0);
        // Records arrive in the order they were made: the last one has the newest header.
        m.last_header = ev.header;
    }

    /// Ends a window: remembers the top keys' recent weights (for trends), then decays.
    pub fn end_window(&mut self, decay: f64, top: usize) {
        for m in self.maps.values_mut() {
            m.prev_recent = m
                .recent
                .top(top)
                .into_iter()
                .map(|e| (e.id, e.count))
                .collect();
            m.recent.decay(decay);
            m.window_observed = 0;
        }
    }

    /// The tracked state as exact-style counts over the `top` keys of each map that are hottest
    /// now (observed writes since the start, not yet scaled by coverage), so the report builder
    /// serves both modes.
    pub fn view(&self, top: usize) -> ExactCounts {
        let mut out = ExactCounts {
            events: self.events,
            read_failed: self.read_failed,
            ..Default::default()
        };
        for (id, m) in &self.maps {
            // What is hot now (the decayed sketch) picks the keys; their counts are cumulative.
            let cumulative: HashMap<Vec<u8>, f64> = m
                .cumulative
                .top(KEYS_PER_MAP)
                .into_iter()
                .map(|e| (e.id, e.count))
                .collect();
            let keys = m
                .recent
                .top(top)
                .into_iter()
                .map(|e| {
                    let writes = cumulative.get(&e.id).copied().unwrap_or(e.count).round() as u64;
                    (
                        e.id,
                        KeyCount {
                            text: e.text,
                            truncated: e.truncated,
                            writes,
                        },
                    )
                })
                .collect();
            out.maps.insert(
                *id,
                MapCounts {
                    map_type: m.map_type,
                    map_ptr: m.map_ptr,
                    writes: m.observed,
                    sites: m.sites.clone(),
                    keys,
                    last_header: m.last_header,
                    ..Default::default()
                },
            );
        }
        out
    }

    /// Bytes this can occupy at most, whatever the keys.
    pub fn memory_bound_bytes(key_bytes: usize) -> usize {
        MAX_MAPS * (2 * TopK::memory_bound_bytes(KEYS_PER_MAP, key_bytes) + MAX_SITES * 32 + 4096)
    }
}

/// The tracer's stated peak memory (RSS) for a live view, whatever the keys: the sketches'
/// bound, the ring buffers (64 MiB of write events, 1 MiB of growth events, mapped and touched
/// as they fill), three copies' worth of the target binary (file bytes, function table, names),
/// and 64 MiB for everything else (libbpf, key decoders, the Rust runtime).
pub fn memory_bound_rss(key_bytes: usize, binary_size: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    LiveCounts::memory_bound_bytes(key_bytes) as u64 + 65 * MIB + 3 * binary_size + 64 * MIB
}
