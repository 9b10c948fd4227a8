//! The intake: a session's ring-buffer records → typed records → decoded writes (with their
//! keys) and growths (tied to their triggering writes) → a [`Sink`] that counts them (and calls
//! the caller's hooks). Every tracing command takes records in through here.
//!
//! Per-write records are today's only source. A second source of counts (per-CPU counters
//! aggregated in the kernel and drained each refresh) enters here too, next to [`Intake::take`],
//! feeding the same sinks.
use std::cell::RefCell;

use anyhow::{Context, Result};
use libbpf_rs::{RingBuffer, RingBufferBuilder};

use crate::decode::internals::GrowthMatcher;
use crate::decode::keys::{Decoders, Key};
use crate::decode::records::{GrowEvent, Record, WriteEvent};
use crate::gobin::TypeReader;
use crate::probe::session::Session;

/// Where decoded writes and growths go.
pub trait Sink {
    /// One write and its decoded key.
    fn write(&mut self, ev: &WriteEvent, key: Key);
    /// One growth (already matched to its trigger in [`Intake::growth`]).
    fn grow(&mut self, _g: &GrowEvent) {}
}

/// Decodes records for one binary into `sink`.
pub struct Intake<'t, S> {
    types: Option<TypeReader<'t>>,
    decoders: Decoders,
    /// Growths tied to their triggering writes.
    pub growth: GrowthMatcher,
    pub sink: S,
}

impl<'t, S: Sink> Intake<'t, S> {
    /// `types`: the binary's type descriptors (key layouts), where it has them.
    pub fn new(types: Option<TypeReader<'t>>, sink: S) -> Self {
        Intake {
            types,
            decoders: Decoders::default(),
            growth: GrowthMatcher::default(),
            sink,
        }
    }

    /// One ring-buffer record.
    pub fn take(&mut self, data: &[u8]) {
        match Record::parse(data) {
            Some(Record::Write(ev)) => {
                let key = self.decoders.decode(&ev, self.types.as_ref());
                self.growth.on_write(&ev, &key.text);
                self.sink.write(&ev, key);
            }
            Some(Record::GrowStart(g)) => self.growth.on_grow_start(&g),
            Some(Record::Grow(g)) => {
                self.growth.on_grow(&g);
                self.sink.grow(&g);
            }
            None => {}
        }
    }
}

/// The session's ring buffer, every record taken into `intake` as it is consumed.
pub fn ring<'cb, S: Sink>(
    session: &Session<'_>,
    intake: &'cb RefCell<Intake<'_, S>>,
) -> Result<RingBuffer<'cb>> {
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&session.skel.maps.events, |data: &[u8]| {
            intake.borrow_mut().take(data);
            0
        })
        .context("setting up the ring buffer")?;
    builder.build().context("setting up the ring buffer")
}
