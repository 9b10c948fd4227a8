//! Sampling: which part of the time the probes are attached and what the observed writes stand
//! for. `duty` plans the duty cycle from the calibrated cost of a probed write and the rate seen
//! while attached, within the overhead budget; `window` holds what one attached window observed.
//! Pure logic, tested without BPF: the loop that attaches and detaches lives in `pipeline`.
pub mod duty;
pub mod window;

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
