//! Counting writes per map, site and key: `exact` keeps every key's exact count (exact mode,
//! within a memory budget); `live` keeps bounded counts for live views (per map a cumulative and
//! a decayed top-k, from `sketch`); `stacks` counts writes per goroutine stack for profiles.
pub mod exact;
pub mod live;
pub mod sketch;
pub mod stacks;
