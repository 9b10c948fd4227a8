//! The intake pipeline every tracing command runs: a probe session's ring buffer → records →
//! decoded writes and growths → counts, plus per-write hooks. `watch` runs it live (refreshes,
//! budget windows planned by `sampling`) for `top`, `trace` and `serve`.
pub mod stop;
pub mod watch;
