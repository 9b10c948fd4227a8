//! The kernel side: the BPF programs (`mapwrite.bpf.c`) and `maptrace.h`, the one contract
//! between C and Rust. This module is that contract in Rust: the skeleton libbpf-cargo generates
//! from the compiled object (programs, maps, rodata, and the record and plan structs).
#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/mapwrite.skel.rs"));
}
pub use skel::types::{
    grow_event as RawGrowEvent, grow_start as RawGrowStart, key_plan as KeyPlan,
    write_event as RawWriteEvent,
};
pub use skel::*;

pub const KEY_MAX: usize = 256;
pub const PLAN_MAX_STRINGS: usize = 4;
pub const COOKIE_ROLE_BITS: u32 = 8;

pub const PLAN_RAW: u8 = 0;
pub const PLAN_STRINGS: u8 = 1;
pub const PLAN_EFACE: u8 = 2;
pub const PLAN_IFACE: u8 = 3;

pub const EV_READ_FAILED: u8 = 1;
pub const EV_NO_PLAN: u8 = 2;
pub const EV_TRUNCATED: u8 = 4;
/// `map_ptr` of a map on a goroutine stack: this bit | goid << 30 | offset from the stack top.
pub const STACK_MAP_TAG: u64 = 1 << 63;

pub const CNT_HITS: u32 = 0;
pub const CNT_LOST: u32 = 1;
pub const CNT_READ_FAILED: u32 = 2;
pub const CNT_GROW_UNMATCHED: u32 = 3;

/// `enum probe_role` values the key decoder needs by name.
pub const ROLE_ASSIGN_FASTSTR: u8 = 4;
pub const ROLE_ASSIGN_FAST64PTR: u8 = 3;
pub const ROLE_ASSIGN_FAST32: u8 = 1;

pub const GROW_HASHGROW: u32 = 1;
pub const GROW_TO_SMALL: u32 = 2;
pub const GROW_TO_TABLE: u32 = 3;
pub const GROW_REHASH: u32 = 4;

/// Size of the fixed part of a write event (before the key bytes).
pub const EVENT_HEADER: usize = std::mem::offset_of!(RawWriteEvent, key);
