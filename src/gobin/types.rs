//! Go type descriptors (`abi.Type`, 48 bytes, identical Go 1.17–1.27) read from the file: a type's
//! name (`map[string]int`), kind and size, a map's key and element, and the layout of keys
//! (struct fields, arrays, strings, interfaces) needed to hash and print keys by value.
use serde::Serialize;

use super::bytes::{i32_at, u64_at, u8_at, uvarint};
use super::elf::ElfImage;
use super::error::{corrupt, Result};

/// `abi.Kind` values (low 5 bits of `Type.Kind_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bool,
    Int,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Uintptr,
    Float32,
    Float64,
    Complex64,
    Complex128,
    Array,
    Chan,
    Func,
    Interface,
    Map,
    Pointer,
    Slice,
    String,
    Struct,
    UnsafePointer,
}

impl Kind {
    pub fn from_abi(k: u8) -> Option<Kind> {
        use Kind::*;
        const ALL: [Kind; 26] = [
            Bool,
            Int,
            Int8,
            Int16,
            Int32,
            Int64,
            Uint,
            Uint8,
            Uint16,
            Uint32,
            Uint64,
            Uintptr,
            Float32,
            Float64,
            Complex64,
            Complex128,
            Array,
            Chan,
            Func,
            Interface,
            Map,
            Pointer,
            Slice,
            String,
            Struct,
            UnsafePointer,
        ];
        ALL.get(usize::from(k & 0x1f).checked_sub(1)?).copied()
    }

    pub fn is_signed_int(self) -> bool {
        matches!(
            self,
            Kind::Int | Kind::Int8 | Kind::Int16 | Kind::Int32 | Kind::Int64
        )
    }

    pub fn is_unsigned_int(self) -> bool {
        matches!(
            self,
            Kind::Uint | Kind::Uint8 | Kind::Uint16 | Kind::Uint32 | Kind::Uint64 | Kind::Uintptr
        )
    }
}

const TFLAG_EXTRA_STAR: u8 = 1 << 1;
const TYPE_HEADER: usize = 48;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StructField {
    pub name: String,
    pub offset: u64,
    #[serde(skip)]
    pub type_addr: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "shape", rename_all = "lowercase")]
pub enum Detail {
    Plain,
    Map { key: u64, elem: u64 },
    Pointer { elem: u64 },
    Slice { elem: u64 },
    Array { elem: u64, len: u64 },
    Struct { fields: Vec<StructField> },
    Interface { methods: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoType {
    pub addr: u64,
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub detail: Detail,
}

/// How to read, hash and print a key of some type from its bytes: computed once per map type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "layout", rename_all = "lowercase")]
pub enum KeyLayout {
    Bool,
    Int {
        size: u8,
    },
    Uint {
        size: u8,
    },
    Float {
        size: u8,
    },
    Complex {
        size: u8,
    },
    /// Pointers, channels, unsafe pointers: printed as `0x…`.
    Pointer,
    /// Go string header: data pointer, then length.
    String,
    Array {
        elem: Box<KeyLayout>,
        elem_size: u64,
        len: u64,
    },
    Struct {
        fields: Vec<(u64, KeyLayout)>,
    },
    /// `interface{}` (eface) or non-empty (iface): type word then data word.
    Interface {
        empty: bool,
    },
}

impl KeyLayout {
    /// Whether the key's bytes alone identify it (no pointers to chase for equality).
    pub fn is_flat(&self) -> bool {
        match self {
            KeyLayout::String | KeyLayout::Interface { .. } => false,
            KeyLayout::Array { elem, .. } => elem.is_flat(),
            KeyLayout::Struct { fields } => fields.iter().all(|(_, l)| l.is_flat()),
            _ => true,
        }
    }
}

pub struct TypeReader<'a> {
    elf: &'a ElfImage,
    types_base: u64,
}

/// Bounds for untrusted data: type graphs deeper or wider than this are reported as corrupt.
const MAX_DEPTH: u32 = 16;
const MAX_FIELDS: u64 = 4096;

impl<'a> TypeReader<'a> {
    pub fn new(elf: &'a ElfImage, types_base: u64) -> Self {
        TypeReader { elf, types_base }
    }

    fn bytes(&self, addr: u64, len: usize) -> Result<&'a [u8]> {
        self.elf
            .exact_bytes_at(addr, len)
            .ok_or_else(|| corrupt!("type data at {addr:#x} is outside the file"))
    }

    fn word(&self, addr: u64) -> Result<u64> {
        self.elf
            .u64_at(addr)
            .ok_or_else(|| corrupt!("type data at {addr:#x} is outside the file"))
    }

    /// A Go `abi.Name` at `addr`: flags byte, varint length, bytes.
    fn name_at(&self, addr: u64) -> Result<String> {
        let head = self.elf.bytes_at(addr, 11).unwrap_or(&[]);
        let (len, n) =
            uvarint(head, 1).ok_or_else(|| corrupt!("type name at {addr:#x} is malformed"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l < 1 << 20)
            .ok_or_else(|| corrupt!("type name at {addr:#x} is too long"))?;
        let start = addr
            .checked_add(1 + n as u64)
            .ok_or_else(|| corrupt!("type name at {addr:#x} is out of range"))?;
        let bytes = self.bytes(start, len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Reads the descriptor at link-time address `addr`.
    pub fn read(&self, addr: u64) -> Result<GoType> {
        let h = self.bytes(addr, TYPE_HEADER)?;
        let size = u64_at(h, 0).unwrap_or(0);
        let tflag = u8_at(h, 20).unwrap_or(0);
        let kind_byte = u8_at(h, 23).unwrap_or(0);
        let kind = Kind::from_abi(kind_byte)
            .ok_or_else(|| corrupt!("type at {addr:#x} has invalid kind {kind_byte}"))?;
        let name_off = i32_at(h, 40).unwrap_or(0);
        let name_addr = self
            .types_base
            .checked_add_signed(i64::from(name_off))
            .ok_or_else(|| corrupt!("type at {addr:#x} has a bad name offset"))?;
        let mut name = self.name_at(name_addr)?;
        if tflag & TFLAG_EXTRA_STAR != 0 && name.starts_with('*') {
            name.remove(0);
        }
        let at = |off: u64| {
            self.word(
                addr.checked_add(off)
                    .ok_or_else(|| corrupt!("type at {addr:#x} is out of range"))?,
            )
        };
        let detail = match kind {
            Kind::Map => Detail::Map {
                key: at(48)?,
                elem: at(56)?,
            },
            Kind::Pointer => Detail::Pointer { elem: at(48)? },
            Kind::Slice => Detail::Slice { elem: at(48)? },
            Kind::Array => Detail::Array {
                elem: at(48)?,
                len: at(64)?,
            },
            Kind::Interface => Detail::Interface { methods: at(64)? },
            Kind::Struct => {
                let (ptr, len) = (at(56)?, at(64)?);
                if len > MAX_FIELDS {
                    return Err(corrupt!("struct type at {addr:#x} claims {len} fields"));
                }
                let mut fields = Vec::with_capacity(len as usize);
                for i in 0..len {
                    let f = ptr
                        .checked_add(i * 24)
                        .filter(|f| f.checked_add(24).is_some())
                        .ok_or_else(|| corrupt!("struct fields at {ptr:#x} are out of range"))?;
                    fields.push(StructField {
                        name: self.name_at(self.word(f)?)?,
                        type_addr: self.word(f + 8)?,
                        offset: self.word(f + 16)?,
                    });
                }
                Detail::Struct { fields }
            }
            _ => Detail::Plain,
        };
        Ok(GoType {
            addr,
            name,
            kind,
            size,
            detail,
        })
    }

    /// The key layout of values of the type at `addr`.
    pub fn key_layout(&self, addr: u64) -> Result<KeyLayout> {
        self.layout_at(addr, 0)
    }

    fn layout_at(&self, addr: u64, depth: u32) -> Result<KeyLayout> {
        if depth > MAX_DEPTH {
            return Err(corrupt!("type at {addr:#x} nests deeper than {MAX_DEPTH}"));
        }
        let t = self.read(addr)?;
        let size = u8::try_from(t.size).unwrap_or(0);
        Ok(match (&t.kind, t.detail) {
            (Kind::Bool, _) => KeyLayout::Bool,
            (k, _) if k.is_signed_int() => KeyLayout::Int { size },
            (k, _) if k.is_unsigned_int() => KeyLayout::Uint { size },
            (Kind::Float32 | Kind::Float64, _) => KeyLayout::Float { size },
            (Kind::Complex64 | Kind::Complex128, _) => KeyLayout::Complex { size },
            (Kind::String, _) => KeyLayout::String,
            (Kind::Pointer | Kind::Chan | Kind::UnsafePointer, _) => KeyLayout::Pointer,
            (Kind::Interface, Detail::Interface { methods }) => KeyLayout::Interface {
                empty: methods == 0,
            },
            (Kind::Array, Detail::Array { elem, len }) => {
                let elem_size = self.read(elem)?.size;
                KeyLayout::Array {
                    elem: Box::new(self.layout_at(elem, depth + 1)?),
                    elem_size,
                    len,
                }
            }
            (Kind::Struct, Detail::Struct { fields }) => KeyLayout::Struct {
                fields: fields
                    .iter()
                    .map(|f| Ok((f.offset, self.layout_at(f.type_addr, depth + 1)?)))
                    .collect::<Result<_>>()?,
            },
            (k, _) => {
                return Err(corrupt!(
                    "type {} of kind {k:?} cannot be a map key",
                    t.name
                ))
            }
        })
    }
}

impl TypeReader<'_> {
    /// Every map type descriptor stored in the binary, found by scanning the segment that holds
    /// type data for 8-aligned descriptors of kind Map whose name starts with `map[`.
    /// (Map types made at run time by `reflect.MapOf` are not in the file.)
    pub fn map_types(&self) -> Vec<GoType> {
        let Some(seg) = self
            .elf
            .segments
            .iter()
            .find(|s| self.types_base >= s.vaddr && self.types_base - s.vaddr < s.filesz)
        else {
            return Vec::new();
        };
        let end = seg.vaddr.saturating_add(seg.filesz);
        let Some(bytes) = self
            .elf
            .bytes_at(self.types_base, (end - self.types_base) as usize)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut off = 0usize;
        while off + TYPE_HEADER + 16 <= bytes.len() {
            // size == 8 (a map is a pointer) and kind == Map, before any costly check.
            if bytes[off + 23] & 0x1f == 21 && u64_at(bytes, off) == Some(8) {
                if let Ok(t) = self.read(self.types_base + off as u64) {
                    if t.name.starts_with("map[") {
                        out.push(t);
                    }
                }
            }
            off += 8;
        }
        out
    }
}

impl TypeReader<'_> {
    /// Bytes of one bucket (classic `maptype.BucketSize`, u16 at 82) or one group (Swiss: the
    /// size of the group type at 64) of the map type at `addr`.
    pub fn map_block_size(&self, addr: u64, swiss: bool) -> Option<u64> {
        if swiss {
            let group = self.word(addr.checked_add(64)?).ok()?;
            self.read(group).ok().map(|t| t.size).filter(|&s| s > 8)
        } else {
            let b = self.bytes(addr.checked_add(82)?, 2).ok()?;
            Some(u64::from(u16::from_le_bytes([b[0], b[1]]))).filter(|&s| s > 8)
        }
    }
}
