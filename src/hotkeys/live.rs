//! Live counting with bounded memory (`top`, `trace`, `serve`): per map, total observed writes,
//! deletes and clears, sites, and three top-k sketches of keys — writes cumulative (the report's
//! counts), writes decayed each refresh (what is hot now: rates and trends), and deletes
//! cumulative; per map too, its counts in each budget window by stratum (its dispersion and
//! census share, `sampling::Strata`) and its rate: recent writes per tick of the target's
//! progress clock observed, times that clock's ticks per second now (or, every write seen,
//! writes per second). A key's rate is its share of the map's recent
//! writes. At most `MAX_MAPS` map instances are tracked; further instances of a type are folded
//! into one entry per type, and so are their growths.
use std::collections::HashMap;

use super::exact::{ExactCounts, KeyCount, MapCounts, Ops};
use super::sketch::TopK;
use crate::bpf::{EventFlag, MapOp};
use crate::decode::internals::Growth;
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;
use crate::sampling::{ClosedWindow, Extrapolation, Strata};

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
    /// Writes observed.
    pub observed: u64,
    pub deletes: u64,
    pub clears: u64,
    pub sites: HashMap<u64, Ops>,
    pub cumulative: TopK,
    pub recent: TopK,
    /// Deletes per key.
    pub deleted: TopK,
    pub last_header: [u64; 4],
    /// Recent weight of the top keys at the previous refresh, for trends.
    prev_recent: HashMap<Vec<u8>, f64>,
    /// This map's counts window by window (its dispersion, and what census windows counted).
    strata: Strata,
    /// Observed at the last refresh; recent writes (decayed like `recent`); writes per second.
    at_refresh: u64,
    recent_writes: f64,
    per_s: f64,
}

impl LiveMap {
    fn new(map_type: u64, map_ptr: u64) -> Self {
        LiveMap {
            map_type,
            map_ptr,
            observed: 0,
            deletes: 0,
            clears: 0,
            sites: HashMap::new(),
            cumulative: TopK::new(KEYS_PER_MAP),
            recent: TopK::new(KEYS_PER_MAP),
            deleted: TopK::new(KEYS_PER_MAP),
            last_header: [0; 4],
            prev_recent: HashMap::new(),
            strata: Strata::default(),
            at_refresh: 0,
            recent_writes: 0.0,
            per_s: 0.0,
        }
    }

    /// Exact-style counts of the `top` keys hottest now (what the decayed sketch picks; their
    /// counts are cumulative, with the sketch's over-count as `error`) with their rates and
    /// trends, and of the `top` most deleted keys; the map's rate and dispersion under `x`.
    fn view(&self, top: usize, x: &Extrapolation) -> MapCounts {
        let counts = |sketch: &TopK| -> HashMap<Vec<u8>, (f64, f64)> {
            sketch
                .top(KEYS_PER_MAP)
                .into_iter()
                .map(|e| (e.id, (e.count, e.error)))
                .collect()
        };
        let (writes, deletes) = (counts(&self.cumulative), counts(&self.deleted));
        let recent = self.recent.top(KEYS_PER_MAP);
        let key_rates = recent.iter().map(|e| self.key_rate(e.count)).collect();
        let mut keys: HashMap<Vec<u8>, KeyCount> = HashMap::new();
        let hot = recent.into_iter().take(top).map(|e| (Some(e.count), e));
        let deleted = self.deleted.top(top).into_iter().map(|e| (None, e));
        for (recent_weight, e) in hot.chain(deleted) {
            // A recent key missing from the cumulative top counts its recent weight, which may
            // be all over-count.
            let or = recent_weight.unwrap_or(0.0);
            let (w, error) = writes.get(&e.id).copied().unwrap_or((or, or));
            let k = KeyCount {
                writes: w.round() as u64,
                error: error.round() as u64,
                deletes: deletes.get(&e.id).map_or(0.0, |d| d.0).round() as u64,
                per_s: recent_weight.map(|r| self.key_rate(r)),
                trend: recent_weight.map(|r| self.trend(&e.id, r)),
                text: e.text,
                truncated: e.truncated,
                ..Default::default()
            };
            keys.entry(e.id).or_insert(k);
        }
        MapCounts {
            map_type: self.map_type,
            map_ptr: self.map_ptr,
            writes: self.observed,
            deletes: self.deletes,
            clears: self.clears,
            sites: self.sites.clone(),
            keys,
            last_header: self.last_header,
            per_s: Some(self.per_s),
            dispersion: x.dispersion_of(&self.strata),
            census_ops: self.strata.census_ops(self.ops(), x),
            key_rates,
            ..Default::default()
        }
    }

    fn ops(&self) -> u64 {
        self.observed + self.deletes + self.clears
    }

    /// Trend of a key: its recent weight now over its recent weight a refresh ago, both read at
    /// the same point of a refresh (before the decay): 1 for a key written at a steady rate,
    /// above 1 for one written faster lately. A key new to the top counts as doubling.
    pub fn trend(&self, id: &[u8], now: f64) -> f64 {
        match self.prev_recent.get(id) {
            Some(&prev) if prev > 0.0 => now / prev,
            _ => 2.0,
        }
    }

    /// Estimated writes per second of a key whose recent weight is `recent`.
    fn key_rate(&self, recent: f64) -> f64 {
        if self.recent_writes > 0.0 {
            self.per_s * (recent / self.recent_writes).min(1.0)
        } else {
            0.0
        }
    }
}

/// What the rates of a refresh are measured on.
#[derive(Clone, Copy, Debug)]
pub enum RateBasis {
    /// Every write seen: writes over the refresh's seconds.
    Exact { seconds: f64 },
    /// Budget windows: a map's recent writes per tick of the target's progress clock observed
    /// (in windows), times the clock's ticks per second over the refresh (windows or not); the
    /// clock the estimator counts progress by (`sampling::Clock`).
    Sampled {
        seconds: f64,
        progress_observed: f64,
        progress: f64,
    },
}

#[derive(Default)]
pub struct LiveCounts {
    pub maps: HashMap<(u64, u64), LiveMap>,
    pub events: u64,
    pub read_failed: u64,
    /// Progress clock ticks observed recently (decayed like each map's recent writes).
    recent_progress: f64,
}

impl LiveCounts {
    /// One operation's record (its key decoded).
    pub fn add(&mut self, ev: &WriteEvent, key: &Key) {
        if ev.flags.has(EventFlag::EV_READ_FAILED) {
            self.read_failed += 1;
        }
        let m = self.add_n(ev, key, 1);
        if let Some(h) = ev.header().filter(|_| ev.op == MapOp::OP_WRITE) {
            // Records arrive in the order they were made: the last write's is the newest.
            m.last_header = *h;
        }
    }

    /// `n` operations of `ev`'s map, site, op and key, counted in the kernel.
    pub fn add_counted(&mut self, ev: &WriteEvent, key: &Key, n: u64) {
        self.add_n(ev, key, n);
    }

    /// A map header read at a sampled operation that sent no record.
    pub fn header_read(&mut self, map_type: u64, map_ptr: u64, header: &[u64; 4]) {
        if let Some(m) = self.maps.get_mut(&(map_type, map_ptr)) {
            m.last_header = *header;
        }
    }

    fn add_n(&mut self, ev: &WriteEvent, key: &Key, n: u64) -> &mut LiveMap {
        self.events += n;
        let mut id = (ev.map_type, ev.map_ptr);
        if !self.maps.contains_key(&id) && self.maps.len() >= MAX_MAPS {
            id = (ev.map_type, 0); // fold further instances of this type
        }
        let m = self
            .maps
            .entry(id)
            .or_insert_with(|| LiveMap::new(id.0, id.1));
        if m.sites.len() < MAX_SITES || m.sites.contains_key(&ev.site) {
            m.sites.entry(ev.site).or_default().add(ev.op, n);
        }
        let w = n as f64;
        match ev.op {
            MapOp::OP_DELETE => {
                m.deletes += n;
                m.deleted.add(&key.id, &key.text, key.truncated, w);
            }
            MapOp::OP_CLEAR => m.clears += n,
            _ => {
                m.observed += n;
                m.cumulative.add(&key.id, &key.text, key.truncated, w);
                m.recent.add(&key.id, &key.text, key.truncated, w);
            }
        }
        m
    }

    /// A budget window closed (`w`, its records all taken in): each map's counts in it.
    pub fn close_window(&mut self, w: &ClosedWindow) {
        for m in self.maps.values_mut() {
            let now = (m.observed, m.ops());
            m.strata.close_window(now, &w.span, w.census);
        }
    }

    /// Sets every map's rate for the refresh that ends now.
    pub fn measure_rates(&mut self, basis: RateBasis) {
        if let RateBasis::Sampled {
            progress_observed, ..
        } = basis
        {
            self.recent_progress += progress_observed;
        }
        for m in self.maps.values_mut() {
            let new = (m.observed - m.at_refresh) as f64;
            m.at_refresh = m.observed;
            m.recent_writes += new;
            m.per_s = match basis {
                RateBasis::Exact { seconds } => new / seconds.max(1e-6),
                RateBasis::Sampled {
                    seconds, progress, ..
                } if self.recent_progress > 0.0 => {
                    m.recent_writes / self.recent_progress * progress / seconds.max(1e-6)
                }
                RateBasis::Sampled { .. } => 0.0,
            };
        }
    }

    /// Ends a refresh: remembers the top keys' recent weights (for trends), then decays.
    pub fn end_refresh(&mut self, decay: f64, top: usize) {
        self.recent_progress *= decay;
        for m in self.maps.values_mut() {
            m.prev_recent = m
                .recent
                .top(top)
                .into_iter()
                .map(|e| (e.id, e.count))
                .collect();
            m.recent.decay(decay);
            m.recent_writes *= decay;
        }
    }

    /// The tracked state as exact-style counts over the `top` keys of each map that are hottest
    /// now (observed writes since the start, not yet scaled by `x`; each map's rate, dispersion
    /// under `x`, and its keys' rates and trends), so the report builder serves both modes.
    pub fn view(&self, top: usize, x: &Extrapolation) -> ExactCounts {
        let mut out = ExactCounts {
            events: self.events,
            read_failed: self.read_failed,
            ..Default::default()
        };
        for (id, m) in &self.maps {
            out.ops.merge(&Ops {
                writes: m.observed,
                deletes: m.deletes,
                clears: m.clears,
            });
            out.maps.insert(*id, m.view(top, x));
        }
        out
    }

    /// Growths resolved so far, onto the map entries their writes count in (instances past
    /// `MAX_MAPS` fold by type, as their writes do).
    pub fn add_growth(&self, view: &mut ExactCounts, resolved: &[((u64, u64), Growth)]) {
        let folded: Vec<((u64, u64), Growth)> = resolved
            .iter()
            .map(|((t, p), g)| {
                let id = if self.maps.contains_key(&(*t, *p)) {
                    (*t, *p)
                } else {
                    (*t, 0)
                };
                (id, g.clone())
            })
            .collect();
        view.add_growth(folded);
    }

    /// Bytes this can occupy at most, whatever the keys.
    pub fn memory_bound_bytes(key_bytes: usize) -> usize {
        MAX_MAPS * (3 * TopK::memory_bound_bytes(KEYS_PER_MAP, key_bytes) + MAX_SITES * 48 + 4096)
    }
}

/// The tracer's stated peak memory (RSS) for a live view of one process, whatever the keys:
/// the sketches' bound, its ring buffer of `ring_bytes` counted twice (libbpf maps its pages
/// twice, for reads across the wrap; they are resident once written), three copies' worth of
/// the target binary (its pages read while parsing, function table, names), and 64 MiB for
/// everything else (libbpf, key decoders, the Rust runtime, the HTTP server).
pub fn memory_bound_rss(key_bytes: usize, binary_size: u64, ring_bytes: u32) -> u64 {
    const MIB: u64 = 1 << 20;
    LiveCounts::memory_bound_bytes(key_bytes) as u64
        + 2 * u64::from(ring_bytes)
        + 3 * binary_size
        + 64 * MIB
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotkeys::exact::tests::{key, write};

    /// The trends of keys 1 and 2 after a refresh in which they took `n1` and `n2` writes.
    fn refresh(c: &mut LiveCounts, n1: u64, n2: u64) -> (f64, f64) {
        c.add_counted(&write(0xc000), &key(1), n1);
        c.add_counted(&write(0xc000), &key(2), n2);
        let view = c.view(10, &Extrapolation::EXACT);
        let keys = &view.maps[&(0x1000, 0xc000)].keys;
        let trend = |i: u64| keys[&key(i).id].trend.unwrap();
        let t = (trend(1), trend(2));
        c.end_refresh(DECAY, 10);
        t
    }

    #[test]
    fn a_key_written_steadily_trends_flat_and_one_written_faster_trends_up() {
        let mut c = LiveCounts::default();
        for _ in 0..30 {
            refresh(&mut c, 100, 100);
        }
        let (steady, _) = refresh(&mut c, 100, 100);
        assert!((steady - 1.0).abs() < 0.01, "steady key's trend {steady}");
        // Key 2 doubles its rate; key 1 keeps it.
        let (steady, faster) = refresh(&mut c, 100, 200);
        assert!((steady - 1.0).abs() < 0.01, "steady key's trend {steady}");
        assert!(faster > 1.2, "a key written twice as fast: trend {faster}");
        // Key 2 stops: its trend falls to the decay.
        let (_, stopped) = refresh(&mut c, 100, 0);
        assert!(stopped < 0.8, "a key no longer written: trend {stopped}");
    }
}
