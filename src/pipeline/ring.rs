//! The session's ring buffer as the intake reads it: every record taken into the [`Intake`] as
//! it is consumed, and the ring sized from what the target sends. A ring starts at the size its
//! mode gives (`probe::load`); when a quarter of it waits to be read, the largest ring it may
//! have (`grow_to`) takes its place: the programs write to whichever ring slot 0 of their
//! `rings` map holds, and the old ring is read to its end before it is let go. So a quiet
//! target costs a small ring and a flooding one gets all the room there is.
use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, RingBuffer, RingBufferBuilder};

use super::intake::{Intake, Sink};
use crate::probe::session::Session;

/// How long a replaced ring is still read: a program that looked it up just before it was
/// replaced may still write to it (programs run for microseconds).
const RETIRE_AFTER: Duration = Duration::from_millis(100);

/// Records read between looks at the ring's backlog: ~1 MiB of short records.
const BATCH: usize = 4096;

/// One ring and the manager reading it.
struct Reader<'cb> {
    manager: RingBuffer<'cb>,
    map: MapHandle,
}

/// A ring replaced by a larger one, read until `until` and then let go.
struct Retiring<'cb> {
    reader: Reader<'cb>,
    until: Instant,
}

pub struct Ring<'cb, 't, S> {
    intake: &'cb RefCell<Intake<'t, S>>,
    /// The programs' `rings` (slot 0: the ring in use).
    slot: MapHandle,
    current: RefCell<Reader<'cb>>,
    retiring: RefCell<Option<Retiring<'cb>>>,
    /// The largest ring it may grow to (its first size: it never grows).
    grow_to: u32,
}

impl<'cb, 't, S: Sink> Ring<'cb, 't, S> {
    /// The ring of `session`, taking records into `intake`; it may grow to `grow_to` bytes.
    pub fn new(
        session: &Session<'_>,
        intake: &'cb RefCell<Intake<'t, S>>,
        grow_to: u32,
    ) -> Result<Self> {
        let first =
            MapHandle::try_from(&session.skel.maps.events).context("setting up the ring buffer")?;
        let slot =
            MapHandle::try_from(&session.skel.maps.rings).context("setting up the ring buffer")?;
        let grow_to = grow_to.max(first.max_entries());
        Ok(Ring {
            intake,
            slot,
            current: RefCell::new(reader(intake, first)?),
            retiring: RefCell::new(None),
            grow_to,
        })
    }

    /// Reads at most `max` records, a batch at a time (between batches the ring may grow: a
    /// target that writes faster than records are read keeps a long read going); how many.
    pub fn consume_n(&self, max: usize) -> Result<usize> {
        self.drain_retiring()?;
        let mut total = 0;
        while total < max {
            self.grow_if_backlogged()?;
            let batch = BATCH.min(max - total);
            let n = read(self.current.borrow().manager.consume_raw_n(batch))?;
            total += n;
            if n < batch {
                break;
            }
        }
        Ok(total)
    }

    /// Reads every record waiting.
    pub fn consume(&self) -> Result<()> {
        self.consume_n(usize::MAX).map(|_| ())
    }

    /// Takes in everything the programs sent so far: the ring's records, then the counts in
    /// the kernel's slots of `session` (in that order, see [`Intake::drain`]).
    pub fn take_all(&self, session: &Session<'_>) -> Result<()> {
        self.consume()?;
        if let Some(slots) = &session.slots {
            self.intake.borrow_mut().drain(slots);
        }
        Ok(())
    }

    /// The fd that polls readable when a record is ready in the ring in use.
    pub fn epoll_fd(&self) -> i32 {
        self.current.borrow().manager.epoll_fd()
    }

    /// The size of the ring in use.
    pub fn size(&self) -> u32 {
        self.current.borrow().map.max_entries()
    }

    /// Reads what waits in a replaced ring (older than the records of the ring in use), and
    /// lets it go once nothing can write to it any more.
    fn drain_retiring(&self) -> Result<()> {
        let mut retiring = self.retiring.borrow_mut();
        let Some(r) = retiring.as_ref() else {
            return Ok(());
        };
        // Nothing new comes into it but what programs already running send: this ends.
        read(r.reader.manager.consume_raw())?;
        if r.until <= Instant::now() {
            *retiring = None;
        }
        Ok(())
    }

    /// Puts the largest ring in place of the one in use when a quarter of that waits.
    fn grow_if_backlogged(&self) -> Result<()> {
        let size = self.size();
        if size >= self.grow_to || self.retiring.borrow().is_some() {
            return Ok(());
        }
        let waiting = backlog(&self.current.borrow().manager);
        if waiting * 4 < u64::from(size) {
            return Ok(());
        }
        let map = MapHandle::create(
            MapType::RingBuf,
            Some("events"),
            0,
            0,
            self.grow_to,
            &libbpf_rs::libbpf_sys::bpf_map_create_opts {
                sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
                ..Default::default()
            },
        )
        .with_context(|| format!("a ring buffer of {} bytes", self.grow_to))?;
        let next = reader(self.intake, map)?;
        let fd = next.map.as_fd().as_raw_fd() as u32;
        self.slot
            .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("putting the larger ring buffer in place")?;
        let old = self.current.replace(next);
        *self.retiring.borrow_mut() = Some(Retiring {
            reader: old,
            until: Instant::now() + RETIRE_AFTER,
        });
        if std::env::var_os("EMT_DEBUG").is_some() {
            eprintln!(
                "ring: {waiting} of {size} bytes waiting: a ring of {} bytes took over",
                self.grow_to
            );
        }
        Ok(())
    }
}

/// A manager reading `map` into `intake`.
fn reader<'cb, S: Sink>(
    intake: &'cb RefCell<Intake<'_, S>>,
    map: MapHandle,
) -> Result<Reader<'cb>> {
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&map, move |data: &[u8]| {
            intake.borrow_mut().take(data);
            0
        })
        .context("setting up the ring buffer")?;
    let manager = builder.build().context("setting up the ring buffer")?;
    Ok(Reader { manager, map })
}

/// Records read, from what libbpf returns.
fn read(n: i32) -> Result<usize> {
    if n < 0 {
        return Err(std::io::Error::from_raw_os_error(-n)).context("reading events");
    }
    Ok(n as usize)
}

/// Bytes waiting to be read in the one ring `manager` reads.
fn backlog(manager: &RingBuffer<'_>) -> u64 {
    use libbpf_rs::{libbpf_sys, AsRawLibbpf};
    // SAFETY: the manager is alive and reads one ring, ring 0.
    unsafe {
        let r = libbpf_sys::ring_buffer__ring(manager.as_libbpf_object().as_ptr(), 0);
        if r.is_null() {
            0
        } else {
            libbpf_sys::ring__avail_data_size(r) as u64
        }
    }
}
