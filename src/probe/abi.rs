//! The kernel-side ABI in Rust: the skeleton generated from `src/bpf/*.bpf.c` and the constants
//! of `src/bpf/maptrace.h` that the skeleton does not carry (enums and defines).
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
pub use skel::types::{key_plan as KeyPlan, write_event as RawWriteEvent};
pub use skel::*;

use crate::gobin::Role;

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

pub const CNT_HITS: u32 = 0;
pub const CNT_LOST: u32 = 1;
pub const CNT_READ_FAILED: u32 = 2;

/// `enum probe_role` for an assign function; `None` for roles the write probe does not handle.
pub fn probe_role(role: Role) -> Option<u8> {
    Some(match role {
        Role::Assign => 0,
        Role::AssignFast32 => 1,
        Role::AssignFast64 => 2,
        Role::AssignFast64Ptr => 3,
        Role::AssignFastStr => 4,
        _ => return None,
    })
}

/// Size of the fixed part of a write event (before the key bytes).
pub const EVENT_HEADER: usize = std::mem::offset_of!(RawWriteEvent, key);
