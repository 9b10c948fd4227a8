//! `--pprof FILE`: map writes by goroutine stack as a pprof profile (profile.proto of
//! github.com/google/pprof, gzipped), for `go tool pprof`. Sample types `writes/count` (observed)
//! and, in budget mode, `writes_estimated/count` (observed ÷ coverage, the default). Each sample
//! is one (stack, map type, key) with labels `map` (the map type) and `key` (the key as `%v`
//! prints it, its hash with `--redact`, or `[other keys]`). The leaf location is the function
//! that wrote (the caller of `runtime.mapassign*`), so `-top` shows writes per writing function as
//! `flat`; `-tagleaf=map` adds the map type as a leaf frame. Locations are symbolized from the
//! pclntab (function, file, line), inlined calls as extra lines of a location (Go 1.18–1.27).
//!
//! The protobuf encoder is written by hand: profile.proto needs only varints and
//! length-delimited fields (about 60 lines here), which does not justify `prost` plus a build
//! step or checked-in generated code. `flate2` does the gzip.
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::symbolize::{Symbolizer, OTHER_KEYS, OTHER_STACKS, TRUNCATED};
use crate::gobin::inline::SourceFrame;
use crate::gobin::GoBinary;
use crate::hotkeys::stacks::StackCounts;

/// Keys named per stack in the profile; the rest of a stack's writes carry `key=[other keys]`
/// (counts stay exact; this keeps label tables usable when a map has millions of keys).
pub const LABELLED_KEYS_PER_STACK: usize = 1000;

pub struct Meta {
    pub binary: String,
    /// Budget mode: the fraction of writes observed; `None` in exact mode.
    pub coverage: Option<f64>,
    pub start: SystemTime,
    pub duration: Duration,
    pub redact: bool,
}

/// Writes the gzipped profile to `path`.
pub fn write(path: &Path, bin: &GoBinary, counts: &StackCounts, meta: &Meta) -> Result<()> {
    let raw = encode(bin, counts, meta);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw)?;
    let bytes = gz.finish()?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The profile, not compressed.
pub fn encode(bin: &GoBinary, counts: &StackCounts, meta: &Meta) -> Vec<u8> {
    let mut p = Builder::default();
    p.strings.index(""); // string_table[0] must be ""
    let writes = p.value_type("writes", "count");
    let mut sample_types = vec![writes.clone()];
    if meta.coverage.is_some() {
        sample_types.push(p.value_type("writes_estimated", "count"));
    }
    let (l_map, l_key) = (p.strings.index("map"), p.strings.index("key"));
    let other_keys = p.strings.index(OTHER_KEYS);
    let mut sym = Symbolizer::new(bin);
    let mut out = Pb::default();
    let mut samples = counts.samples(LABELLED_KEYS_PER_STACK);
    samples.sort_by_key(|s| std::cmp::Reverse(s.writes));
    for s in &samples {
        let mut locations = Vec::new();
        match s.stack {
            Some(id) => {
                for &ret in id.frames {
                    let call = sym.call(ret);
                    locations.push(p.location(call.pc, &call.frames));
                }
                if id.truncated || id.frames.is_empty() {
                    locations.push(p.pseudo_location(TRUNCATED));
                }
            }
            None => locations.push(p.pseudo_location(OTHER_STACKS)),
        }
        let map = p.strings.index(sym.map_type(s.map_type));
        let key = match &s.key {
            Some(k) if meta.redact => p.strings.index(&super::redact(k)),
            Some(k) => p.strings.index(k),
            None => other_keys,
        };
        let mut values = vec![s.writes as i64];
        if let Some(c) = meta.coverage {
            values.push((s.writes as f64 / c.clamp(1e-9, 1.0)).round() as i64);
        }
        let mut sample = Pb::default();
        sample.packed(1, locations.iter().copied());
        sample.packed(2, values.iter().map(|&v| v as u64));
        for (k, v) in [(l_map, map), (l_key, key)] {
            let mut label = Pb::default();
            label.varint(1, k);
            label.varint(2, v);
            sample.message(3, &label);
        }
        out.message(2, &sample);
    }
    let mut head = Pb::default();
    for t in &sample_types {
        head.message(1, t);
    }
    head.bytes.extend_from_slice(&out.bytes);
    // One mapping: the Go binary, with functions, files, lines and inlined frames already
    // resolved, so pprof does not try to symbolize again.
    let (lo, hi) = p.pc_range.unwrap_or((0, 0));
    let mut mapping = Pb::default();
    mapping.varint(1, 1);
    mapping.varint(2, lo);
    mapping.varint(3, hi + 1);
    let file = p.strings.index(&meta.binary);
    mapping.varint(5, file);
    for field in 7..=10 {
        mapping.varint(field, 1);
    }
    head.message(3, &mapping);
    for l in &p.locations {
        head.message(4, l);
    }
    for f in &p.functions {
        head.message(5, f);
    }
    let comment = p.strings.index(&match meta.coverage {
        Some(c) => format!(
            "ebpf-map-trace budget mode: {:.1} % of writes observed; writes_estimated = writes / coverage",
            c * 100.0
        ),
        None => "ebpf-map-trace exact mode: every map write counted".into(),
    });
    let default_type = meta.coverage.map(|_| p.strings.index("writes_estimated"));
    for s in &p.strings.list {
        head.string(6, s);
    }
    let nanos = meta
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    head.varint(9, nanos);
    head.varint(10, meta.duration.as_nanos() as u64);
    head.message(11, &writes);
    head.varint(12, 1);
    head.varint(13, comment);
    if let Some(t) = default_type {
        head.varint(14, t);
    }
    head.bytes
}

#[derive(Default)]
struct Strings {
    list: Vec<String>,
    ids: HashMap<String, u64>,
}

impl Strings {
    fn index(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(s.to_owned());
        self.ids.insert(s.to_owned(), i);
        i
    }
}

/// The profile's tables: strings, functions (by name and file), locations (by address; pseudo
/// frames by name).
#[derive(Default)]
struct Builder {
    strings: Strings,
    functions: Vec<Pb>,
    function_ids: HashMap<(String, String), u64>,
    locations: Vec<Pb>,
    location_ids: HashMap<(u64, String), u64>,
    pc_range: Option<(u64, u64)>,
}

impl Builder {
    fn value_type(&mut self, ty: &str, unit: &str) -> Pb {
        let mut m = Pb::default();
        m.varint(1, self.strings.index(ty));
        m.varint(2, self.strings.index(unit));
        m
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        if let Some(&id) = self.function_ids.get(&(name.to_owned(), file.to_owned())) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let mut f = Pb::default();
        f.varint(1, id);
        f.varint(2, self.strings.index(name));
        f.varint(3, self.strings.index(name));
        f.varint(4, self.strings.index(file));
        self.functions.push(f);
        self.function_ids
            .insert((name.to_owned(), file.to_owned()), id);
        id
    }

    /// The location of a call instruction: one line per frame, innermost (inlined) first, as
    /// profile.proto orders them.
    fn location(&mut self, pc: u64, frames: &[SourceFrame]) -> u64 {
        let key = (pc, String::new());
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        self.pc_range = Some(match self.pc_range {
            Some((lo, hi)) => (lo.min(pc), hi.max(pc)),
            None => (pc, pc),
        });
        let lines: Vec<(u64, u32)> = frames
            .iter()
            .map(|f| (self.function(&f.function, &f.file), f.line))
            .collect();
        self.add_location(key, 1, &lines)
    }

    /// A pseudo frame named `name` (no address, no mapping).
    fn pseudo_location(&mut self, name: &str) -> u64 {
        let key = (0, name.to_owned());
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let func = self.function(name, "");
        self.add_location(key, 0, &[(func, 0)])
    }

    fn add_location(&mut self, key: (u64, String), mapping: u64, lines: &[(u64, u32)]) -> u64 {
        let id = self.locations.len() as u64 + 1;
        let mut l = Pb::default();
        l.varint(1, id);
        l.varint(2, mapping);
        l.varint(3, key.0);
        for &(func, line) in lines {
            let mut ln = Pb::default();
            ln.varint(1, func);
            ln.varint(2, u64::from(line));
            l.message(4, &ln);
        }
        self.locations.push(l);
        self.location_ids.insert(key, id);
        id
    }
}

/// A protobuf message being written: fields as (number << 3 | wire type), then the value.
#[derive(Default, Clone)]
struct Pb {
    bytes: Vec<u8>,
}

impl Pb {
    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// A varint field; zero is the default and is left out, as proto3 encoders do.
    fn varint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.raw_varint(v);
        }
    }

    fn len_delimited(&mut self, field: u32, data: &[u8]) {
        self.key(field, 2);
        self.raw_varint(data.len() as u64);
        self.bytes.extend_from_slice(data);
    }

    fn message(&mut self, field: u32, m: &Pb) {
        self.len_delimited(field, &m.bytes);
    }

    /// A repeated string (each element is written, the empty string too).
    fn string(&mut self, field: u32, s: &str) {
        self.len_delimited(field, s.as_bytes());
    }

    fn packed(&mut self, field: u32, values: impl Iterator<Item = u64>) {
        let mut inner = Pb::default();
        for v in values {
            inner.raw_varint(v);
        }
        self.len_delimited(field, &inner.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::Pb;

    #[test]
    fn varints_and_fields_encode_as_protobuf_does() {
        let mut p = Pb::default();
        p.varint(1, 150);
        assert_eq!(p.bytes, [0x08, 0x96, 0x01]);
        let mut q = Pb::default();
        q.string(2, "testing");
        assert_eq!(
            q.bytes,
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        let mut r = Pb::default();
        r.packed(4, [3u64, 270, 86942].into_iter());
        assert_eq!(r.bytes, [0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05]);
    }
}
