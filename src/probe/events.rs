//! One map write as received from the ring buffer, copied out of the kernel's record.
use super::abi::{RawWriteEvent, EVENT_HEADER};

#[derive(Clone, Debug)]
pub struct WriteEvent {
    pub ts_ns: u64,
    /// Link-time address of the map's type descriptor.
    pub map_type: u64,
    /// Runtime address of the map header (instance identity when the map is on the heap).
    pub map_ptr: u64,
    /// Link-time return address into the writing function.
    pub site: u64,
    pub goid: u64,
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
            .min(raw.key.len())
            .min(data.len() - EVENT_HEADER);
        Some(WriteEvent {
            ts_ns: raw.ts_ns,
            map_type: raw.map_type,
            map_ptr: raw.map_ptr,
            site: raw.site,
            goid: raw.goid,
            pid: raw.pid,
            tid: raw.tid,
            key_len: raw.key_len,
            role: raw.role,
            flags: raw.flags,
            key: raw.key[..captured].to_vec(),
        })
    }
}
