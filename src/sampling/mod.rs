//! Sampling: which part of the time the probes are attached and what the observed writes stand
//! for. Pure logic, tested without BPF; the loop that attaches and detaches lives in `pipeline`.
//! - `sampler`: the state machine a live loop runs (when to attach and detach; coverage so far).
//! - `duty`: the duty cycle planned from the calibrated cost of a probed write and the rate seen
//!   while attached, within the overhead budget.
//! - `window`: what one attached window observed (writes per thread, when it was really live).
//! - `estimate`: what the windows' writes stand for, and the error bound of the estimates.
pub mod duty;
pub mod estimate;
pub mod sampler;
pub mod window;

pub use sampler::{Coverage, Sampler, Step};
pub use window::ThreadWrites;

/// How much of the time the probes are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Always: every write counted.
    Exact,
    /// Part of the time, to keep the target's slowdown under a budget: counts are estimates.
    Budget,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Exact => "exact",
            Mode::Budget => "budget",
        })
    }
}
