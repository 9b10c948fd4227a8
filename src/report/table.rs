//! The report as text for a terminal: maps by writes, each with its deletes and clears, sites,
//! top keys and most deleted keys.
use std::fmt::Write;

use super::{MapReport, Report};
use crate::sampling::Mode;

/// Maps and sites shown per map; the JSON report has them all.
const MAX_MAPS: usize = 10;
const MAX_SITES: usize = 5;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "ebpf-map-trace: pid {} ({}, {} maps), {} mode, {:.2}s, {} writes, {} deletes, {} clears observed, {} lost, {} with unreadable keys",
        r.target.pid,
        r.target.go_version,
        r.target.map_impl,
        r.mode,
        r.duration_s,
        r.writes_observed,
        r.deletes_observed,
        r.clears_observed,
        r.lost_events,
        r.read_failures
    );
    for why in &r.completeness.incomplete {
        let _ = writeln!(o, "INCOMPLETE: {why}");
    }
    if r.maps.is_empty() {
        let _ = writeln!(o, "\nno map operations seen");
    }
    for m in r.maps.iter().take(MAX_MAPS) {
        render_map(&mut o, m, r.mode == Mode::Budget);
    }
    if r.maps.len() > MAX_MAPS {
        let rest: u64 = r.maps[MAX_MAPS..].iter().map(|m| m.writes).sum();
        let _ = writeln!(
            o,
            "\n... {} more maps with {rest} writes (all are in the --json report)",
            r.maps.len() - MAX_MAPS
        );
    }
    o
}

/// One map: its writes, internals, sites and top keys (`budget`: estimates with their bounds).
fn render_map(o: &mut String, m: &MapReport, budget: bool) {
    let share = |n: u64| {
        if m.writes == 0 {
            0.0
        } else {
            100.0 * n as f64 / m.writes as f64
        }
    };
    let inst = if m.instances > 1 {
        format!(", {} instances", m.instances)
    } else {
        String::new()
    };
    let map_removals = if budget {
        removals(m.deletes_estimated, m.clears_estimated, true)
    } else {
        removals(m.deletes, m.clears, false)
    };
    if budget {
        let _ = writeln!(
            o,
            "\n{}  {}  ~{} writes ({} observed){map_removals}",
            m.type_name, m.id, m.writes_estimated, m.writes
        );
    } else {
        let _ = writeln!(
            o,
            "\n{}  {}  {} writes{map_removals}, {} distinct keys{inst}",
            m.type_name, m.id, m.writes, m.distinct_keys
        );
    }
    if let Some(line) = internals_line(m) {
        let _ = writeln!(o, "    {line}");
    }
    for s in m.sites.iter().take(MAX_SITES) {
        // A site that only deletes or clears shows those instead of its (zero) writes.
        let (count, what) = match (s.writes, s.deletes) {
            (0, 0) => (s.clears, " clears ".to_string()),
            (0, d) => (d, format!(" deletes{}", removals(0, s.clears, false))),
            (w, _) => (w, format!("{:>5.1}%", share(w))),
        };
        let _ = writeln!(
            o,
            "    site  {count:>10} {what}  {} {}:{}{}",
            s.function,
            s.file,
            s.line,
            if s.writes > 0 {
                removals(s.deletes, s.clears, false)
            } else {
                String::new()
            }
        );
    }
    if m.sites.len() > MAX_SITES {
        let rest: u64 = m.sites[MAX_SITES..].iter().map(|s| s.writes).sum();
        let _ = writeln!(
            o,
            "    ... {} more sites with {rest} writes",
            m.sites.len() - MAX_SITES
        );
    }
    for (i, k) in m.top_keys.iter().enumerate() {
        let count = if budget {
            format!("~{} ±{}", k.writes_estimated, k.error_bound)
        } else {
            k.writes.to_string()
        };
        let deletes = match (k.deletes, budget) {
            (0, _) => String::new(),
            (_, true) => format!("  (~{} deletes)", k.deletes_estimated),
            (d, false) => format!("  ({d} deletes)"),
        };
        let _ = writeln!(
            o,
            "    #{:<3} {:>16} {:>5.1}%  {}{deletes}",
            i + 1,
            count,
            share(k.writes),
            shown_key(&k.key, k.truncated)
        );
    }
    if !m.top_deletes.is_empty() {
        let _ = writeln!(o, "    most deleted keys:");
    }
    for (i, k) in m.top_deletes.iter().enumerate() {
        let count = if budget {
            format!("~{} ±{}", k.deletes_estimated, k.error_bound)
        } else {
            k.deletes.to_string()
        };
        let _ = writeln!(
            o,
            "    d#{:<2} {:>16} deletes  {}  ({} writes)",
            i + 1,
            count,
            shown_key(&k.key, k.truncated),
            if budget {
                format!("~{}", k.writes_estimated)
            } else {
                k.writes.to_string()
            }
        );
    }
}

fn shown_key(key: &str, truncated: bool) -> String {
    if truncated {
        format!("{key}…")
    } else {
        key.to_string()
    }
}

/// `, N deletes, M clears` (each only when there are any; `~` marks estimates).
fn removals(deletes: u64, clears: u64, estimated: bool) -> String {
    let tilde = if estimated { "~" } else { "" };
    let mut out = String::new();
    if deletes > 0 {
        out.push_str(&format!(", {tilde}{deletes} deletes"));
    }
    if clears > 0 {
        out.push_str(&format!(", {tilde}{clears} clears"));
    }
    out
}

/// Length, capacity, load, memory and growth of a map on one line, as far as they are known.
fn internals_line(m: &MapReport) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(len) = m.len {
        parts.push(format!("len {len}"));
    }
    if let Some(c) = m.capacity {
        parts.push(format!("capacity {c} slots"));
    }
    if let Some(l) = m.load {
        parts.push(format!("load {l:.2}"));
    }
    if let Some(b) = m.memory_bytes {
        parts.push(format!("{:.1} KiB", b as f64 / 1024.0));
    }
    if let Some(n) = m.overflow_buckets.filter(|&n| n > 0) {
        parts.push(format!("{n} overflow buckets"));
    }
    if m.growing == Some(true) {
        parts.push("grow in progress".into());
    }
    if let Some(last) = m.growth.last() {
        let total: u64 = m.growth.iter().map(|g| g.growth.duration_ns).sum();
        parts.push(format!(
            "{} grows taking {:.1} µs (last {} {}→{} {} at len {})",
            m.grows,
            total as f64 / 1000.0,
            last.growth.kind,
            last.growth.old_capacity,
            last.growth.new_capacity,
            last.growth.unit,
            last.growth.len
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}
