//! Ring-buffer records as typed values: every record starts with its `enum record_type` tag
//! (`maptrace.h`), and [`Record::parse`] dispatches on it — a map operation (a write, delete or
//! clear: [`WriteEvent::op`], copied out of the kernel's record, which is cut short to what it
//! carries), the entry into a growth function, a growth, or a map header read at a sampled
//! operation.
use crate::bpf::{
    EventFlag, GrowRole, MapOp, ProbeRole, RawGrowEvent, RawGrowStart, RawHeaderEvent,
    RawWriteEvent, RecordType, EVENT_HEADER, STACK_MAX,
};

/// One map operation (named after the writes most of them are).
#[derive(Clone, Debug, Default)]
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
    /// First 32 bytes of the map header before the write (see `struct write_event`), when
    /// read ([`WriteEvent::header`]).
    pub header: [u64; 4],
    /// With stack capture: the frame-pointer walk (link-time; frame 0 is the map function).
    pub stack: Vec<u64>,
    pub pid: u32,
    pub tid: u32,
    pub key_len: u32,
    /// Which map function fired (fixes the key's encoding).
    pub role: ProbeRole,
    /// What the operation did to the key (a write, a delete, a clear).
    pub op: MapOp,
    pub flags: EventFlag,
    pub key: Vec<u8>,
    /// With counts aggregated in the kernel: the slot this write took for its key.
    pub slot: Option<SlotTake>,
}

/// A write that took an aggregation slot for its key (`EV_SLOT`): the slot counts it, and the
/// record carries the final count of the key it evicted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotTake {
    /// Index in the slots array.
    pub index: u32,
    /// The slot's generation this write started (the evicted key's was `gen - 1`).
    pub gen: u64,
    /// Writes of generation `gen - 1` in all.
    pub evicted: u64,
}

impl WriteEvent {
    /// Parses a write record; `None` if it is shorter than its header says.
    fn parse(data: &[u8]) -> Option<WriteEvent> {
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
            op: raw.op,
            flags: raw.flags,
            key: raw.key[..captured].to_vec(),
            slot: raw.flags.has(EventFlag::EV_SLOT).then_some(SlotTake {
                index: raw.slot,
                gen: raw.slot_gen,
                evicted: raw.evicted,
            }),
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
    pub role: GrowRole,
    pub flags: EventFlag,
}

impl GrowEvent {
    fn parse(data: &[u8]) -> Option<GrowEvent> {
        let raw: RawGrowEvent = read_whole(data)?;
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
    /// Where that write was counted, when in a slot: (slot index, generation). `None`: the
    /// thread's last write record.
    pub trigger: Option<(u32, u64)>,
}

/// A map header read at a sampled write that sent no record of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRead {
    pub map_type: u64,
    pub map_ptr: u64,
    pub header: [u64; 4],
    pub tid: u32,
}

/// A ring-buffer record: writes and growths share one ring, so their order is the order they
/// happened in.
pub enum Record {
    Write(WriteEvent),
    GrowStart(GrowStart),
    Grow(GrowEvent),
    Header(HeaderRead),
    /// Budget mode's alarm rang (see `probe::Session::set_alarm`): nothing to count.
    Alarm,
}

impl Record {
    /// The record its tag names; `None` for an unknown tag or a record too short for its type.
    pub fn parse(data: &[u8]) -> Option<Record> {
        let tag = RecordType(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?));
        match tag {
            RecordType::REC_WRITE => WriteEvent::parse(data).map(Record::Write),
            RecordType::REC_GROW_START => {
                let raw: RawGrowStart = read_whole(data)?;
                Some(Record::GrowStart(GrowStart {
                    start_ns: raw.start_ns,
                    pid: raw.pid,
                    tid: raw.tid,
                    trigger: (raw.trigger_gen != 0).then_some((raw.trigger_slot, raw.trigger_gen)),
                }))
            }
            RecordType::REC_GROW => GrowEvent::parse(data).map(Record::Grow),
            RecordType::REC_HEADER => {
                let raw: RawHeaderEvent = read_whole(data)?;
                Some(Record::Header(HeaderRead {
                    map_type: raw.map_type,
                    map_ptr: raw.map_ptr,
                    header: raw.header,
                    tid: raw.tid,
                }))
            }
            RecordType::REC_ALARM => Some(Record::Alarm),
            _ => None,
        }
    }
}

/// A whole plain-old-data record; `None` if `data` is shorter.
fn read_whole<T: Copy>(data: &[u8]) -> Option<T> {
    if data.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: T is a plain-old-data struct generated from C (any bit pattern is a value) and
    // `data` holds at least its size (checked above); read_unaligned copes with any alignment of
    // the ring buffer's bytes.
    Some(unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) })
}

impl WriteEvent {
    /// The map header before the write, when this write read it (headers are read at a sampled
    /// rate, and whenever a write takes a slot).
    pub fn header(&self) -> Option<&[u64; 4]> {
        self.flags.has(EventFlag::EV_HEADER).then_some(&self.header)
    }

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
        self.stack.len() >= STACK_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Copy>(v: &T, len: usize) -> Vec<u8> {
        // SAFETY: T is a plain-old-data struct generated from C; we read at most its size.
        let all = unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        all[..len.min(all.len())].to_vec()
    }

    #[test]
    fn records_are_told_apart_by_their_tag_not_their_size() {
        let mut w = RawWriteEvent {
            r#type: RecordType::REC_WRITE,
            pid: 7,
            role: ProbeRole::ROLE_ASSIGN_FASTSTR,
            captured: 3,
            key_len: 3,
            ..Default::default()
        };
        w.key[..3].copy_from_slice(b"abc");
        // A short write record (key area cut) is a write whatever its length.
        let short = bytes_of(&w, EVENT_HEADER + 8);
        let Some(Record::Write(ev)) = Record::parse(&short) else {
            panic!("a write");
        };
        assert_eq!((ev.pid, ev.key.as_slice()), (7, &b"abc"[..]));
        let g = RawGrowEvent {
            r#type: RecordType::REC_GROW,
            role: GrowRole::GROW_REHASH,
            start_ns: 5,
            end_ns: 9,
            ..Default::default()
        };
        let Some(Record::Grow(ge)) = Record::parse(&bytes_of(&g, usize::MAX)) else {
            panic!("a growth");
        };
        assert_eq!(
            (ge.role, ge.start_ns, ge.end_ns),
            (GrowRole::GROW_REHASH, 5, 9)
        );
        let s = RawGrowStart {
            r#type: RecordType::REC_GROW_START,
            tid: 3,
            start_ns: 5,
            ..Default::default()
        };
        let Some(Record::GrowStart(gs)) = Record::parse(&bytes_of(&s, usize::MAX)) else {
            panic!("a growth start");
        };
        assert_eq!((gs.tid, gs.start_ns), (3, 5));
        // Unknown tags and records shorter than their type are refused.
        let mut unknown = bytes_of(&s, usize::MAX);
        unknown[0] = 0x7f;
        assert!(Record::parse(&unknown).is_none());
        assert!(Record::parse(&bytes_of(&g, 12)).is_none());
        assert!(Record::parse(&[1, 0]).is_none());
    }
}
