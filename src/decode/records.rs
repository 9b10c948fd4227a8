//! One map write as received from the ring buffer, copied out of the kernel's record.
use crate::bpf::{RawGrowEvent, RawGrowStart, RawWriteEvent, EVENT_HEADER};

#[derive(Clone, Debug)]
pub struct WriteEvent {
    /// Kernel time of the write; 0 unless the session asked for timestamps.
    pub ts_ns: u64,
    /// Link-time address of the map's type descriptor.
    pub map_type: u64,
    /// Runtime address of the map header (instance identity when the map is on the heap).
    pub map_ptr: u64,
    /// Link-time return address into the writing function.
    pub site: u64,
    /// Goroutine id; 0 unless the session asked for goroutine ids.
    pub goid: u64,
    /// First 32 bytes of the map header before the write (see `struct write_event`).
    pub header: [u64; 4],
    /// With stack capture: the frame-pointer walk (link-time; frame 0 is the map function).
    pub stack: Vec<u64>,
    pub pid: u32,
    pub tid: u32,
    pub key_len: u32,
    pub role: u8,
    pub flags: u8,
    pub key: Vec<u8>,
}

impl WriteEvent {
    /// Parses a record; `None` if it is shorter than its header says.
    pub fn parse(data: &[u8]) -> Option<WriteEvent> {
        if data.len() < EVENT_HEADER {
            return None;
        }
        let mut raw = RawWriteEvent::default();
        // SAFETY: RawWriteEvent is plain old data generated from the C struct; we copy at most
        // its size, and the header bytes are present (checked above).
        unsafe {
            let n = data.len().min(std::mem::size_of::<RawWriteEvent>());
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (&mut raw as *mut RawWriteEvent).cast::<u8>(),
                n,
            );
        }
        let captured = usize::from(raw.captured)
            .min(crate::bpf::KEY_MAX)
            .min(data.len() - EVENT_HEADER);
        Some(WriteEvent {
            ts_ns: raw.ts_ns,
            map_type: raw.map_type,
            map_ptr: raw.map_ptr,
            site: raw.site,
            goid: raw.goid,
            header: raw.header,
            stack: raw.stack[..(raw.stack_len as usize).min(raw.stack.len())].to_vec(),
            pid: raw.pid,
            tid: raw.tid,
            key_len: raw.key_len,
            role: raw.role,
            flags: raw.flags,
            key: raw.key[..captured].to_vec(),
        })
    }
}

/// One map growth (entry to RET of a growth function).
#[derive(Clone, Copy, Debug)]
pub struct GrowEvent {
    pub start_ns: u64,
    pub end_ns: u64,
    pub map_type: u64,
    pub map_ptr: u64,
    pub goid: u64,
    pub before: [u64; 2],
    pub after: [u64; 2],
    pub pid: u32,
    /// Thread that entered the growth function (as in its `GrowStart`).
    pub tid: u32,
    pub role: u32,
    pub flags: u32,
}

impl GrowEvent {
    pub fn parse(data: &[u8]) -> Option<GrowEvent> {
        if data.len() < std::mem::size_of::<RawGrowEvent>() {
            return None;
        }
        // SAFETY: the record is at least as long as the plain-old-data struct (checked above);
        // read_unaligned copes with any alignment of the ring buffer's bytes.
        let raw: RawGrowEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
        Some(GrowEvent {
            start_ns: raw.start_ns,
            end_ns: raw.end_ns,
            map_type: raw.map_type,
            map_ptr: raw.map_ptr,
            goid: raw.goid,
            before: raw.before,
            after: raw.after,
            pid: raw.pid,
            tid: raw.tid,
            role: raw.role,
            flags: raw.flags,
        })
    }
}

/// The entry into a growth function: its thread's previous write triggered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowStart {
    pub start_ns: u64,
    pub pid: u32,
    pub tid: u32,
}

/// A ring-buffer record: writes and growths share one ring (so their order is the order they
/// happened in) and are told apart by size.
pub enum Record {
    Write(WriteEvent),
    GrowStart(GrowStart),
    Grow(GrowEvent),
}

const GROW_EVENT_SIZE: usize = std::mem::size_of::<RawGrowEvent>();
const GROW_START_SIZE: usize = std::mem::size_of::<RawGrowStart>();
const _: () = assert!(GROW_EVENT_SIZE < EVENT_HEADER && GROW_START_SIZE < EVENT_HEADER);

impl Record {
    pub fn parse(data: &[u8]) -> Option<Record> {
        match data.len() {
            GROW_EVENT_SIZE => GrowEvent::parse(data).map(Record::Grow),
            GROW_START_SIZE => {
                // SAFETY: the record has exactly the plain-old-data struct's size;
                // read_unaligned copes with any alignment.
                let raw: RawGrowStart = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
                Some(Record::GrowStart(GrowStart {
                    start_ns: raw.start_ns,
                    pid: raw.pid,
                    tid: raw.tid,
                }))
            }
            _ => WriteEvent::parse(data).map(Record::Write),
        }
    }
}

/// Frames `bpf_get_stack` fills at most (`STACK_MAX` of src/bpf/maptrace.h), read from the
/// generated struct's array length.
pub fn stack_frames() -> usize {
    fn len<const N: usize>(_: fn(&RawWriteEvent) -> &[u64; N]) -> usize {
        N
    }
    len(|e| &e.stack)
}

impl WriteEvent {
    /// The writing goroutine's stack as link-time return addresses, innermost first: the direct
    /// caller of the map function (`site`), then the frame-pointer walk past the map function
    /// (frame 0). Kernels that recognise a probe at a function's entry (`push rbp`) put the direct
    /// caller ([RSP]) in frame 1 themselves; older ones (and `sub rsp` prologues) skip it, so
    /// `site` is added only when it is missing. Empty without stack capture.
    pub fn caller_stack(&self) -> impl Iterator<Item = u64> + '_ {
        let walk = self.stack.get(1..).unwrap_or(&[]);
        let caller =
            (!self.stack.is_empty() && walk.first() != Some(&self.site)).then_some(self.site);
        caller.into_iter().chain(walk.iter().copied())
    }

    /// Whether the walk filled every frame: the outermost frames may be missing.
    pub fn stack_truncated(&self) -> bool {
        self.stack.len() >= stack_frames()
    }
}
