//! The intake: what a session's programs send → decoded map operations (writes, deletes,
//! clears, with their keys) and growths (tied to their triggering writes) → a [`Sink`] that counts
//! them (and calls the caller's hooks). Every tracing command takes operations in through here,
//! from two sources: ring-buffer records ([`Intake::take`]: each operation, or with counts
//! aggregated in the kernel the operations that took a slot or could not be aggregated, plus
//! growths and sampled map headers), and the kernel's slots ([`Intake::drain`]: the operations
//! counted there since the last drain). `sync.Map` operations come in as map operations (see
//! `decode::syncmap`); the internal map of a `sync.Map` is kept out.

use super::tracee::Tracee;
use crate::bpf::MapOp;
use crate::decode::internals::{GrowthMatcher, Trigger};
use crate::decode::keys::{Decoders, Key};
use crate::decode::records::{GrowEvent, GrowStart, HeaderRead, Record, WriteEvent};
use crate::decode::slots::Ledger;
use crate::decode::syncmap::{SyncFunctions, SYNC_MAP};
use crate::gobin::TypeReader;
use crate::probe::session::Session;
use crate::probe::tables::Slots;
use crate::report::Aggregation;

/// Where decoded map operations and growths go.
pub trait Sink {
    /// One map operation's record (a write, delete or clear: `ev.op`) and its decoded key
    /// (empty for a clear).
    fn write(&mut self, ev: &WriteEvent, key: Key);
    /// `n` writes counted in the kernel, of the map, site and key of `ev` (the record of the
    /// write that took their slot).
    fn counted(&mut self, ev: &WriteEvent, key: &Key, n: u64);
    /// A map header read at a sampled write that sent no record.
    fn header(&mut self, _h: &HeaderRead) {}
    /// One growth (already matched to its trigger in [`Intake::growth`]).
    fn grow(&mut self, _g: &GrowEvent) {}
}

/// Decodes records and drained counts for one binary into `sink`.
pub struct Intake<'t, S> {
    types: Option<TypeReader<'t>>,
    decoders: Decoders,
    /// What was counted of each kernel slot.
    ledger: Ledger,
    /// Map types whose operations are kept out (a `sync.Map`'s own dirty map).
    hidden: Vec<u64>,
    sync_functions: SyncFunctions,
    /// Growths tied to their triggering writes.
    pub growth: GrowthMatcher,
    pub sink: S,
    /// Records taken in so far.
    pub records: u64,
}

impl<'t, S: Sink> Intake<'t, S> {
    /// For the process of `tracee`.
    pub fn new(tracee: &'t Tracee, sink: S) -> Self {
        let bin = &tracee.bin;
        let types = bin.types();
        Intake {
            hidden: tracee.hidden_map_types.clone(),
            sync_functions: SyncFunctions::of(bin),
            types,
            decoders: Decoders::default(),
            ledger: Ledger::default(),
            growth: GrowthMatcher::default(),
            sink,
            records: 0,
        }
    }

    /// One ring-buffer record.
    pub fn take(&mut self, data: &[u8]) {
        self.records += 1;
        match Record::parse(data) {
            Some(Record::Write(mut ev)) => {
                // Deleting from or clearing a nil map does nothing (the runtime is still
                // called): there is no map to count it on.
                if ev.op != MapOp::OP_WRITE && ev.map_ptr == 0 {
                    return;
                }
                if ev.map_type == SYNC_MAP {
                    ev.site = self.sync_functions.caller(ev.site, &ev.header[..3]);
                }
                let key = self.decoders.decode(&ev, self.types.as_ref());
                // A kept-out map's write still takes its slot (and ends the count of the key
                // it evicts).
                if let Some((evicted, n)) = self.ledger.took(&ev, &key) {
                    if !self.hidden.contains(&evicted.write.map_type) {
                        self.sink.counted(&evicted.write, &evicted.key, n);
                    }
                }
                if self.hidden.contains(&ev.map_type) {
                    return;
                }
                if ev.op == MapOp::OP_WRITE {
                    self.growth.on_write(&ev, &key.text);
                }
                self.sink.write(&ev, key);
            }
            Some(Record::GrowStart(g)) => {
                let counted = self.counted_trigger(&g);
                self.growth.on_grow_start(&g, counted);
            }
            Some(Record::Grow(g)) if self.hidden.contains(&g.map_type) => {
                self.growth.forget(&g);
            }
            Some(Record::Grow(g)) => {
                self.growth.on_grow(&g);
                self.sink.grow(&g);
            }
            Some(Record::Header(h)) if self.hidden.contains(&h.map_type) => {}
            Some(Record::Header(h)) => self.sink.header(&h),
            Some(Record::Alarm) | None => {}
        }
    }

    /// The write that triggered growth `g`, when it was counted in a slot.
    fn counted_trigger(&self, g: &GrowStart) -> Option<Trigger> {
        let (slot, gen) = g.trigger?;
        let k = self.ledger.key_of(slot, gen)?;
        Some(Trigger {
            map_ptr: k.write.map_ptr,
            key: k.key.text.clone(),
            site: k.write.site,
        })
    }

    /// The writes counted in the kernel's `slots` since the last drain. Take the ring's records
    /// in first: a slot's count is read only for generations whose record was taken in.
    pub fn drain(&mut self, slots: &Slots) {
        for i in 0..slots.len() {
            let Some(now) = slots.read(i) else { continue };
            if now.gen == 0 {
                continue;
            }
            if let Some((k, n)) = self.ledger.progress(i, now) {
                if !self.hidden.contains(&k.write.map_type) {
                    self.sink.counted(&k.write, &k.key, n);
                }
                slots.set_drained(i, now.count);
            }
        }
    }
}

/// How the session's writes were counted in the kernel, when they were (for the report).
pub fn aggregation(session: &Session<'_>) -> Option<Aggregation> {
    let slots = session.slots.as_ref()?;
    let c = session.counters();
    Some(Aggregation {
        slots: slots.len() as u64,
        slot_takes: c.slot_taken,
        evictions: c.evicted,
        collisions: c.collisions,
        as_records: c.as_record,
    })
}
