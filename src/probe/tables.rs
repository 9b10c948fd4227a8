//! The kernel's aggregation table as this process sees it: the slots array (writes counted per
//! key, `struct slot`), mapped into memory (BPF_F_MMAPABLE) and read in place — a refresh reads
//! every slot's count without a system call. The programs change a slot under its sequence
//! lock; a read here retries until it sees the slot between two changes.
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Result};
use libbpf_rs::MapCore;

use crate::bpf::RawSlot;

/// One BPF array mapped read-write into this process.
struct Mapped {
    base: NonNull<u8>,
    bytes: usize,
    entries: usize,
    stride: usize,
}

impl Mapped {
    fn new(map: &impl MapCore) -> Result<Mapped> {
        let stride = (map.value_size() as usize).next_multiple_of(8);
        let entries = map.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = (stride * entries).next_multiple_of(page);
        // SAFETY: a shared mapping of a BPF array created with BPF_F_MMAPABLE, at offset 0 and
        // no longer than its values; the kernel keeps the pages alive while mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "mapping the BPF table {}: {}",
                map.name().to_string_lossy(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Mapped {
            base: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            bytes: len,
            entries,
            stride,
        })
    }

    /// The 8-byte word at byte `offset` of entry `i` (`offset` a multiple of 8).
    fn word(&self, i: usize, offset: usize) -> &AtomicU64 {
        assert!(i < self.entries && offset + 8 <= self.stride && offset % 8 == 0);
        // SAFETY: in bounds (checked above) of a live mapping whose base is page-aligned, so
        // the word is 8-byte aligned; the BPF programs change it concurrently, which atomics
        // are made for.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(i * self.stride + offset).cast()) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing uses after this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// A slot's generation and count, read between two changes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotCount {
    pub gen: u64,
    pub count: u64,
}

/// The aggregation slots.
pub struct Slots(Mapped);

/// Reads of a busy slot before giving up for this refresh (a program holds a slot for a few
/// instructions; one that sleeps in a page fault holds it longer).
const BUSY_RETRIES: usize = 1000;

impl Slots {
    pub fn new(map: &impl MapCore) -> Result<Slots> {
        Ok(Slots(Mapped::new(map)?))
    }

    pub fn len(&self) -> usize {
        self.0.entries
    }

    pub fn is_empty(&self) -> bool {
        self.0.entries == 0
    }

    /// Slot `i`'s generation and count; `None` while a program keeps changing it.
    pub fn read(&self, i: usize) -> Option<SlotCount> {
        let seq = self.0.word(i, std::mem::offset_of!(RawSlot, seq));
        let gen = self.0.word(i, std::mem::offset_of!(RawSlot, r#gen));
        let count = self.0.word(i, std::mem::offset_of!(RawSlot, count));
        for _ in 0..BUSY_RETRIES {
            let before = seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let c = SlotCount {
                    gen: gen.load(Ordering::Acquire),
                    count: count.load(Ordering::Acquire),
                };
                if seq.load(Ordering::Acquire) == before {
                    return Some(c);
                }
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Tells the programs the count read last from slot `i`: when a key needs a slot, they
    /// take the one written least since (a hint: no lock needed).
    pub fn set_drained(&self, i: usize, count: u64) {
        self.0
            .word(i, std::mem::offset_of!(RawSlot, drained))
            .store(count, Ordering::Relaxed);
    }
}
