//! Building a report: exact counts (or live counts viewed as such) plus what the binary says
//! about types and sites, map instances grouped by type and main write site, and budget mode's
//! scaling of observed counts into estimates with error bounds.
use std::collections::HashMap;

use super::model::*;
use super::symbolize::Symbolizer;
use crate::decode::internals::{capacity_from_growth, header_state};
use crate::gobin::types::Detail;
use crate::gobin::{GoBinary, MapImpl};
use crate::hotkeys::exact::{ExactCounts, MapCounts};
use crate::sampling::Mode;

pub struct Meta {
    pub pid: u32,
    pub binary: String,
    pub duration_s: f64,
    pub lost_events: u64,
    pub top: usize,
    pub redact: bool,
}

/// The call site of a return address (the innermost frame of its call instruction).
fn site(sym: &mut Symbolizer, ret: u64) -> SiteReport {
    let leaf = sym.call(ret).leaf();
    SiteReport {
        function: leaf.function.clone(),
        file: leaf.file.clone(),
        line: leaf.line,
        pc: format!("{ret:#x}"),
        writes: 0,
    }
}

pub fn build(bin: &GoBinary, counts: &ExactCounts, meta: &Meta) -> Report {
    let mut sym = Symbolizer::new(bin);
    let types = bin.types();
    let name_of = |addr: u64| -> (String, String) {
        let Some(r) = types.as_ref() else {
            return (format!("type@{addr:#x}"), "?".into());
        };
        match r.read(addr) {
            Ok(t) => {
                let key = match t.detail {
                    Detail::Map { key, .. } => {
                        r.read(key).map(|k| k.name).unwrap_or_else(|_| "?".into())
                    }
                    _ => "?".into(),
                };
                (t.name, key)
            }
            Err(_) => (format!("type@{addr:#x}"), "?".into()),
        }
    };
    // Group instances of a type by their main write site.
    let mut buckets: HashMap<(u64, u64), Vec<&MapCounts>> = HashMap::new();
    for m in counts.maps.values() {
        buckets
            .entry((m.map_type, m.main_site()))
            .or_default()
            .push(m);
    }
    let mut maps = Vec::new();
    for ((map_type, site), instances) in buckets {
        let names = name_of(map_type);
        if instances.len() > GROUP_THRESHOLD {
            let mut merged = MapCounts {
                map_type,
                ..Default::default()
            };
            for m in &instances {
                merged.merge(m);
            }
            maps.push(map_report(
                bin,
                &mut sym,
                &merged,
                format!("group:{}@{site:#x}", names.0),
                names,
                instances.len(),
                meta,
            ));
        } else {
            for m in instances {
                maps.push(map_report(
                    bin,
                    &mut sym,
                    m,
                    map_id(m.map_ptr),
                    names.clone(),
                    1,
                    meta,
                ));
            }
        }
    }
    maps.sort_by(|a, b| b.writes.cmp(&a.writes).then_with(|| a.id.cmp(&b.id)));
    Report {
        schema: SCHEMA,
        target: Target {
            pid: meta.pid,
            binary: meta.binary.clone(),
            go_version: bin.build.go_version.clone(),
            map_impl: bin.map_impl,
        },
        mode: Mode::Exact,
        duration_s: meta.duration_s,
        coverage: 1.0,
        writes_observed: counts.events,
        lost_events: meta.lost_events,
        read_failures: counts.read_failed,
        grouping: format!(
            "instances of one map type whose main write site is the same are listed as one group (id group:TYPE@SITE) when there are more than {GROUP_THRESHOLD}"
        ),
        completeness: Completeness::of(counts, meta.lost_events),
        ended: None,
        maps,
        pids: None,
    }
}

fn map_report(
    bin: &GoBinary,
    sym: &mut Symbolizer,
    m: &MapCounts,
    id: String,
    (type_name, key_type): (String, String),
    instances: usize,
    meta: &Meta,
) -> MapReport {
    // Several calls on one source line (or inlined copies) are one site for the reader.
    let mut by_line: HashMap<(String, String, u32), SiteReport> = HashMap::new();
    for (ret, n) in &m.sites {
        let s = site(sym, *ret);
        by_line
            .entry((s.function.clone(), s.file.clone(), s.line))
            .or_insert(s)
            .writes += n;
    }
    let mut sites: Vec<SiteReport> = by_line.into_values().collect();
    sites.sort_by(|a, b| b.writes.cmp(&a.writes).then_with(|| a.pc.cmp(&b.pc)));
    let top_keys = m
        .top_keys(meta.top)
        .into_iter()
        .map(|k| KeyReport {
            key: if meta.redact {
                redact(&k.text)
            } else {
                k.text.clone()
            },
            writes: k.writes,
            writes_estimated: k.writes,
            error_bound: 0,
            truncated: k.truncated,
            writes_per_s: None,
            trend: None,
        })
        .collect();
    let growth: Vec<GrowthReport> = m
        .growth
        .iter()
        .map(|g| {
            let s = site(sym, g.site);
            let mut growth = g.clone();
            if meta.redact && !growth.key.is_empty() {
                growth.key = redact(&growth.key);
            }
            GrowthReport {
                growth,
                function: s.function,
                file: s.file,
                line: s.line,
            }
        })
        .collect();
    let block = bin
        .types()
        .and_then(|r| r.map_block_size(m.map_type, bin.map_impl == MapImpl::Swiss));
    let mut state = (instances == 1 && m.writes > 0)
        .then(|| header_state(bin.map_impl, &m.last_header, m.last_inserted, block));
    if let Some(st) = state.as_mut() {
        if st.capacity.is_none() {
            st.capacity = capacity_from_growth(&m.growth);
            st.load = st
                .capacity
                .filter(|&c| c > 0)
                .map(|c| st.len as f64 / c as f64);
            st.memory_bytes = st.capacity.zip(block).map(|(c, b)| c / 8 * b);
        }
    }
    MapReport {
        id,
        type_name,
        key_type,
        instances,
        writes: m.writes,
        writes_estimated: m.writes,
        distinct_keys: m.keys.len(),
        untracked_key_writes: m.untracked_key_writes,
        goroutines: (!m.goroutines.is_empty()).then_some(m.goroutines.len()),
        len: state.as_ref().map(|s| s.len),
        grows: growth.len() as u64,
        capacity: state.as_ref().and_then(|s| s.capacity),
        load: state.as_ref().and_then(|s| s.load),
        memory_bytes: state.as_ref().and_then(|s| s.memory_bytes),
        overflow_buckets: state.as_ref().and_then(|s| s.overflow_buckets),
        growing: state.as_ref().and_then(|s| s.growing),
        growth,
        sites,
        top_keys,
        writes_per_s: None,
    }
}

/// A map instance's id: its header address, or for a map on a goroutine stack (tagged by the
/// BPF side, see `map_identity` in `src/bpf/mapwrite.bpf.c`) `stack:g<goid>-0x<offset from the
/// stack top>`, which stays the same when the stack moves.
pub fn map_id(map_ptr: u64) -> String {
    if map_ptr & crate::bpf::STACK_MAP_TAG != 0 {
        let goid = (map_ptr & !crate::bpf::STACK_MAP_TAG) >> 30;
        format!("stack:g{goid}-{:#x}", map_ptr & ((1 << 30) - 1))
    } else {
        format!("{map_ptr:#x}")
    }
}

/// A key shown only as a stable hash (FNV-1a 64), for `--redact`.
pub fn redact(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("#{h:016x}")
}

/// Turns a report of observed writes into budget-mode estimates: every count is divided by the
/// coverage (observed ÷ estimated writes) and given a 3-sigma error bound plus `bias` (a
/// fraction of the estimate: what the estimator cannot tell, see `sampling::duty::closed_loop_factor`).
pub fn apply_coverage(r: &mut Report, coverage: f64, bias: f64) {
    use crate::sampling::estimate::error_bound;
    let c = coverage.clamp(1e-9, 1.0);
    r.mode = Mode::Budget;
    r.coverage = c;
    for m in &mut r.maps {
        m.writes_estimated = (m.writes as f64 / c).round() as u64;
        for k in &mut m.top_keys {
            k.writes_estimated = (k.writes as f64 / c).round() as u64;
            k.error_bound =
                (error_bound(k.writes as f64, c) + k.writes_estimated as f64 * bias).ceil() as u64;
        }
    }
}
