//! Sampling: which part of the time the probes are attached and what the observed writes stand
//! for. Pure logic, tested without BPF; the loop that attaches and detaches lives in `pipeline`.
//! - `sampler`: the state machine a live loop runs (when to open and close windows; what the
//!   counts so far stand for).
//! - `duty`: the duty cycle planned from what windows cost the target and its natural CPU time,
//!   within the overhead budget.
//! - `window`: what a loop reads at a window's edges (the target's CPU clock, probe hits by
//!   kind, writes) and the span between two edges.
//! - `estimate`: what the windows' writes stand for (natural-CPU ratio estimator), and the error
//!   bound of each estimate.
pub mod duty;
pub mod estimate;
pub mod sampler;
pub mod window;

pub use estimate::{Clock, Extrapolation, Strata};
pub use sampler::{ClosedWindow, Sampler, Step};
pub use window::{Edge, Hits, ProbeCosts, Span};

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
