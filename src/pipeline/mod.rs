//! The intake pipeline every tracing command runs: a probe session's ring buffer → records →
//! decoded writes and growths → counts, plus per-write hooks (`intake`), for the process being
//! traced (`tracee`). `record` runs it to the end for `run` (exact counts); `watch` runs it live
//! for `top`, `trace` and `serve` (refreshes, budget windows planned by `sampling`). `ring` is
//! the ring buffer they read, grown to what the target sends; `stop` is the flag every loop
//! polls; `wait` is how the live loop sleeps when nothing is due.
pub mod intake;
pub mod record;
pub mod ring;
pub mod stop;
pub mod tracee;
pub mod wait;
pub mod watch;
