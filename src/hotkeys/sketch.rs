//! The bounded-memory hot-key engine of budget mode (`top`, `trace`, `serve`): per map, a
//! SpaceSaving top-k of keys whose counts decay each window, so a key that turns hot ranks within
//! a few windows and one that cools down drops out, in memory fixed by the capacity whatever the
//! number of distinct keys. A key not tracked takes the slot of the smallest count and inherits
//! that count as its error bound, so `count - error <= true (decayed) count <= count`. `decay`
//! only multiplies a global scale (counts are stored divided by it, and renormalised rarely):
//! scaling every count alike keeps their order and SpaceSaving's bound. The smallest count is the
//! root of an indexed min-heap updated in place; keys are found through a hash table of slot
//! numbers (`hashbrown::HashTable`), so a key's bytes are stored once, in its slot, whose buffer
//! is reused when the slot changes hands: `add` allocates nothing once slots have grown to the
//! keys' sizes.
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::mem::size_of;

use hashbrown::HashTable;

/// Text kept per identity byte, plus `TEXT_SLACK`: Go's `%v` of a key is rarely longer (decimal
/// ints, floats, hex, lossy UTF-8). Longer texts (structs of bools, arrays of empty structs) are
/// cut and end with "…", so that a slot's size is bounded by its identity's.
const TEXT_PER_ID_BYTE: usize = 4;
const TEXT_SLACK: usize = 32;
const ELLIPSIS: &str = "…";
/// Allowance for the allocator's header and rounding per small allocation (glibc: < 32 bytes)...
const ALLOC_OVERHEAD: usize = 32;
/// ...and per large one, which may be served by whole pages.
const BIG_ALLOC_OVERHEAD: usize = 4096;
/// Counts are renormalised when the global scale falls below this: stored counts stay far from
/// overflow (each add is stored as n / scale), and renormalising, O(capacity), is rare.
const RENORMALISE_BELOW: f64 = 1e-60;
/// Slot numbers fit in 32 bits.
const MAX_CAPACITY: usize = 1 << 28;

/// A tracked key, as `top` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: Vec<u8>,
    pub text: String,
    pub truncated: bool,
    /// Decayed writes, an over-estimate by at most `error`.
    pub count: f64,
    pub error: f64,
}

struct Slot {
    /// The identity bytes, then the text (UTF-8): one allocation per slot, reused by the next key.
    buf: Vec<u8>,
    id_len: u32,
    /// The identity's hash (kept so that eviction and the table's growth need not hash again).
    hash: u64,
    /// Where this slot's node is in `heap`.
    heap_pos: u32,
    truncated: bool,
    /// The error bound, in units of 1/scale.
    raw_error: f64,
}

impl Slot {
    fn id(&self) -> &[u8] {
        &self.buf[..self.id_len as usize]
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[self.id_len as usize..]).unwrap_or_default()
    }

    /// Stores a new key, growing the buffer to exactly what it needs (never by doubling, so a
    /// buffer is never larger than the largest key it held).
    fn set_key(&mut self, id: &[u8], text: &str, truncated: bool, hash: u64) {
        let limit = TEXT_PER_ID_BYTE * id.len() + TEXT_SLACK;
        let (text, cut) = if text.len() <= limit {
            (text, false)
        } else {
            let mut end = limit - ELLIPSIS.len();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (&text[..end], true)
        };
        let len = id.len() + text.len() + if cut { ELLIPSIS.len() } else { 0 };
        self.buf.clear();
        self.buf.reserve_exact(len);
        self.buf.extend_from_slice(id);
        self.buf.extend_from_slice(text.as_bytes());
        if cut {
            self.buf.extend_from_slice(ELLIPSIS.as_bytes());
        }
        self.id_len = id.len() as u32;
        self.hash = hash;
        self.truncated = truncated;
    }
}

/// A heap node: a slot's count (in units of 1/scale) kept next to its number, so that sifting
/// compares counts without visiting slots.
#[derive(Clone, Copy)]
struct Node {
    raw: f64,
    slot: u32,
}

/// A top-k sketch of one map's keys.
pub struct TopK {
    capacity: usize,
    slots: Vec<Slot>,
    /// Min-heap of counts, one node per slot.
    heap: Vec<Node>,
    /// Slot numbers by their identity's hash.
    table: HashTable<u32>,
    /// Keyed per sketch (SipHash): keys come from the traced program, possibly from its users,
    /// and must not be able to make lookups collide on purpose.
    hasher: RandomState,
    /// A count is `raw × scale`.
    scale: f64,
    raw_total: f64,
}

impl TopK {
    /// At most `capacity` keys are tracked (memory bound: see `memory_bound_bytes`). A capacity
    /// of 0 counts as 1.
    pub fn new(capacity: usize) -> TopK {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        TopK {
            capacity,
            slots: Vec::new(),
            heap: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
            scale: 1.0,
            raw_total: 0.0,
        }
    }

    /// `n` writes of key `id` (identity bytes; `text` is how it prints). O(log capacity), less
    /// for hot keys (they sit near the heap's leaves). The text of a key already tracked is kept;
    /// `n` that is not a positive finite number is ignored (SpaceSaving's bound needs counts that
    /// only grow between decays).
    pub fn add(&mut self, id: &[u8], text: &str, truncated: bool, n: f64) {
        if !(n > 0.0 && n.is_finite()) {
            return;
        }
        let raw_n = n / self.scale;
        self.raw_total += raw_n;
        let hash = self.hasher.hash_one(id);
        if let Some(s) = self.find(id, hash) {
            let pos = self.slots[s].heap_pos as usize;
            self.heap[pos].raw += raw_n;
            self.sift_down(pos);
            return;
        }
        if self.slots.len() < self.capacity {
            let s = self.slots.len();
            reserve_bounded(&mut self.slots, self.capacity);
            reserve_bounded(&mut self.heap, self.capacity);
            let mut slot = Slot {
                buf: Vec::new(),
                id_len: 0,
                hash,
                heap_pos: s as u32,
                truncated,
                raw_error: 0.0,
            };
            slot.set_key(id, text, truncated, hash);
            self.slots.push(slot);
            self.heap.push(Node {
                raw: raw_n,
                slot: s as u32,
            });
            self.table_insert(hash, s);
            self.sift_up(s);
            return;
        }
        // Full: the smallest count gives its slot to the new key, which may have had up to that
        // many writes while untracked.
        let Node { raw: floor, slot } = self.heap[0];
        let s = slot as usize;
        self.table_remove(s);
        self.slots[s].set_key(id, text, truncated, hash);
        self.slots[s].raw_error = floor;
        self.table_insert(hash, s);
        self.heap[0].raw = floor + raw_n;
        self.sift_down(0);
    }

    /// Multiplies every count (and error) by `factor` in (0,1]: called once per window so that
    /// keys that cool down lose rank. O(1) amortised. Other factors are ignored.
    pub fn decay(&mut self, factor: f64) {
        if !(factor > 0.0 && factor < 1.0) {
            return;
        }
        self.scale *= factor;
        if self.scale < RENORMALISE_BELOW {
            // Multiplying by a positive constant keeps the heap's order (ties at worst).
            for node in &mut self.heap {
                node.raw *= self.scale;
            }
            for slot in &mut self.slots {
                slot.raw_error *= self.scale;
            }
            self.raw_total *= self.scale;
            self.scale = 1.0;
        }
    }

    /// The `n` keys with the largest counts, descending (ties by text, then identity); `error` is
    /// the SpaceSaving over-estimate bound. O(capacity + n log n).
    pub fn top(&self, n: usize) -> Vec<Entry> {
        let n = n.min(self.heap.len());
        if n == 0 {
            return Vec::new();
        }
        let rank = |a: &&Node, b: &&Node| {
            let (sa, sb) = (&self.slots[a.slot as usize], &self.slots[b.slot as usize]);
            b.raw
                .total_cmp(&a.raw)
                .then_with(|| sa.text().cmp(sb.text()))
                .then_with(|| sa.id().cmp(sb.id()))
        };
        let mut order: Vec<&Node> = self.heap.iter().collect();
        if n < order.len() {
            order.select_nth_unstable_by(n - 1, rank);
            order.truncate(n);
        }
        order.sort_unstable_by(rank);
        order
            .into_iter()
            .map(|node| {
                let s = &self.slots[node.slot as usize];
                Entry {
                    id: s.id().to_vec(),
                    text: s.text().to_owned(),
                    truncated: s.truncated,
                    count: node.raw * self.scale,
                    error: s.raw_error * self.scale,
                }
            })
            .collect()
    }

    /// Total weight added (after decay), for shares.
    pub fn total(&self) -> f64 {
        self.raw_total * self.scale
    }

    /// Keys tracked now (at most the capacity).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes occupied now, counted as `memory_bound_bytes` counts them: what was asked of the
    /// allocator plus its overhead allowance per allocation.
    pub fn bytes_used(&self) -> usize {
        let bufs: usize = self
            .slots
            .iter()
            .map(|s| match s.buf.capacity() {
                0 => 0,
                c => c + ALLOC_OVERHEAD,
            })
            .sum();
        size_of::<TopK>()
            + 3 * BIG_ALLOC_OVERHEAD
            + self.slots.capacity() * size_of::<Slot>()
            + self.heap.capacity() * size_of::<Node>()
            + self.table.allocation_size()
            + bufs
    }

    /// Upper bound of bytes this sketch can occupy given `key_bytes` captured per key (ids of at
    /// most `key_bytes + 4` bytes), for any number of distinct keys: per slot, its record, heap
    /// node and buffer (identity and text, text at most 4 bytes per identity byte + 32), plus
    /// the table (see `max_table_bytes`).
    pub fn memory_bound_bytes(capacity: usize, key_bytes: usize) -> usize {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let id = key_bytes + 4;
        let buf = id + TEXT_PER_ID_BYTE * id + TEXT_SLACK + ALLOC_OVERHEAD;
        size_of::<TopK>()
            + 3 * BIG_ALLOC_OVERHEAD
            + capacity * (size_of::<Slot>() + size_of::<Node>() + buf)
            + max_table_bytes(capacity)
    }

    fn find(&self, id: &[u8], hash: u64) -> Option<usize> {
        let slots = &self.slots;
        self.table
            .find(hash, |&s| slots[s as usize].id() == id)
            .map(|&s| s as usize)
    }

    /// Records slot `s` under `hash` (the table grows to at most what `capacity` slots need).
    fn table_insert(&mut self, hash: u64, s: usize) {
        let slots = &self.slots;
        self.table
            .insert_unique(hash, s as u32, |&t| slots[t as usize].hash);
    }

    /// Removes slot `s` from the table (before its key changes).
    fn table_remove(&mut self, s: usize) {
        if let Ok(entry) = self
            .table
            .find_entry(self.slots[s].hash, |&t| t as usize == s)
        {
            entry.remove();
        }
    }

    fn set_node(&mut self, pos: usize, node: Node) {
        self.heap[pos] = node;
        self.slots[node.slot as usize].heap_pos = pos as u32;
    }

    /// Restores the heap after the node at `pos` grew.
    fn sift_down(&mut self, mut pos: usize) {
        let node = self.heap[pos];
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].raw < self.heap[left].raw {
                right
            } else {
                left
            };
            if self.heap[child].raw >= node.raw {
                break;
            }
            self.set_node(pos, self.heap[child]);
            pos = child;
        }
        self.set_node(pos, node);
    }

    /// Restores the heap after a node was pushed at `pos`.
    fn sift_up(&mut self, mut pos: usize) {
        let node = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[parent].raw <= node.raw {
                break;
            }
            self.set_node(pos, self.heap[parent]);
            pos = parent;
        }
        self.set_node(pos, node);
    }
}

/// Bytes the table can take for `capacity` slots: hashbrown's buckets (a power of two, at
/// most 7/8 full; 4 or 8 for small tables), each a slot number and a control byte, plus a group
/// of trailing control bytes and alignment.
fn max_table_bytes(capacity: usize) -> usize {
    let buckets = match capacity {
        0..=3 => 4,
        4..=7 => 8,
        _ => (capacity * 8 / 7 + 1).next_power_of_two(),
    };
    buckets * (size_of::<u32>() + 1) + 32
}

/// Makes room for one more element without capacity exceeding `limit` (plain `push` doubles,
/// which would overshoot the memory bound by up to 2×).
fn reserve_bounded<T>(v: &mut Vec<T>, limit: usize) {
    if v.len() == v.capacity() {
        let want = (v.capacity() * 2).max(4).min(limit);
        v.reserve_exact(want - v.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Splitmix64: a deterministic stream, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Zipf(1) over ranks 0..keys by inverse CDF: rank r has weight 1/(r+1).
    struct Zipf {
        cdf: Vec<f64>,
        rng: Rng,
    }

    impl Zipf {
        fn new(keys: usize, seed: u64) -> Zipf {
            let mut acc = 0.0;
            let cdf = (1..=keys)
                .map(|k| {
                    acc += 1.0 / k as f64;
                    acc
                })
                .collect();
            Zipf {
                cdf,
                rng: Rng(seed),
            }
        }

        fn sample(&mut self) -> usize {
            let u = self.rng.unit() * self.cdf[self.cdf.len() - 1];
            self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
        }
    }

    fn id_of(k: usize) -> [u8; 8] {
        (k as u64).to_le_bytes()
    }

    fn rank_of(e: &Entry) -> usize {
        u64::from_le_bytes(e.id[..].try_into().unwrap()) as usize
    }

    /// Table, heap and slots agree: every slot is found by its id, positions are right, and no
    /// node is smaller than its parent.
    fn check_invariants(t: &TopK) {
        assert_eq!(t.slots.len(), t.heap.len());
        assert_eq!(t.table.len(), t.slots.len());
        for (s, slot) in t.slots.iter().enumerate() {
            assert_eq!(t.find(slot.id(), slot.hash), Some(s));
            assert_eq!(t.heap[slot.heap_pos as usize].slot as usize, s);
        }
        for pos in 1..t.heap.len() {
            assert!(t.heap[(pos - 1) / 2].raw <= t.heap[pos].raw);
        }
    }

    #[test]
    fn zipf_top_ten_is_exact_and_every_estimate_bounds_the_truth() {
        let keys = 100_000;
        let mut zipf = Zipf::new(keys, 7);
        let mut truth = vec![0.0f64; keys];
        let mut t = TopK::new(1024);
        for _ in 0..1_000_000 {
            let k = zipf.sample();
            truth[k] += 1.0;
            t.add(&id_of(k), &k.to_string(), false, 1.0);
        }
        check_invariants(&t);
        let mut by_truth: Vec<usize> = (0..keys).collect();
        by_truth.sort_by(|&a, &b| truth[b].total_cmp(&truth[a]).then(a.cmp(&b)));
        let mut want = by_truth[..10].to_vec();
        let mut got: Vec<usize> = t.top(10).iter().map(rank_of).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "top-10 recall below 1");
        let all = t.top(usize::MAX);
        assert_eq!(all.len(), 1024);
        for e in &all {
            let c = truth[rank_of(e)];
            assert!(
                e.count - e.error <= c + 1e-6 && c <= e.count + 1e-6,
                "{}: true {c} outside [{}, {}]",
                e.text,
                e.count - e.error,
                e.count
            );
            assert_eq!(e.text, rank_of(e).to_string());
        }
        assert!((t.total() - 1_000_000.0).abs() < 1e-6);
    }

    #[test]
    fn bounds_hold_under_decay_and_churn() {
        // Small capacity, many keys: constant eviction; the decayed truth stays within bounds.
        let mut zipf = Zipf::new(5_000, 11);
        let mut truth: HashMap<usize, f64> = HashMap::new();
        let mut t = TopK::new(64);
        for i in 0..200_000 {
            let k = zipf.sample();
            *truth.entry(k).or_default() += 1.0;
            t.add(&id_of(k), &k.to_string(), false, 1.0);
            if i % 1_000 == 999 {
                for e in t.top(64) {
                    let c = truth.get(&rank_of(&e)).copied().unwrap_or(0.0);
                    let eps = 1e-9 * e.count.max(1.0);
                    assert!(e.count - e.error <= c + eps && c <= e.count + eps);
                }
                check_invariants(&t);
                t.decay(0.7);
                truth.values_mut().for_each(|c| *c *= 0.7);
            }
        }
        let total: f64 = truth.values().sum();
        assert!((t.total() - total).abs() < 1e-6 * total);
    }

    #[test]
    fn a_key_turning_hot_ranks_first_within_three_windows_and_drops_after() {
        // Windows of 20k adds, decay 0.5 at each end; "hot" takes 10% of adds in windows 10..20.
        let mut zipf = Zipf::new(100_000, 3);
        let mut t = TopK::new(1024);
        let (mut first_ranked, mut dropped) = (None, None);
        for i in 0..600_000 {
            let hot_phase = (200_000..400_000).contains(&i);
            if hot_phase && i % 10 == 0 {
                t.add(b"hot", "hot", false, 1.0);
            } else {
                let k = zipf.sample();
                t.add(&id_of(k), &k.to_string(), false, 1.0);
            }
            if i % 20_000 != 19_999 {
                continue;
            }
            let window = i / 20_000; // the one ending now
            let top = t.top(10);
            let first = top[0].text == "hot";
            let in_top = top.iter().any(|e| e.text == "hot");
            if hot_phase {
                // Once first, it stays first while hot.
                assert!(
                    first || first_ranked.is_none(),
                    "hot lost rank 1 at {window}"
                );
                if first && first_ranked.is_none() {
                    first_ranked = Some(window - 9);
                }
            } else if window >= 20 {
                // Once out, it stays out.
                assert!(
                    !in_top || dropped.is_none(),
                    "hot back in the top at {window}"
                );
                if !in_top && dropped.is_none() {
                    dropped = Some(window - 19);
                }
            }
            t.decay(0.5);
        }
        assert!(
            first_ranked.is_some_and(|w| w <= 3),
            "hot ranked first after {first_ranked:?} windows"
        );
        assert!(
            dropped.is_some_and(|w| w <= 5),
            "hot left the top 10 after {dropped:?} windows"
        );
    }

    #[test]
    fn memory_stays_bounded_with_five_million_distinct_keys() {
        // Every thousandth key has a text far longer than its identity (with multi-byte
        // characters at the cut), which the bound must absorb.
        let long = "{true false} é".repeat(50);
        let hex = "0123456789abcdef".repeat(8);
        let mut t = TopK::new(1024);
        let bound = TopK::memory_bound_bytes(1024, 20);
        let mut id = [0u8; 20];
        for i in 0u64..5_000_000 {
            id[..8].copy_from_slice(&i.to_le_bytes());
            id[8..16].copy_from_slice(&(i ^ 0x5555).to_le_bytes());
            let at = i as usize % 40;
            let text = if i % 1_000 == 0 {
                &long[..]
            } else {
                &hex[at..at + 40]
            };
            t.add(&id, text, false, 1.0);
            assert!(t.len() <= 1024);
            if i % 500_000 == 0 {
                assert!(t.bytes_used() <= bound, "{} > {bound}", t.bytes_used());
            }
        }
        assert_eq!(t.len(), 1024);
        check_invariants(&t);
        assert!(t.bytes_used() <= bound, "{} > {bound}", t.bytes_used());
        for e in t.top(1024) {
            assert!(e.text.len() <= TEXT_PER_ID_BYTE * 20 + TEXT_SLACK);
        }
    }

    #[test]
    fn edge_cases() {
        // Empty.
        let t = TopK::new(4);
        assert!(t.top(3).is_empty() && t.is_empty() && t.total() == 0.0);

        // Capacity 1 (and 0, which counts as 1): the newcomer inherits the count as its error.
        for cap in [0, 1] {
            let mut t = TopK::new(cap);
            t.add(b"a", "a", false, 2.0);
            t.add(b"b", "b", true, 1.0);
            let e = t.top(5);
            assert_eq!(e.len(), 1);
            assert_eq!((e[0].text.as_str(), e[0].truncated), ("b", true));
            assert_eq!((e[0].count, e[0].error), (3.0, 2.0));
            assert!(t.top(0).is_empty());
        }

        // n larger than tracked, order by count then text; the first text of a key is kept.
        let mut t = TopK::new(8);
        t.add(b"x", "x", false, 1.0);
        t.add(b"y", "y", false, 5.0);
        t.add(b"z", "z", false, 1.0);
        t.add(b"y", "other text", false, 1.0);
        let texts: Vec<String> = t.top(100).into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["y", "x", "z"]);
        assert_eq!(t.top(100)[0].count, 6.0);

        // decay(1.0) and invalid factors change nothing; 0.5 halves counts and total.
        for f in [1.0, 0.0, -1.0, 2.0, f64::NAN] {
            t.decay(f);
        }
        assert_eq!((t.top(1)[0].count, t.total()), (6.0, 8.0));
        t.decay(0.5);
        assert_eq!((t.top(1)[0].count, t.total()), (3.0, 4.0));

        // Non-positive or non-finite weights are ignored.
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            t.add(b"w", "w", false, n);
        }
        assert_eq!((t.len(), t.total()), (3, 4.0));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let mut t = TopK::new(2);
        let text = "ü".repeat(100); // 200 bytes for a 1-byte identity
        t.add(b"k", &text, false, 1.0);
        let e = &t.top(1)[0];
        assert!(e.text.len() <= TEXT_PER_ID_BYTE + TEXT_SLACK);
        assert!(e.text.ends_with(ELLIPSIS) && e.text.starts_with("üü"));
        assert!(!e.truncated);
        t.add(b"", "", false, 1.0);
        // Equal counts rank by text: the empty key first.
        assert_eq!((t.top(2)[0].id.len(), t.top(2)[0].text.as_str()), (0, ""));
    }

    #[test]
    fn counts_survive_renormalisation() {
        // A key written once per window converges to 1 / (1 - 0.5) = 2 through many rescalings.
        let mut t = TopK::new(4);
        for _ in 0..5_000 {
            t.add(b"a", "a", false, 1.0);
            t.decay(0.5);
        }
        let e = &t.top(1)[0];
        assert!((e.count - 1.0).abs() < 1e-9, "{}", e.count); // just decayed: 2 × 0.5
        assert!((t.total() - 1.0).abs() < 1e-9);
        assert!(t.scale >= RENORMALISE_BELOW);
        t.add(b"b", "b", false, 3.0);
        assert_eq!(t.top(1)[0].text, "b");
    }
}
