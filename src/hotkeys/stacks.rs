//! Writes per goroutine stack, map type and key, for `--pprof` and `--folded`. Exact mode keeps
//! every stack and every key exactly. Live (budget) mode is bounded: at most `MAX_STACKS` stacks
//! (further ones are counted per map type as `[other stacks]`), and per stack a SpaceSaving
//! top-k of `KEYS_PER_STACK` keys whose guaranteed counts are reported, the remainder as
//! `[other keys]`. Nothing is dropped: per stack the key counts plus the remainder equal its writes.
use std::collections::HashMap;

use super::sketch::TopK;
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;

/// Distinct (stack, map type) entries tracked in bounded mode.
pub const MAX_STACKS: usize = 1024;
/// Keys tracked per stack in bounded mode.
pub const KEYS_PER_STACK: usize = 8;
/// Map types with their own `[other stacks]` count in bounded mode (type addresses come from
/// the binary, so there are few; this only bounds pathological input). Further ones count as
/// type 0.
const MAX_OTHER_TYPES: usize = 1024;

/// One stack: link-time return addresses, innermost (the writing function) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackId<'a> {
    pub map_type: u64,
    pub frames: &'a [u64],
    /// The walk filled every frame: outer frames may be missing.
    pub truncated: bool,
}

/// How a stack is stored and looked up: `[map_type, truncated, frames…]`, so that a lookup
/// needs no allocation (a reused buffer serves as the key).
type Packed = Box<[u64]>;

fn unpack(p: &[u64]) -> StackId<'_> {
    StackId {
        map_type: p[0],
        truncated: p[1] != 0,
        frames: &p[2..],
    }
}

enum Keys {
    Exact(HashMap<Vec<u8>, (String, u64)>),
    Bounded(Box<TopK>),
}

struct Entry {
    writes: u64,
    keys: Keys,
}

impl Entry {
    fn add(&mut self, key: &Key) {
        self.writes += 1;
        match &mut self.keys {
            Keys::Exact(m) => match m.get_mut(key.id.as_slice()) {
                Some(c) => c.1 += 1,
                None => {
                    m.insert(key.id.clone(), (key.text.clone(), 1));
                }
            },
            Keys::Bounded(t) => t.add(&key.id, &key.text, key.truncated, 1.0),
        }
    }
}

/// A counted (stack, key) pair as the encoders see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// `None`: the `[other stacks]` entry of this map type.
    pub stack: Option<StackId<'a>>,
    pub map_type: u64,
    /// `None`: keys not named (`[other keys]`).
    pub key: Option<String>,
    pub writes: u64,
}

pub struct StackCounts {
    bounded: bool,
    stacks: HashMap<Packed, Entry>,
    other_stacks: HashMap<u64, u64>,
    scratch: Vec<u64>,
    pub events: u64,
}

impl StackCounts {
    /// Every stack and key, exactly (exact mode).
    pub fn exact() -> Self {
        Self::new(false)
    }

    /// Memory bounded whatever the target does (live views).
    pub fn bounded() -> Self {
        Self::new(true)
    }

    fn new(bounded: bool) -> Self {
        StackCounts {
            bounded,
            stacks: HashMap::new(),
            other_stacks: HashMap::new(),
            scratch: Vec::new(),
            events: 0,
        }
    }

    pub fn add(&mut self, ev: &WriteEvent, key: &Key) {
        self.events += 1;
        self.scratch.clear();
        self.scratch
            .extend([ev.map_type, u64::from(ev.stack_truncated())]);
        self.scratch.extend(ev.caller_stack());
        if let Some(e) = self.stacks.get_mut(self.scratch.as_slice()) {
            e.add(key);
            return;
        }
        if self.bounded && self.stacks.len() >= MAX_STACKS {
            let ty = if self.other_stacks.len() < MAX_OTHER_TYPES
                || self.other_stacks.contains_key(&ev.map_type)
            {
                ev.map_type
            } else {
                0
            };
            *self.other_stacks.entry(ty).or_default() += 1;
            return;
        }
        let keys = if self.bounded {
            Keys::Bounded(Box::new(TopK::new(KEYS_PER_STACK)))
        } else {
            Keys::Exact(HashMap::new())
        };
        self.stacks
            .entry(self.scratch.as_slice().into())
            .or_insert(Entry { writes: 0, keys })
            .add(key);
    }

    /// Every count, keys by writes (descending) within a stack; at most `keys_per_stack` keys
    /// per stack are named, the rest of its writes form one `[other keys]` sample. The samples'
    /// writes add up to `events`.
    pub fn samples(&self, keys_per_stack: usize) -> Vec<Sample<'_>> {
        let mut out = Vec::new();
        for (packed, e) in &self.stacks {
            let id = unpack(packed);
            let mut named: Vec<(String, u64)> = match &e.keys {
                Keys::Exact(m) => m.values().map(|(t, n)| (t.clone(), *n)).collect(),
                // The guaranteed part of a SpaceSaving count (count − error) is a lower bound of
                // the key's true count: what it over-counts stays in `[other keys]`.
                Keys::Bounded(t) => t
                    .top(KEYS_PER_STACK)
                    .into_iter()
                    .map(|e| (e.text, (e.count - e.error).max(0.0).floor() as u64))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            };
            named.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            named.truncate(keys_per_stack);
            let mut rest = e.writes;
            for (text, n) in named {
                let n = n.min(rest);
                rest -= n;
                out.push(Sample {
                    stack: Some(id),
                    map_type: id.map_type,
                    key: Some(text),
                    writes: n,
                });
            }
            if rest > 0 {
                out.push(Sample {
                    stack: Some(id),
                    map_type: id.map_type,
                    key: None,
                    writes: rest,
                });
            }
        }
        for (ty, n) in &self.other_stacks {
            out.push(Sample {
                stack: None,
                map_type: *ty,
                key: None,
                writes: *n,
            });
        }
        out
    }

    /// Writes per (stack, map type), keys not told apart; `None` = `[other stacks]`.
    pub fn per_stack(&self) -> Vec<(Option<StackId<'_>>, u64, u64)> {
        let mut out: Vec<(Option<StackId<'_>>, u64, u64)> = self
            .stacks
            .iter()
            .map(|(p, e)| (Some(unpack(p)), p[0], e.writes))
            .collect();
        out.extend(self.other_stacks.iter().map(|(ty, n)| (None, *ty, *n)));
        out
    }

    /// Distinct stacks tracked (bounded by `MAX_STACKS` in bounded mode).
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.other_stacks.is_empty()
    }

    /// Bytes the bounded mode can occupy at most, whatever the keys and stacks.
    pub fn memory_bound_bytes(key_bytes: usize) -> usize {
        let frames = crate::bpf::STACK_MAX;
        MAX_STACKS * (TopK::memory_bound_bytes(KEYS_PER_STACK, key_bytes) + frames * 8 + 256)
            + MAX_OTHER_TYPES * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(map_type: u64, stack: Vec<u64>) -> WriteEvent {
        WriteEvent {
            map_type,
            site: stack.get(1).copied().unwrap_or(0),
            goid: 1,
            stack,
            pid: 1,
            tid: 1,
            key_len: 1,
            role: crate::bpf::ProbeRole::ROLE_ASSIGN_FASTSTR,
            ..Default::default()
        }
    }

    fn key(s: &str) -> Key {
        Key {
            id: s.as_bytes().to_vec(),
            text: s.into(),
            truncated: false,
        }
    }

    #[test]
    fn bounded_mode_counts_every_write_and_caps_stacks() {
        let mut c = StackCounts::bounded();
        let total = MAX_STACKS as u64 + 500;
        for i in 0..total {
            for k in 0..(KEYS_PER_STACK as u64 + 3) {
                c.add(&ev(7, vec![0x100, 0x200 + i, 0x300]), &key(&k.to_string()));
            }
        }
        assert_eq!(c.len(), MAX_STACKS);
        let s = c.samples(usize::MAX);
        let sum: u64 = s.iter().map(|s| s.writes).sum();
        assert_eq!(sum, c.events);
        let other: u64 = s
            .iter()
            .filter(|s| s.stack.is_none())
            .map(|s| s.writes)
            .sum();
        assert_eq!(other, 500 * (KEYS_PER_STACK as u64 + 3));
        assert!(s.iter().any(|s| s.stack.is_some() && s.key.is_none()));
    }

    #[test]
    fn bounded_mode_memory_bound_is_small() {
        let bound = StackCounts::memory_bound_bytes(256);
        eprintln!(
            "stack counts bound: {} bytes (64-byte keys), {bound} (256-byte keys)",
            StackCounts::memory_bound_bytes(64)
        );
        let bound64 = StackCounts::memory_bound_bytes(64);
        assert!(bound64 < 24 << 20, "{bound64} bytes for 64-byte keys");
        assert!(bound < 32 << 20, "{bound} bytes for 256-byte keys");
    }

    #[test]
    fn exact_mode_keeps_every_key() {
        let mut c = StackCounts::exact();
        for k in 0..100u64 {
            for _ in 0..=k {
                c.add(&ev(7, vec![0x100, 0x200, 0x300]), &key(&k.to_string()));
            }
        }
        let s = c.samples(usize::MAX);
        assert_eq!(s.len(), 100);
        assert_eq!(
            s.iter()
                .find(|s| s.key.as_deref() == Some("42"))
                .unwrap()
                .writes,
            43
        );
        let s = c.samples(10);
        assert_eq!(s.len(), 11);
        assert_eq!(s.iter().map(|s| s.writes).sum::<u64>(), c.events);
    }
}
