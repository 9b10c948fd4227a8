//! Counts aggregated in the kernel's slots (`struct slot`), accounted for exactly: per slot, the
//! generation whose key userspace knows (from the record of the write that took the slot, which
//! counted as one write) and how many of its writes were counted so far. Reading the slot's
//! count adds what is new; the record of the write that takes the slot next carries the final
//! count of the key it evicts, which adds the rest. Records are read in the order they were
//! made, and a generation's record comes before its eviction's, so every write of every
//! generation is counted once — provided the records are taken in before each reading of the
//! slots (a generation userspace has no record of yet is left for the next reading).
use crate::decode::keys::Key;
use crate::decode::records::WriteEvent;
use crate::probe::tables::SlotCount;

/// A slot generation's key: the write that took the slot, and its decoded key.
#[derive(Clone, Debug)]
pub struct SlotKey {
    pub write: WriteEvent,
    pub key: Key,
}

struct State {
    gen: u64,
    counted: u64,
    key: SlotKey,
    /// The generation before, kept for growth triggers named by it.
    prev: Option<(u64, SlotKey)>,
}

/// What userspace has counted of each slot.
#[derive(Default)]
pub struct Ledger {
    slots: Vec<Option<State>>,
}

impl Ledger {
    /// A record of a write that took slot `t` for `key` (the write itself counts from the
    /// record). Returns the evicted generation's key and the writes of it not counted yet.
    pub fn took(&mut self, write: &WriteEvent, key: &Key) -> Option<(SlotKey, u64)> {
        let t = write.slot?;
        let i = t.index as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        let next = State {
            gen: t.gen,
            counted: 1,
            key: SlotKey {
                write: write.clone(),
                key: key.clone(),
            },
            prev: None,
        };
        let old = self.slots[i].replace(next)?;
        let rest = (old.gen + 1 == t.gen)
            .then(|| t.evicted.saturating_sub(old.counted))
            .filter(|&n| n > 0);
        let cur = self.slots[i].as_mut()?;
        cur.prev = Some((old.gen, old.key.clone()));
        rest.map(|n| (old.key, n))
    }

    /// Slot `index` read now: its key and the writes not counted yet. `None` when there are
    /// none, or when the slot holds a generation whose record has not been taken in yet.
    pub fn progress(&mut self, index: usize, now: SlotCount) -> Option<(&SlotKey, u64)> {
        let st = self.slots.get_mut(index)?.as_mut()?;
        if st.gen != now.gen || now.count <= st.counted {
            return None;
        }
        let n = now.count - st.counted;
        st.counted = now.count;
        Some((&st.key, n))
    }

    /// The key of slot `index` in generation `gen` (the current one or the one before).
    pub fn key_of(&self, index: u32, gen: u64) -> Option<&SlotKey> {
        let st = self.slots.get(index as usize)?.as_ref()?;
        if st.gen == gen {
            return Some(&st.key);
        }
        st.prev.as_ref().filter(|(g, _)| *g == gen).map(|(_, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::records::SlotTake;

    fn take(index: u32, gen: u64, evicted: u64, key: &str) -> (WriteEvent, Key) {
        let w = WriteEvent {
            slot: Some(SlotTake {
                index,
                gen,
                evicted,
            }),
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let k = Key {
            id: key.as_bytes().to_vec(),
            text: key.into(),
            truncated: false,
        };
        (w, k)
    }

    #[test]
    fn every_write_of_every_generation_counts_once() {
        let mut l = Ledger::default();
        let mut total = std::collections::HashMap::<String, u64>::new();
        let mut add = |k: &str, n: u64| *total.entry(k.to_string()).or_default() += n;
        // "a" takes slot 3 (1 write, from its record), reaches 10, is read at 4 and at 10.
        let (w, k) = take(3, 1, 0, "a");
        assert!(l.took(&w, &k).is_none());
        add("a", 1);
        for count in [4, 4, 10] {
            if let Some((k, n)) = l.progress(3, SlotCount { gen: 1, count }) {
                add(&k.key.text, n);
            }
        }
        // "b" evicts "a" after 13 writes of it; 3 were not read from the slot.
        let (w, k) = take(3, 2, 13, "b");
        let (old, n) = l.took(&w, &k).expect("a's last writes");
        add(&old.key.text, n);
        add("b", 1);
        // A reading that finds generation 3 before its record: left for later.
        assert!(l.progress(3, SlotCount { gen: 3, count: 5 }).is_none());
        // "c" takes it from "b" (7 writes, none read from the slot), then is read at 5.
        let (w, k) = take(3, 3, 7, "c");
        let (old, n) = l.took(&w, &k).expect("b's writes");
        add(&old.key.text, n);
        add("c", 1);
        if let Some((k, n)) = l.progress(3, SlotCount { gen: 3, count: 5 }) {
            add(&k.key.text, n);
        }
        assert_eq!(total["a"], 13);
        assert_eq!(total["b"], 7);
        assert_eq!(total["c"], 5);
        // Growth triggers name the current generation or the one before.
        assert_eq!(l.key_of(3, 3).map(|k| k.key.text.as_str()), Some("c"));
        assert_eq!(l.key_of(3, 2).map(|k| k.key.text.as_str()), Some("b"));
        assert!(l.key_of(3, 1).is_none());
    }
}
