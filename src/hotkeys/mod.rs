//! Counting writes per map, site and key. `exact` keeps every key's exact count (exact mode).
pub mod exact;
pub mod live;
pub mod sketch;
pub mod stacks;
