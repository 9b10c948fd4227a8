//! A live view's report: what each refresh of a live loop (`top`, `trace`, `serve`) hands its
//! consumer — the report so far (estimates and error bounds in budget mode, see
//! `sampling::Extrapolation`) with every map's and key's rate over the last refresh and each
//! key's trend, the keys ranked by what is hot now.
use super::{build, Meta, Report};
use crate::decode::internals::Growth;
use crate::gobin::GoBinary;
use crate::hotkeys::live::{LiveCounts, RateBasis, DECAY};

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

/// The refresh of `counts` (and the growths resolved so far) whose rates are measured on
/// `basis`, then the start of the next refresh in `counts` (recent weights decay, trends
/// remember this one).
pub fn refresh(
    bin: &GoBinary,
    counts: &mut LiveCounts,
    growth: &[((u64, u64), Growth)],
    meta: &Meta,
    basis: RateBasis,
    overhead_percent: f64,
) -> Refresh {
    counts.measure_rates(basis);
    let x = meta
        .sampled
        .unwrap_or(crate::sampling::Extrapolation::EXACT);
    let mut view = counts.view(meta.top, &x);
    counts.add_growth(&mut view, growth);
    let mut report = build(bin, &view, meta);
    for m in &mut report.maps {
        // What is hot now first.
        m.top_keys.sort_by(|a, b| {
            b.writes_per_s
                .unwrap_or(0.0)
                .total_cmp(&a.writes_per_s.unwrap_or(0.0))
        });
    }
    counts.end_refresh(DECAY, meta.top * 4);
    Refresh {
        map_rates: report
            .maps
            .iter()
            .map(|m| m.writes_per_s.unwrap_or(0.0))
            .collect(),
        key_rates: report.maps.iter().map(|m| m.key_rates.clone()).collect(),
        overhead_percent,
        report,
    }
}
