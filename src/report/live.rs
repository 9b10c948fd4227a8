//! A live view's report: what each refresh of a live loop (`top`, `trace`, `serve`) hands its
//! consumer — the report so far plus the rates it was measured at.
use super::Report;

/// What each refresh gives the caller.
pub struct Refresh {
    pub report: Report,
    /// Writes per second per `report.maps[i]` over the last refresh (estimated).
    pub map_rates: Vec<f64>,
    pub overhead_percent: f64,
    /// Estimated writes per second of every key tracked per `report.maps[i]` (at most
    /// `hotkeys::live::KEYS_PER_MAP`), for distributions (`serve`'s histogram).
    pub key_rates: Vec<Vec<f64>>,
}
