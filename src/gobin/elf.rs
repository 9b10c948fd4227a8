//! The ELF container of a Go binary: sections, loadable segments, symbols, architecture and build
//! mode, and reading bytes by virtual address. Everything else in `gobin` reads through this.
use ::bytes::Bytes;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};
use serde::Serialize;

use super::error::{GoBinError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(rename = "x86-64")]
    X86_64,
    Arm64,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86-64",
            Arch::Arm64 => "arm64",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    /// File offset of the section's bytes; `None` for NOBITS (.bss) sections.
    pub offset: Option<u64>,
    pub compressed: bool,
}

/// A PT_LOAD segment: maps `[vaddr, vaddr+filesz)` to `[offset, offset+filesz)`.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub executable: bool,
    pub writable: bool,
}

pub struct ElfImage {
    /// The whole file (mapped from disk by `GoBinary::open`).
    pub data: Bytes,
    pub arch: Arch,
    /// Position-independent executable (ET_DYN).
    pub pie: bool,
    /// Has a `.symtab` with symbols (false after `strip` or `-ldflags=-s`).
    pub has_symbols: bool,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

impl ElfImage {
    pub fn parse(data: impl Into<Bytes>) -> Result<Self> {
        let data: Bytes = data.into();
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(GoBinError::NotElf("no ELF magic".into()));
        }
        if data.get(4) != Some(&2) {
            return Err(GoBinError::UnsupportedArch("32-bit ELF".into()));
        }
        let file = ElfFile64::<Endianness>::parse(&*data)
            .map_err(|e| GoBinError::NotElf(e.to_string()))?;
        let header = file.elf_header();
        let endian = file.endian();
        if endian != Endianness::Little {
            return Err(GoBinError::UnsupportedArch("big-endian ELF".into()));
        }
        let arch = match header.e_machine(endian) {
            elf::EM_X86_64 => Arch::X86_64,
            elf::EM_AARCH64 => Arch::Arm64,
            m => return Err(GoBinError::UnsupportedArch(format!("ELF machine {m}"))),
        };
        let pie = header.e_type(endian) == elf::ET_DYN;
        let mut sections = Vec::new();
        for s in file.sections() {
            let name = s.name().unwrap_or("").to_string();
            let offset = s.file_range().map(|(o, _)| o);
            let compressed = s
                .compressed_file_range()
                .map(|r| r.format != object::CompressionFormat::None)
                .unwrap_or(false);
            sections.push(Section {
                name,
                addr: s.address(),
                size: s.size(),
                offset,
                compressed,
            });
        }
        let mut segments = Vec::new();
        for ph in file.elf_program_headers() {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            segments.push(Segment {
                vaddr: ph.p_vaddr(endian),
                offset: ph.p_offset(endian),
                filesz: ph.p_filesz(endian),
                memsz: ph.p_memsz(endian),
                executable: ph.p_flags(endian) & elf::PF_X != 0,
                writable: ph.p_flags(endian) & elf::PF_W != 0,
            });
        }
        let has_symbols = file.symbols().next().is_some();
        drop(file);
        Ok(ElfImage {
            data,
            arch,
            pie,
            has_symbols,
            sections,
            segments,
        })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The bytes of a section as stored in the file (not decompressed).
    pub fn section_data(&self, s: &Section) -> Option<&[u8]> {
        let off = usize::try_from(s.offset?).ok()?;
        let len = usize::try_from(s.size).ok()?;
        self.data.get(off..off.checked_add(len)?)
    }

    /// `section_data` as a view sharing the file's bytes (no copy).
    pub fn section_bytes(&self, s: &Section) -> Option<Bytes> {
        let data = self.section_data(s)?;
        Some(self.data.slice_ref(data))
    }

    /// A section's contents, decompressed if it is compressed (DWARF).
    pub fn section_uncompressed(&self, name: &str) -> Option<Vec<u8>> {
        let file = ElfFile64::<Endianness>::parse(&*self.data).ok()?;
        let s = file.section_by_name(name)?;
        s.uncompressed_data().ok().map(|c| c.into_owned())
    }

    /// The file offset holding virtual address `vaddr`, if a loaded segment maps it from the file.
    pub fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
            .map(|s| vaddr - s.vaddr + s.offset)
    }

    /// Up to `len` bytes at virtual address `vaddr` (fewer if the segment ends first).
    pub fn bytes_at(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let seg = self
            .segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)?;
        let start = usize::try_from(vaddr - seg.vaddr + seg.offset).ok()?;
        let seg_end = usize::try_from(seg.offset.checked_add(seg.filesz)?).ok()?;
        let end = start.saturating_add(len).min(seg_end).min(self.data.len());
        self.data.get(start..end)
    }

    /// Exactly `len` bytes at `vaddr`, or `None`.
    pub fn exact_bytes_at(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        self.bytes_at(vaddr, len).filter(|b| b.len() == len)
    }

    pub fn u64_at(&self, vaddr: u64) -> Option<u64> {
        self.exact_bytes_at(vaddr, 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// Address of a symbol in `.symtab`, if the binary has symbols.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        if !self.has_symbols {
            return None;
        }
        let file = ElfFile64::<Endianness>::parse(&*self.data).ok()?;
        let sym = file.symbols().find(|s| s.name() == Ok(name))?;
        Some(sym.address())
    }

    /// Non-code loadable segments with the bytes the file holds for them (data scans).
    pub fn data_segments(&self) -> impl Iterator<Item = (&Segment, &[u8])> {
        self.segments
            .iter()
            .filter(|s| !s.executable)
            .filter_map(|seg| {
                let start = usize::try_from(seg.offset).ok()?;
                let end = start
                    .checked_add(usize::try_from(seg.filesz).ok()?)?
                    .min(self.data.len());
                Some((seg, self.data.get(start..end)?))
            })
    }

    /// Bytes the loadable segments need past the end of the file (a truncated file), if any.
    pub fn missing_bytes(&self) -> Option<u64> {
        let len = self.data.len() as u64;
        self.segments
            .iter()
            .filter_map(|s| s.offset.checked_add(s.filesz))
            .max()
            .filter(|&end| end > len)
            .map(|end| end - len)
    }
}
