//! SpaceSaving top-k with exponential decay: at most `capacity` keys are tracked; a key not
//! tracked replaces the one with the smallest count and inherits that count as its error bound
//! (so `count - error <= true count <= count`). `decay` scales every count at once (a global
//! factor, renormalised rarely), so keys that cool down lose rank and drop out. The smallest
//! slot is found through a min-heap with lazy invalidation (a version per slot), rebuilt when
//! stale entries pile up: O(log capacity) per add, amortised.
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// A heap entry: (count, slot, slot version when pushed).
#[derive(PartialEq)]
struct HeapItem(f64, usize, u64);

impl Eq for HeapItem {}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

pub struct Entry {
    pub id: Vec<u8>,
    pub text: String,
    pub truncated: bool,
    pub count: f64,
    pub error: f64,
}

struct Slot {
    id: Vec<u8>,
    text: String,
    truncated: bool,
    /// Counts in units of 1/scale.
    raw: f64,
    raw_error: f64,
    version: u64,
}

pub struct TopK {
    capacity: usize,
    slots: Vec<Slot>,
    index: HashMap<Vec<u8>, usize>,
    /// Effective count = raw × scale.
    scale: f64,
    raw_total: f64,
    heap: BinaryHeap<Reverse<HeapItem>>,
}

impl TopK {
    pub fn new(capacity: usize) -> TopK {
        TopK {
            capacity: capacity.max(1),
            slots: Vec::new(),
            index: HashMap::new(),
            scale: 1.0,
            raw_total: 0.0,
            heap: BinaryHeap::new(),
        }
    }

    pub fn add(&mut self, id: &[u8], text: &str, truncated: bool, n: f64) {
        let raw_n = n / self.scale;
        self.raw_total += raw_n;
        if let Some(&i) = self.index.get(id) {
            self.bump(i, raw_n);
            return;
        }
        if self.slots.len() < self.capacity {
            let i = self.slots.len();
            self.index.insert(id.to_vec(), i);
            self.slots.push(Slot {
                id: id.to_vec(),
                text: text.to_string(),
                truncated,
                raw: 0.0,
                raw_error: 0.0,
                version: 0,
            });
            self.bump(i, raw_n);
            return;
        }
        let m = self.pop_min();
        let slot = &mut self.slots[m];
        self.index.remove(&slot.id);
        let floor = slot.raw;
        slot.id.clear();
        slot.id.extend_from_slice(id);
        slot.text.clear();
        slot.text.push_str(text);
        slot.truncated = truncated;
        slot.raw_error = floor;
        self.index.insert(id.to_vec(), m);
        self.bump(m, raw_n);
    }

    /// Adds to a slot and records its new count in the heap (older entries become stale).
    fn bump(&mut self, i: usize, raw_n: f64) {
        let s = &mut self.slots[i];
        s.raw += raw_n;
        s.version += 1;
        self.heap.push(Reverse(HeapItem(s.raw, i, s.version)));
        if self.heap.len() > 8 * self.capacity + 64 {
            self.heap = self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| Reverse(HeapItem(s.raw, i, s.version)))
                .collect();
        }
    }

    /// The slot with the smallest count (all slots in use).
    fn pop_min(&mut self) -> usize {
        while let Some(Reverse(HeapItem(_, i, v))) = self.heap.pop() {
            if self.slots[i].version == v {
                return i;
            }
        }
        0
    }

    pub fn decay(&mut self, factor: f64) {
        if !(factor > 0.0 && factor < 1.0) {
            return;
        }
        self.scale *= factor;
        if self.scale < 1e-120 {
            for s in &mut self.slots {
                s.raw *= self.scale;
                s.raw_error *= self.scale;
            }
            self.raw_total *= self.scale;
            self.scale = 1.0;
            self.heap = self
                .slots
                .iter()
                .enumerate()
                .map(|(i, s)| Reverse(HeapItem(s.raw, i, s.version)))
                .collect();
        }
    }

    pub fn top(&self, n: usize) -> Vec<Entry> {
        let mut idx: Vec<usize> = (0..self.slots.len()).collect();
        idx.sort_by(|&a, &b| {
            self.slots[b]
                .raw
                .total_cmp(&self.slots[a].raw)
                .then_with(|| self.slots[a].text.cmp(&self.slots[b].text))
        });
        idx.truncate(n);
        idx.into_iter()
            .map(|i| {
                let s = &self.slots[i];
                Entry {
                    id: s.id.clone(),
                    text: s.text.clone(),
                    truncated: s.truncated,
                    count: s.raw * self.scale,
                    error: s.raw_error * self.scale,
                }
            })
            .collect()
    }

    pub fn total(&self) -> f64 {
        self.raw_total * self.scale
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes at most: per slot the id twice (slot and index), the text (≤ 8 bytes per captured
    /// byte: escapes and struct separators), fixed overhead, and up to 8 heap entries (24 bytes).
    pub fn memory_bound_bytes(capacity: usize, key_bytes: usize) -> usize {
        let id = key_bytes + 4;
        capacity * (2 * id + 8 * key_bytes + 160 + 8 * 24) + 64 * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipf_stream(n: usize, keys: u64, seed: u64) -> Vec<u64> {
        // Inverse-CDF sampling of Zipf(1) over `keys` keys with a splitmix64 generator.
        let h: Vec<f64> = (1..=keys)
            .scan(0.0, |acc, k| {
                *acc += 1.0 / k as f64;
                Some(*acc)
            })
            .collect();
        let total = *h.last().unwrap();
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let u = (z ^ (z >> 31)) as f64 / u64::MAX as f64 * total;
                h.partition_point(|&c| c < u) as u64
            })
            .collect()
    }

    #[test]
    fn finds_the_true_top_ten_of_a_zipf_stream_within_error_bounds() {
        let stream = zipf_stream(1_000_000, 100_000, 7);
        let mut truth: HashMap<u64, f64> = HashMap::new();
        let mut t = TopK::new(1024);
        for k in &stream {
            *truth.entry(*k).or_default() += 1.0;
            t.add(&k.to_le_bytes(), &k.to_string(), false, 1.0);
        }
        let mut true_top: Vec<(u64, f64)> = truth.iter().map(|(k, c)| (*k, *c)).collect();
        true_top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ours: Vec<String> = t.top(10).into_iter().map(|e| e.text).collect();
        let want: Vec<String> = true_top[..10].iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(ours, want);
        for e in t.top(50) {
            let k: u64 = e.text.parse().unwrap();
            let c = truth[&k];
            assert!(
                e.count - e.error <= c + 1e-6 && c <= e.count + 1e-6,
                "{k}: {c} not in [{}, {}]",
                e.count - e.error,
                e.count
            );
        }
        assert!((t.total() - 1_000_000.0).abs() < 1e-3);
    }

    #[test]
    fn a_key_turning_hot_ranks_first_within_windows_and_drops_after() {
        let stream = zipf_stream(600_000, 10_000, 3);
        let mut t = TopK::new(256);
        let mut first_rank_window = None;
        for (i, k) in stream.iter().enumerate() {
            let hot_phase = (200_000..400_000).contains(&i);
            if hot_phase && i % 10 == 0 {
                t.add(b"hot", "hot", false, 1.0);
            } else {
                t.add(&k.to_le_bytes(), &k.to_string(), false, 1.0);
            }
            if i % 20_000 == 19_999 {
                t.decay(0.5);
                let w = i / 20_000;
                if hot_phase && first_rank_window.is_none() && t.top(1)[0].text == "hot" {
                    first_rank_window = Some(w - 10);
                }
                if i > 480_000 {
                    assert!(
                        !t.top(10).iter().any(|e| e.text == "hot"),
                        "hot still in the top 10 at window {w}"
                    );
                }
            }
        }
        assert!(
            first_rank_window.is_some_and(|w| w <= 3),
            "hot ranked first after {first_rank_window:?} windows"
        );
    }

    #[test]
    fn memory_stays_bounded_with_five_million_distinct_keys() {
        let mut t = TopK::new(1024);
        for i in 0u64..5_000_000 {
            let mut id = [0u8; 20];
            id[..8].copy_from_slice(&i.to_le_bytes());
            t.add(&id, "k", false, 1.0);
            if i % 1_000_000 == 0 {
                assert!(t.len() <= 1024);
            }
        }
        assert_eq!(t.len(), 1024);
        let used: usize = t
            .slots
            .iter()
            .map(|s| s.id.capacity() * 2 + s.text.capacity() + 64)
            .sum::<usize>()
            + t.heap.capacity() * 24;
        assert!(used <= TopK::memory_bound_bytes(1024, 20), "{used}");
    }

    #[test]
    fn edge_cases() {
        let mut t = TopK::new(1);
        assert!(t.top(5).is_empty());
        t.add(b"a", "a", false, 2.0);
        t.add(b"b", "b", false, 1.0);
        let e = t.top(5);
        assert_eq!(
            (e.len(), e[0].text.as_str(), e[0].count, e[0].error),
            (1, "b", 3.0, 2.0)
        );
        t.decay(1.0);
        assert_eq!(t.top(1)[0].count, 3.0);
        t.decay(0.5);
        assert_eq!(t.top(1)[0].count, 1.5);
    }
}
