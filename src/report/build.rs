//! Building a report: exact counts (or live counts viewed as such) plus what the binary says
//! about types and sites, map instances grouped by type and main write site, and in budget mode
//! every count's estimate and error bound (`sampling::Extrapolation`).
use std::collections::HashMap;

use super::model::*;
use super::symbolize::Symbolizer;
use crate::decode::internals::{capacity_from_growth, header_state};
use crate::decode::syncmap::{self, SYNC_MAP};
use crate::gobin::types::Detail;
use crate::gobin::{GoBinary, MapImpl};
use crate::hotkeys::exact::{ExactCounts, MapCounts};
use crate::sampling::{Extrapolation, Mode};

pub struct Meta {
    pub pid: u32,
    pub binary: String,
    pub duration_s: f64,
    /// Map operations the ring buffer had no room for.
    pub lost_events: u64,
    /// Growth records the ring buffer had no room for.
    pub lost_growths: u64,
    /// Map operations' probe hits at a stack check whose function started again.
    pub stack_check_reentries: u64,
    pub top: usize,
    pub redact: bool,
    /// Budget mode: what the observed counts stand for (`None`: exact counts).
    pub sampled: Option<Extrapolation>,
    /// How the writes were counted in the kernel, when they were.
    pub aggregation: Option<Aggregation>,
}

/// The call site of a return address into a function that operated on a map of type
/// `map_type` (see `Call::site_frame`).
fn site(sym: &mut Symbolizer, ret: u64, map_type: u64) -> SiteReport {
    let leaf = sym.call(ret).site_frame(map_type);
    SiteReport {
        function: leaf.function.clone(),
        file: leaf.file.clone(),
        line: leaf.line,
        pc: format!("{ret:#x}"),
        writes: 0,
        deletes: 0,
        clears: 0,
        writes_estimated: 0,
        deletes_estimated: 0,
        clears_estimated: 0,
    }
}

pub fn build(bin: &GoBinary, counts: &ExactCounts, meta: &Meta) -> Report {
    let mut sym = Symbolizer::new(bin);
    let types = bin.types();
    let name_of = |addr: u64| -> (String, String) {
        if addr == SYNC_MAP {
            return (syncmap::TYPE_NAME.into(), syncmap::KEY_TYPE.into());
        }
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
            merged.sort_growth();
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
    maps.sort_by(|a, b| {
        (b.writes, b.deletes + b.clears)
            .cmp(&(a.writes, a.deletes + a.clears))
            .then_with(|| a.id.cmp(&b.id))
    });
    Report {
        schema: SCHEMA,
        target: Target {
            pid: meta.pid,
            binary: meta.binary.clone(),
            go_version: bin.build.go_version.clone(),
            map_impl: bin.map_impl,
        },
        mode: if meta.sampled.is_some() {
            Mode::Budget
        } else {
            Mode::Exact
        },
        duration_s: meta.duration_s,
        coverage: meta.sampled.as_ref().map_or(1.0, Extrapolation::coverage),
        estimated_by: meta.sampled.as_ref().map(|x| x.clock),
        writes_observed: counts.ops.writes,
        deletes_observed: counts.ops.deletes,
        clears_observed: counts.ops.clears,
        lost_events: meta.lost_events,
        lost_growths: meta.lost_growths,
        read_failures: counts.read_failed,
        stack_check_reentries: meta.stack_check_reentries,
        grouping: format!(
            "instances of one map type whose main write site is the same are listed as one group (id group:TYPE@SITE) when there are more than {GROUP_THRESHOLD}"
        ),
        completeness: Completeness::of(counts, meta.lost_events, meta.lost_growths),
        ended: None,
        maps,
        pids: None,
        aggregation: meta.aggregation,
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
        let s = site(sym, *ret, m.map_type);
        let e = by_line
            .entry((s.function.clone(), s.file.clone(), s.line))
            .or_insert(s);
        e.writes += n.writes;
        e.deletes += n.deletes;
        e.clears += n.clears;
    }
    let x = meta
        .sampled
        .unwrap_or(Extrapolation::EXACT)
        .with_census(m.census_ops, m.writes + m.deletes + m.clears);
    let estimate = |n: u64| x.estimate(n as f64).round() as u64;
    // A key's (or site's) share of the map's writes varies with the map's as far as its share.
    let dispersion = |n: u64| 1.0 + n as f64 / m.writes.max(1) as f64 * (m.dispersion - 1.0);
    let mut sites: Vec<SiteReport> = by_line.into_values().collect();
    for s in &mut sites {
        s.writes_estimated = estimate(s.writes);
        s.deletes_estimated = estimate(s.deletes);
        s.clears_estimated = estimate(s.clears);
    }
    sites.sort_by(|a, b| {
        (b.writes, b.deletes, b.clears)
            .cmp(&(a.writes, a.deletes, a.clears))
            .then_with(|| a.pc.cmp(&b.pc))
    });
    let shown = |text: &str| {
        if meta.redact {
            redact(text)
        } else {
            text.to_string()
        }
    };
    let top_keys = m
        .top_keys(meta.top)
        .into_iter()
        .map(|k| KeyReport {
            key: shown(&k.text),
            writes: k.writes,
            writes_estimated: estimate(k.writes),
            error_bound: (x.bound(k.writes as f64, dispersion(k.writes))
                + x.estimate(k.error as f64))
            .ceil() as u64,
            deletes: k.deletes,
            deletes_estimated: estimate(k.deletes),
            truncated: k.truncated,
            writes_per_s: k.per_s,
            trend: k.trend,
        })
        .collect();
    let top_deletes = m
        .top_deletes(meta.top)
        .into_iter()
        .map(|k| DeleteReport {
            key: shown(&k.text),
            deletes: k.deletes,
            deletes_estimated: estimate(k.deletes),
            // Deletes' own window-to-window spread is not measured: the map's writes' stands in.
            error_bound: x.bound(k.deletes as f64, m.dispersion).ceil() as u64,
            writes: k.writes,
            writes_estimated: estimate(k.writes),
            truncated: k.truncated,
        })
        .collect();
    let growth: Vec<GrowthReport> = m
        .growth
        .iter()
        .map(|g| {
            let s = site(sym, g.site, m.map_type);
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
    // A sync.Map has no header to read.
    let mut state =
        (instances == 1 && m.writes + m.deletes + m.clears > 0 && m.map_type != SYNC_MAP)
            .then(|| header_state(bin.map_impl, &m.last_header, m.inserted_since_header, block));
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
        writes_estimated: estimate(m.writes),
        error_bound: x.bound(m.writes as f64, m.dispersion).ceil() as u64,
        deletes: m.deletes,
        deletes_estimated: estimate(m.deletes),
        clears: m.clears,
        clears_estimated: estimate(m.clears),
        distinct_keys: m.written_keys(),
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
        top_deletes,
        writes_per_s: m.per_s,
        key_rates: m.key_rates.clone(),
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
