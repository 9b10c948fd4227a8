//! Bounds-checked little-endian reads over untrusted bytes: every read returns `None` past the end.

pub fn u8_at(d: &[u8], off: usize) -> Option<u8> {
    d.get(off).copied()
}

pub fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub fn i32_at(d: &[u8], off: usize) -> Option<i32> {
    u32_at(d, off).map(|v| v as i32)
}

pub fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A pointer-sized word (4 or 8 bytes).
pub fn word_at(d: &[u8], off: usize, ptr_size: usize) -> Option<u64> {
    match ptr_size {
        8 => u64_at(d, off),
        4 => u32_at(d, off).map(u64::from),
        _ => None,
    }
}

/// An unsigned LEB128 varint as Go's `encoding/binary.Uvarint` writes it; returns (value, length).
pub fn uvarint(d: &[u8], off: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut shift = 0u32;
    for i in 0..10 {
        let b = *d.get(off + i)?;
        value |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
    }
    None
}

/// A NUL-terminated string starting at `off` (lossy UTF-8).
pub fn cstr_at(d: &[u8], off: usize) -> Option<String> {
    let rest = d.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none() {
        let d = [1u8, 2, 3];
        assert_eq!(u16_at(&d, 1), Some(0x0302));
        assert_eq!(u16_at(&d, 2), None);
        assert_eq!(u64_at(&d, usize::MAX - 2), None);
        assert_eq!(word_at(&d, 0, 3), None);
    }

    #[test]
    fn uvarint_matches_go_encoding() {
        assert_eq!(uvarint(&[0x05], 0), Some((5, 1)));
        assert_eq!(uvarint(&[0xac, 0x02], 0), Some((300, 2)));
        assert_eq!(uvarint(&[0x80, 0x80], 0), None);
        assert_eq!(uvarint(&[0xff; 12], 0), None);
    }

    #[test]
    fn cstr_needs_a_terminator() {
        assert_eq!(cstr_at(b"ab\0c", 0).as_deref(), Some("ab"));
        assert_eq!(cstr_at(b"abc", 0), None);
    }
}
