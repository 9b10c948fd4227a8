//! Key decoding from arbitrary bytes: the input is a ring-buffer record (as the BPF side would
//! send it) preceded by a small recipe that builds a key layout.
//!
//! Byte 0 picks the encoding (raw, string, raw-then-strings, interface), byte 1 the captured
//! length's relation to the full length, then layout bytes (a tiny prefix grammar: bool, ints,
//! floats, complex, pointer, string, array, struct, interface; nesting depth at most 4). The rest
//! are the captured key bytes. `KeyDecoder::decode` must never panic and must mark keys
//! truncated exactly when the full length exceeds the captured bytes; `Record::parse` on the
//! same bytes must never panic either.
#![no_main]

use ebpf_map_trace::gobin::types::KeyLayout;
use ebpf_map_trace::decode::keys::{Encoding, KeyDecoder};
use ebpf_map_trace::decode::records::Record;
use libfuzzer_sys::fuzz_target;

/// Reads one layout from `b`, advancing it; `None` when the bytes run out.
fn layout(b: &mut &[u8], depth: u32) -> Option<KeyLayout> {
    let (&op, rest) = b.split_first()?;
    *b = rest;
    let size = [1u8, 2, 4, 8][usize::from(op >> 4) & 3];
    Some(match op % 11 {
        0 => KeyLayout::Bool,
        1 => KeyLayout::Int { size },
        2 => KeyLayout::Uint { size },
        3 => KeyLayout::Float {
            size: if op & 0x10 != 0 { 4 } else { 8 },
        },
        4 => KeyLayout::Complex {
            size: if op & 0x10 != 0 { 8 } else { 16 },
        },
        5 => KeyLayout::Pointer,
        6 => KeyLayout::String,
        7 | 8 if depth < 4 => {
            let (&n, rest) = b.split_first()?;
            *b = rest;
            if op % 11 == 7 {
                let elem = layout(b, depth + 1)?;
                KeyLayout::Array {
                    elem: Box::new(elem),
                    elem_size: u64::from(n >> 4) * 4,
                    len: u64::from(n & 0xf),
                }
            } else {
                let mut fields = Vec::new();
                for i in 0..u64::from(n & 7) {
                    fields.push((i * u64::from(n >> 3), layout(b, depth + 1)?));
                }
                KeyLayout::Struct { fields }
            }
        }
        _ => KeyLayout::Interface {
            empty: op & 1 == 0,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Record::parse(data);
    let [enc, len_mode, rest @ ..] = data else {
        return;
    };
    let mut cursor = rest;
    let lay = layout(&mut cursor, 0);
    let key_size = u64::from(*len_mode & 0x3f) * 4;
    let enc = match enc % 4 {
        0 => Encoding::Raw,
        1 => Encoding::Str,
        2 => Encoding::RawThenStrings,
        _ => Encoding::Interface,
    };
    let bytes = cursor;
    let full_len = match len_mode >> 6 {
        0 => bytes.len() as u32,
        1 => bytes.len() as u32 + 1,
        2 => u32::MAX,
        _ => (bytes.len() as u32) / 2,
    };
    let mut dec = KeyDecoder::new(lay, key_size);
    let _ = dec.plan();
    let _ = dec.encoding_for_generic();
    let key = dec.decode(enc, bytes, full_len, None);
    assert_eq!(key.truncated, full_len as usize > bytes.len());
    // Equal input, equal identity.
    let again = dec.decode(enc, bytes, full_len, None);
    assert_eq!(key, again);
});
