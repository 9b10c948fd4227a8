//! A live view's report: what each refresh of a live loop (`top`, `trace`, `serve`) hands its
//! consumer — the report so far (counts scaled by the sampling's coverage in budget mode) plus
//! the rates of maps and keys over the last refresh and each key's trend.
use std::collections::HashMap;

use super::{apply_coverage, build, map_id, Meta, Report};
use crate::decode::internals::Growth;
use crate::gobin::GoBinary;
use crate::hotkeys::live::{LiveCounts, LiveMap, DECAY, KEYS_PER_MAP};
use crate::sampling::{Coverage, Mode};

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

/// How the live counts were gathered since the last refresh.
pub struct Window {
    pub mode: Mode,
    pub coverage: Coverage,
    /// Seconds the probes were attached since the last refresh.
    pub attached_s: f64,
    /// Seconds between refreshes.
    pub refresh_s: f64,
    pub overhead_percent: f64,
}

/// The refresh of `counts` (and the growths resolved so far), then the start of the next
/// refresh window in `counts` (recent weights decay, trends remember this one).
pub fn refresh(
    bin: &GoBinary,
    counts: &mut LiveCounts,
    growth: &[((u64, u64), Growth)],
    meta: &Meta,
    window: &Window,
) -> Refresh {
    let mut view = counts.view(meta.top);
    view.add_growth(growth.to_vec());
    let mut report = build(bin, &view, meta);
    let coverage = window.coverage.fraction;
    if window.mode == Mode::Budget {
        apply_coverage(&mut report, coverage, window.coverage.bias);
    }
    let attached_s = window.attached_s.max(1e-6);
    // Steady state of a decayed sum: weight × (1 − decay) per refresh.
    let per_s = (1.0 - DECAY) / window.refresh_s / coverage;
    let mut map_rates = Vec::with_capacity(report.maps.len());
    let mut key_rates = Vec::with_capacity(report.maps.len());
    for m in &mut report.maps {
        let rate: f64 = counts
            .maps
            .values()
            .filter(|l| map_id(l.map_ptr) == m.id)
            .map(|l| l.window_observed as f64 / attached_s)
            .sum();
        m.writes_per_s = Some(rate);
        map_rates.push(rate);
        let live = counts.maps.values().find(|l| map_id(l.map_ptr) == m.id);
        key_rates.push(live.map_or_else(Vec::new, |l| {
            l.recent
                .top(KEYS_PER_MAP)
                .iter()
                .map(|e| e.count * per_s)
                .collect()
        }));
        if let Some(l) = live {
            rank_by_rate(m, l, meta.top * 4, per_s);
        }
    }
    counts.end_window(DECAY, meta.top * 4);
    Refresh {
        report,
        map_rates,
        overhead_percent: window.overhead_percent,
        key_rates,
    }
}

/// Gives the map's top keys their rate and trend from the recent sketch (`tracked` keys of
/// it), then ranks them by what is hot now.
fn rank_by_rate(m: &mut super::MapReport, live: &LiveMap, tracked: usize, per_s: f64) {
    let recent: HashMap<String, (Vec<u8>, f64)> = live
        .recent
        .top(tracked)
        .into_iter()
        .map(|e| (e.text.clone(), (e.id, e.count)))
        .collect();
    for k in &mut m.top_keys {
        if let Some((id, w)) = recent.get(&k.key) {
            k.writes_per_s = Some(w * per_s);
            k.trend = Some(live.trend(id, *w, DECAY));
        }
    }
    m.top_keys.sort_by(|a, b| {
        b.writes_per_s
            .unwrap_or(0.0)
            .total_cmp(&a.writes_per_s.unwrap_or(0.0))
    });
}
