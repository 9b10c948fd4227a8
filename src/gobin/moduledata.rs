//! `runtime.firstmoduledata`: the runtime's table of where text and type data live. Found by
//! symbol, by the `.go.module` section (Go 1.26+), or by scanning data for its first field (a
//! pointer to `.gopclntab`) on stripped binaries. Gives the text start, the types base, the
//! function-data base, and which of the struct's layouts the binary has: the layout alone says
//! which Go versions can have built it (checked field by field, so that one layout fits).
use super::elf::ElfImage;

/// Offsets of fields in `runtime.moduledata` (64-bit) that every layout shares.
const TEXT_OFFSET: u64 = 176;
const ETEXT_OFFSET: u64 = 184;
const ENOPTRBSS_OFFSET: u64 = 248;
/// `covctrs`, `ecovctrs` (Go 1.20+): between `enoptrbss` and `end`.
const COVCTRS_OFFSET: u64 = 256;
/// More text sections than this (ppc64/arm64 split huge text; x86-64 never does) is not a table.
const MAX_TEXT_SECTIONS: u64 = 64;

/// The shapes of `runtime.moduledata` (runtime/symtab.go) after its common prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Go 1.16–1.17: `types`, `etypes`, then `textsectmap`.
    Go116,
    /// Go 1.18–1.19: adds `rodata` and `gofunc`.
    Go118,
    /// Go 1.20–1.25: adds `covctrs`/`ecovctrs` before `end`.
    Go120,
    /// Go 1.26: adds `epclntab` after `gofunc`.
    Go126,
    /// Go 1.27: adds `typedesclen`, `itaboffset` and `itabsize`.
    Go127,
}

/// Field offsets of one layout.
struct Offsets {
    end: u64,
    types: u64,
    typedesclen: Option<u64>,
    etypes: u64,
    rodata: Option<u64>,
    gofunc: Option<u64>,
    epclntab: Option<u64>,
    textsectmap: u64,
}

impl Layout {
    pub const ALL: [Layout; 5] = [
        Layout::Go116,
        Layout::Go118,
        Layout::Go120,
        Layout::Go126,
        Layout::Go127,
    ];

    /// The Go minor versions that write this layout: (first, last), `None` = up to the newest.
    pub fn minors(self) -> (u32, Option<u32>) {
        match self {
            Layout::Go116 => (16, Some(17)),
            Layout::Go118 => (18, Some(19)),
            Layout::Go120 => (20, Some(25)),
            Layout::Go126 => (26, Some(26)),
            Layout::Go127 => (27, None),
        }
    }

    /// The layout Go 1.`minor` writes.
    pub fn for_minor(minor: u32) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| {
            let (lo, hi) = l.minors();
            minor >= lo && hi.is_none_or(|hi| minor <= hi)
        })
    }

    fn offsets(self) -> Offsets {
        let (end, types) = match self {
            Layout::Go116 | Layout::Go118 => (256, 280),
            _ => (272, 296),
        };
        match self {
            Layout::Go116 => Offsets {
                end,
                types,
                typedesclen: None,
                etypes: 288,
                rodata: None,
                gofunc: None,
                epclntab: None,
                textsectmap: 296,
            },
            Layout::Go118 | Layout::Go120 | Layout::Go126 => Offsets {
                end,
                types,
                typedesclen: None,
                etypes: types + 8,
                rodata: Some(types + 16),
                gofunc: Some(types + 24),
                epclntab: (self == Layout::Go126).then_some(types + 32),
                textsectmap: types + if self == Layout::Go126 { 40 } else { 32 },
            },
            Layout::Go127 => Offsets {
                end,
                types,
                typedesclen: Some(304),
                etypes: 312,
                rodata: Some(336),
                gofunc: Some(344),
                epclntab: Some(352),
                textsectmap: 360,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    Symbol,
    GoModuleSection,
    Scan,
}

#[derive(Clone, Copy, Debug)]
pub struct ModuleData {
    pub addr: u64,
    pub text: u64,
    pub etext: u64,
    /// Base of type data: a type's name offset is relative to this.
    pub types: u64,
    /// Base of function data (`go:func.*`): funcdata offsets such as the inline tree's are
    /// relative to this (Go 1.18+).
    pub gofunc: Option<u64>,
    pub layout: Layout,
    pub found_by: FoundBy,
}

/// Locates and reads the first module's data. With `go_minor` only that version's layout is
/// tried; without it, every layout, and the one whose fields are consistent wins.
pub fn find(elf: &ElfImage, pclntab_addr: u64, go_minor: Option<u32>) -> Option<ModuleData> {
    let layouts: Vec<Layout> = match go_minor {
        Some(m) => Layout::for_minor(m).into_iter().collect(),
        None => Layout::ALL.to_vec(),
    };
    let mut candidates = Vec::new();
    if let Some(a) = elf.symbol("runtime.firstmoduledata") {
        candidates.push((a, FoundBy::Symbol));
    }
    if let Some(s) = elf.section(".go.module") {
        candidates.push((s.addr, FoundBy::GoModuleSection));
    }
    let read_any = |addr: u64, by: FoundBy| {
        layouts
            .iter()
            .find_map(|&l| read(elf, addr, pclntab_addr, l, by))
    };
    candidates
        .into_iter()
        .find_map(|(addr, by)| read_any(addr, by))
        .or_else(|| scan(elf, pclntab_addr, &read_any))
}

/// The layouts whose fields are all consistent for a moduledata at `addr` (one, for a real
/// binary; tests check that).
pub fn consistent_layouts(elf: &ElfImage, addr: u64, pclntab_addr: u64) -> Vec<Layout> {
    Layout::ALL
        .into_iter()
        .filter(|&l| read(elf, addr, pclntab_addr, l, FoundBy::Symbol).is_some())
        .collect()
}

/// Reads a moduledata of `layout` at `addr` if every field checked is consistent: it starts
/// with the pclntab's address, text lies in code, the data bounds are ordered, the type data
/// and function data are in the file, and `textsectmap` is a slice of a few text sections.
fn read(
    elf: &ElfImage,
    addr: u64,
    pclntab_addr: u64,
    layout: Layout,
    by: FoundBy,
) -> Option<ModuleData> {
    let field = |off: u64| elf.u64_at(addr.checked_add(off)?);
    let mapped = |a: u64| elf.bytes_at(a, 1).is_some();
    if field(0)? != pclntab_addr {
        return None;
    }
    let o = layout.offsets();
    let (text, etext) = (field(TEXT_OFFSET)?, field(ETEXT_OFFSET)?);
    let text_ok = elf
        .segments
        .iter()
        .any(|s| s.executable && text >= s.vaddr && text - s.vaddr < s.memsz);
    let (enoptrbss, end) = (field(ENOPTRBSS_OFFSET)?, field(o.end)?);
    let covctrs_ok = o.end == COVCTRS_OFFSET
        || matches!((field(COVCTRS_OFFSET)?, field(COVCTRS_OFFSET + 8)?),
            (c, e) if c <= e && e <= end);
    let (types, etypes) = (field(o.types)?, field(o.etypes)?);
    let types_ok = mapped(types)
        && etypes > types
        && etypes - types < 1 << 32
        && o.typedesclen
            .is_none_or(|off| field(off).is_some_and(|n| n <= etypes - types));
    let rodata_ok = o
        .rodata
        .is_none_or(|off| field(off).is_some_and(|r| r <= types && mapped(r)));
    let gofunc = o.gofunc.map(field).map(|g| g.filter(|&g| mapped(g)));
    let epclntab_ok = o
        .epclntab
        .is_none_or(|off| field(off).is_some_and(|e| e > pclntab_addr));
    let (sect_ptr, sect_len, sect_cap) = (
        field(o.textsectmap)?,
        field(o.textsectmap + 8)?,
        field(o.textsectmap + 16)?,
    );
    let textsect_ok =
        mapped(sect_ptr) && sect_len == sect_cap && (1..=MAX_TEXT_SECTIONS).contains(&sect_len);
    let all = text_ok
        && etext >= text
        && end >= enoptrbss
        && covctrs_ok
        && types_ok
        && rodata_ok
        && gofunc.is_none_or(|g| g.is_some())
        && epclntab_ok
        && textsect_ok;
    all.then_some(ModuleData {
        addr,
        text,
        etext,
        types,
        gofunc: gofunc.flatten(),
        layout,
        found_by: by,
    })
}

/// Stripped binaries: moduledata is in a writable segment and starts with the pclntab address.
fn scan(
    elf: &ElfImage,
    pclntab_addr: u64,
    read_any: &dyn Fn(u64, FoundBy) -> Option<ModuleData>,
) -> Option<ModuleData> {
    let needle = pclntab_addr.to_le_bytes();
    for (seg, bytes) in elf.data_segments() {
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            if chunk == needle {
                let Some(addr) = seg.vaddr.checked_add((i as u64) * 8) else {
                    continue;
                };
                if let Some(md) = read_any(addr, FoundBy::Scan) {
                    return Some(md);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minor_has_one_layout() {
        for minor in 16..=40 {
            let l = Layout::for_minor(minor).expect("a layout");
            let (lo, hi) = l.minors();
            assert!(minor >= lo && hi.is_none_or(|h| minor <= h));
        }
        assert_eq!(Layout::for_minor(15), None);
        assert_eq!(Layout::for_minor(22), Some(Layout::Go120));
        assert_eq!(Layout::for_minor(26), Some(Layout::Go126));
    }

    #[test]
    fn offsets_follow_runtime_symtab() {
        // types / gofunc / textsectmap as read from runtime/symtab.go of each version.
        let o = Layout::Go118.offsets();
        assert_eq!((o.types, o.gofunc, o.textsectmap), (280, Some(304), 312));
        let o = Layout::Go120.offsets();
        assert_eq!((o.types, o.gofunc, o.textsectmap), (296, Some(320), 328));
        let o = Layout::Go126.offsets();
        assert_eq!((o.epclntab, o.textsectmap), (Some(328), 336));
        let o = Layout::Go127.offsets();
        assert_eq!((o.etypes, o.gofunc, o.textsectmap), (312, Some(344), 360));
        let o = Layout::Go116.offsets();
        assert_eq!((o.types, o.gofunc, o.textsectmap), (280, None, 296));
    }
}
