//! Map keys from captured bytes: how the BPF side must capture a key type (the plan), the key's
//! identity (equal Go keys give equal identities, whatever string pointers they carry) and its
//! text as Go's `%v` prints it.
use std::collections::HashMap;

use crate::bpf::{EventFlag, KeyPlan, MapOp, PlanKind, ProbeRole, PLAN_MAX_STRINGS};
use crate::gobin::types::{KeyLayout, TypeReader};

/// How `runtime.mapassign` keys of one map type are captured in BPF (mirrors `struct key_plan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: PlanKind,
    pub key_size: u32,
    pub string_offsets: Vec<u16>,
    /// More strings than the BPF side follows: those beyond are identified by pointer.
    pub partial: bool,
}

impl Plan {
    pub fn for_layout(layout: &KeyLayout, key_size: u64) -> Plan {
        let key_size = u32::try_from(key_size).unwrap_or(u32::MAX);
        if let KeyLayout::Interface { empty } = layout {
            return Plan {
                kind: if *empty {
                    PlanKind::PLAN_EFACE
                } else {
                    PlanKind::PLAN_IFACE
                },
                key_size,
                string_offsets: vec![],
                partial: false,
            };
        }
        let mut offsets = Vec::new();
        string_offsets(layout, 0, &mut offsets);
        let partial = offsets.len() > PLAN_MAX_STRINGS || offsets.iter().any(|&o| o > 240);
        offsets.retain(|&o| o <= 240);
        offsets.truncate(PLAN_MAX_STRINGS);
        Plan {
            kind: if offsets.is_empty() {
                PlanKind::PLAN_RAW
            } else {
                PlanKind::PLAN_STRINGS
            },
            key_size,
            string_offsets: offsets.into_iter().map(|o| o as u16).collect(),
            partial,
        }
    }
}

impl Plan {
    /// The plan as the BPF side reads it (`struct key_plan`).
    pub fn to_bpf(&self) -> KeyPlan {
        let mut kp = KeyPlan {
            key_size: self.key_size,
            kind: self.kind,
            nstrings: self.string_offsets.len() as u8,
            ..Default::default()
        };
        for (slot, off) in kp.string_offsets.iter_mut().zip(&self.string_offsets) {
            *slot = *off;
        }
        kp
    }
}

fn string_offsets(layout: &KeyLayout, base: u64, out: &mut Vec<u64>) {
    match layout {
        KeyLayout::String => out.push(base),
        KeyLayout::Struct { fields } => {
            for (off, l) in fields {
                string_offsets(l, base + off, out);
            }
        }
        KeyLayout::Array {
            elem,
            elem_size,
            len,
        } => {
            for i in 0..(*len).min(64) {
                string_offsets(elem, base + i * elem_size, out);
            }
        }
        _ => {}
    }
}

/// A decoded key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Bytes that identify the key by value.
    pub id: Vec<u8>,
    /// The key as `%v` prints it.
    pub text: String,
    pub truncated: bool,
}

/// How a map's writes arrive: by which runtime function, which fixes the key's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The key's own bytes (fast32/fast64/fast64ptr, and generic keys without strings).
    Raw,
    /// mapassign_faststr: the string's bytes.
    Str,
    /// Generic key with string fields: raw bytes, then each string's contents.
    RawThenStrings,
    /// Interface key: dynamic type address (link-time), then the value.
    Interface,
}

/// Decodes keys of one map type. Caches the layouts of interface keys' dynamic types.
pub struct KeyDecoder {
    layout: Option<KeyLayout>,
    plan: Option<Plan>,
    dyn_types: HashMap<u64, Option<(String, KeyLayout)>>,
}

impl KeyDecoder {
    pub fn new(layout: Option<KeyLayout>, key_size: u64) -> Self {
        let plan = layout.as_ref().map(|l| Plan::for_layout(l, key_size));
        KeyDecoder {
            layout,
            plan,
            dyn_types: HashMap::new(),
        }
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub fn encoding_for_generic(&self) -> Encoding {
        match self.plan.as_ref().map(|p| p.kind) {
            Some(PlanKind::PLAN_STRINGS) => Encoding::RawThenStrings,
            Some(PlanKind::PLAN_EFACE | PlanKind::PLAN_IFACE) => Encoding::Interface,
            _ => Encoding::Raw,
        }
    }

    /// `bytes` as captured, `full_len` the key's full length as the BPF side measured it.
    pub fn decode(
        &mut self,
        enc: Encoding,
        bytes: &[u8],
        full_len: u32,
        types: Option<&TypeReader<'_>>,
    ) -> Key {
        let truncated = (full_len as usize) > bytes.len();
        match enc {
            Encoding::Str => Key {
                id: with_len(bytes, full_len, truncated),
                text: String::from_utf8_lossy(bytes).into_owned(),
                truncated,
            },
            Encoding::Raw => {
                let text = match &self.layout {
                    Some(l) => render_flat(l, bytes),
                    None => hex(bytes),
                };
                Key {
                    id: bytes.to_vec(),
                    text,
                    truncated,
                }
            }
            Encoding::RawThenStrings => {
                let Some(plan) = self.plan.as_ref() else {
                    return Key {
                        id: bytes.to_vec(),
                        text: hex(bytes),
                        truncated,
                    };
                };
                let size = (plan.key_size as usize).min(bytes.len());
                let (raw, contents) = bytes.split_at(size);
                let mut id = raw.to_vec();
                let mut cursor = contents;
                let mut strings = Vec::new();
                for &off in &plan.string_offsets {
                    let off = off as usize;
                    if off + 16 > raw.len() {
                        break;
                    }
                    id[off..off + 8].fill(0); // the pointer does not identify the string
                    let len =
                        u64::from_le_bytes(raw[off + 8..off + 16].try_into().unwrap_or_default())
                            as usize;
                    let take = len.min(cursor.len());
                    strings.push((off, &cursor[..take]));
                    cursor = &cursor[take..];
                }
                id.extend_from_slice(contents);
                let text = match &self.layout {
                    Some(l) => render(l, raw, 0, &strings),
                    None => hex(bytes),
                };
                Key {
                    id: with_len(&id, full_len, truncated),
                    text,
                    truncated,
                }
            }
            Encoding::Interface => {
                let (ty, value) = bytes.split_at(8.min(bytes.len()));
                let ty_addr = u64::from_le_bytes(ty.try_into().unwrap_or_default());
                if ty_addr == 0 {
                    return Key {
                        id: bytes.to_vec(),
                        text: "<nil>".into(),
                        truncated,
                    };
                }
                let resolved = self
                    .dyn_types
                    .entry(ty_addr)
                    .or_insert_with(|| {
                        let r = types?;
                        let t = r.read(ty_addr).ok()?;
                        Some((t.name, r.key_layout(ty_addr).ok()?))
                    })
                    .clone();
                let text = match &resolved {
                    Some((_, KeyLayout::String)) => String::from_utf8_lossy(value).into_owned(),
                    Some((_, l)) => render_flat(l, value),
                    None => hex(value),
                };
                Key {
                    id: with_len(bytes, full_len, truncated),
                    text,
                    truncated,
                }
            }
        }
    }
}

fn with_len(bytes: &[u8], full_len: u32, truncated: bool) -> Vec<u8> {
    let mut id = bytes.to_vec();
    if truncated {
        id.extend_from_slice(&full_len.to_le_bytes());
    }
    id
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Renders a key with no string contents to follow.
pub fn render_flat(layout: &KeyLayout, bytes: &[u8]) -> String {
    render(layout, bytes, 0, &[])
}

/// Renders the value at `bytes[at..]` as Go's `%v`; `strings` gives (offset, contents) of strings.
fn render(layout: &KeyLayout, bytes: &[u8], at: usize, strings: &[(usize, &[u8])]) -> String {
    let field = |size: usize| bytes.get(at..at + size);
    let uint = |size: u8| -> Option<u64> {
        let b = field(size as usize)?;
        let mut buf = [0u8; 8];
        buf[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        Some(u64::from_le_bytes(buf))
    };
    match layout {
        KeyLayout::Bool => match field(1) {
            Some([0]) => "false".into(),
            Some(_) => "true".into(),
            None => "?".into(),
        },
        KeyLayout::Int { size } => uint(*size)
            .map(|v| {
                let shift = 64 - 8 * u32::from(*size).min(8);
                (((v << shift) as i64) >> shift).to_string()
            })
            .unwrap_or_else(|| "?".into()),
        KeyLayout::Uint { size } => uint(*size)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into()),
        KeyLayout::Float { size } => uint(*size)
            .map(|v| {
                if *size == 4 {
                    go_float(f64::from(f32::from_bits(v as u32)), 32)
                } else {
                    go_float(f64::from_bits(v), 64)
                }
            })
            .unwrap_or_else(|| "?".into()),
        KeyLayout::Complex { size } => {
            let half = *size / 2;
            let part = |o: usize| -> Option<String> {
                let b = bytes.get(at + o..at + o + half as usize)?;
                let mut buf = [0u8; 8];
                buf[..b.len()].copy_from_slice(b);
                let v = u64::from_le_bytes(buf);
                Some(if half == 4 {
                    go_float(f64::from(f32::from_bits(v as u32)), 32)
                } else {
                    go_float(f64::from_bits(v), 64)
                })
            };
            match (part(0), part(half as usize)) {
                (Some(re), Some(im)) => {
                    let sign = if im.starts_with('-') || im.starts_with('+') {
                        ""
                    } else {
                        "+"
                    };
                    format!("({re}{sign}{im}i)")
                }
                _ => "?".into(),
            }
        }
        KeyLayout::Pointer => match uint(8) {
            Some(0) => "<nil>".into(),
            Some(p) => format!("{p:#x}"),
            None => "?".into(),
        },
        KeyLayout::String => strings
            .iter()
            .find(|(o, _)| *o == at)
            .map(|(_, s)| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_else(|| "?".into()),
        KeyLayout::Array {
            elem,
            elem_size,
            len,
        } => {
            let items: Vec<String> = (0..*len)
                .map(|i| render(elem, bytes, at + (i * elem_size) as usize, strings))
                .collect();
            format!("[{}]", items.join(" "))
        }
        KeyLayout::Struct { fields } => {
            let items: Vec<String> = fields
                .iter()
                .map(|(off, l)| render(l, bytes, at + *off as usize, strings))
                .collect();
            format!("{{{}}}", items.join(" "))
        }
        KeyLayout::Interface { .. } => "?".into(),
    }
}

/// A float as Go's `%v` prints it (strconv 'g', shortest digits): exponent form when the decimal
/// exponent is < -4 or ≥ the precision (6, or the digit count when that is larger and the
/// number is an integer), e.g. 1e+08, 1.234567e+06, 1e-05, 0.5, 123456.
pub fn go_float(v: f64, bits: u32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = if bits == 32 {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = mantissa.trim_start_matches('-').replace('.', "").len() as i32;
    let mut eprec = 6;
    if eprec > digits && digits > exp {
        eprec = digits;
    }
    if exp < -4 || exp >= eprec {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else if bits == 32 {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_struct() -> KeyLayout {
        KeyLayout::Struct {
            fields: vec![(0, KeyLayout::Int { size: 8 }), (8, KeyLayout::String)],
        }
    }

    #[test]
    fn struct_with_string_identity_ignores_the_pointer() {
        let mut d = KeyDecoder::new(Some(key_struct()), 24);
        let enc = d.encoding_for_generic();
        assert_eq!(enc, Encoding::RawThenStrings);
        let mk = |ptr: u64| {
            let mut b = 3i64.to_le_bytes().to_vec();
            b.extend_from_slice(&ptr.to_le_bytes());
            b.extend_from_slice(&6u64.to_le_bytes());
            b.extend_from_slice(b"user:3");
            b
        };
        let a = d.decode(enc, &mk(0xc000010000), 30, None);
        let b = d.decode(enc, &mk(0xc000099990), 30, None);
        assert_eq!(a.id, b.id);
        assert_eq!(a.text, "{3 user:3}");
        assert!(!a.truncated);
    }

    #[test]
    fn arrays_ints_pointers_render_like_go() {
        let arr = KeyLayout::Array {
            elem: Box::new(KeyLayout::Int { size: 8 }),
            elem_size: 8,
            len: 3,
        };
        let mut b = Vec::new();
        for v in [1i64, -2, 3] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(render_flat(&arr, &b), "[1 -2 3]");
        assert_eq!(
            render_flat(&KeyLayout::Uint { size: 4 }, &7u32.to_le_bytes()),
            "7"
        );
        assert_eq!(
            render_flat(&KeyLayout::Int { size: 4 }, &(-7i32).to_le_bytes()),
            "-7"
        );
        assert_eq!(
            render_flat(&KeyLayout::Pointer, &0xc000012345u64.to_le_bytes()),
            "0xc000012345"
        );
        assert_eq!(render_flat(&KeyLayout::Bool, &[1]), "true");
    }

    #[test]
    fn floats_render_like_go() {
        assert_eq!(go_float(0.5, 64), "0.5");
        assert_eq!(go_float(1e8, 64), "1e+08");
        assert_eq!(go_float(123456.0, 64), "123456");
        assert_eq!(go_float(1234567.0, 64), "1.234567e+06");
        assert_eq!(go_float(1e-5, 64), "1e-05");
        assert_eq!(go_float(-2.0, 64), "-2");
    }

    #[test]
    fn truncated_strings_keep_their_length_in_the_identity() {
        let mut d = KeyDecoder::new(Some(KeyLayout::String), 16);
        let a = d.decode(Encoding::Str, b"abcd", 100, None);
        let b = d.decode(Encoding::Str, b"abcd", 101, None);
        assert!(a.truncated);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn plans_follow_strings_in_structs_and_arrays() {
        let p = Plan::for_layout(&key_struct(), 24);
        assert_eq!(
            (p.kind, p.string_offsets.clone()),
            (PlanKind::PLAN_STRINGS, vec![8])
        );
        let arr = KeyLayout::Array {
            elem: Box::new(KeyLayout::String),
            elem_size: 16,
            len: 6,
        };
        let p = Plan::for_layout(&arr, 96);
        assert_eq!(p.string_offsets.len(), PLAN_MAX_STRINGS);
        assert!(p.partial);
        assert_eq!(
            Plan::for_layout(&KeyLayout::Interface { empty: true }, 16).kind,
            PlanKind::PLAN_EFACE
        );
    }
}

/// Key decoders for every map type seen, built on first sight from the type descriptors.
#[derive(Default)]
pub struct Decoders {
    by_type: HashMap<u64, KeyDecoder>,
}

impl Decoders {
    /// The decoder for the map type at `map_type` (link-time address).
    pub fn for_map_type(
        &mut self,
        map_type: u64,
        types: Option<&TypeReader<'_>>,
    ) -> &mut KeyDecoder {
        self.by_type.entry(map_type).or_insert_with(|| {
            if map_type == super::syncmap::SYNC_MAP {
                return KeyDecoder::new(Some(KeyLayout::Interface { empty: true }), 16);
            }
            let key = types.and_then(|r| match r.read(map_type).ok()?.detail {
                crate::gobin::types::Detail::Map { key, .. } => Some(key),
                _ => None,
            });
            let layout = key.and_then(|k| types?.key_layout(k).ok());
            let size = key
                .and_then(|k| types?.read(k).ok())
                .map(|t| t.size)
                .unwrap_or(0);
            KeyDecoder::new(layout, size)
        })
    }

    /// Decodes the key of one map operation (a clear has none: an empty key).
    pub fn decode(
        &mut self,
        ev: &crate::decode::records::WriteEvent,
        types: Option<&TypeReader<'_>>,
    ) -> Key {
        if ev.op == MapOp::OP_CLEAR {
            return Key {
                id: Vec::new(),
                text: String::new(),
                truncated: false,
            };
        }
        let d = self.for_map_type(ev.map_type, types);
        let enc = match ev.role {
            ProbeRole::ROLE_ASSIGN_FASTSTR | ProbeRole::ROLE_DELETE_FASTSTR => Encoding::Str,
            ProbeRole::ROLE_ASSIGN_FAST32
            | ProbeRole::ROLE_ASSIGN_FAST64
            | ProbeRole::ROLE_ASSIGN_FAST64PTR
            | ProbeRole::ROLE_DELETE_FAST32
            | ProbeRole::ROLE_DELETE_FAST64 => Encoding::Raw,
            _ if ev.flags.has(EventFlag::EV_NO_PLAN) => Encoding::Raw,
            _ => d.encoding_for_generic(),
        };
        d.decode(enc, &ev.key, ev.key_len, types)
    }
}

/// Key plans for every map type in the binary whose keys go through `runtime.mapassign`
/// (non-fast keys), keyed by the map type's link-time address, as the BPF side reads them.
pub fn plans_for_binary(types: &TypeReader<'_>) -> Vec<(u64, KeyPlan)> {
    types
        .map_types()
        .into_iter()
        .filter_map(|t| {
            let crate::gobin::types::Detail::Map { key, .. } = t.detail else {
                return None;
            };
            let size = types.read(key).ok()?.size;
            let layout = types.key_layout(key).ok()?;
            Some((t.addr, Plan::for_layout(&layout, size).to_bpf()))
        })
        .collect()
}
