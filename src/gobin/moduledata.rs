//! `runtime.firstmoduledata`: the runtime's table of where text and type data live. Found by
//! symbol, by the `.go.module` section (Go 1.26+), or by scanning data for its first field (a
//! pointer to `.gopclntab`) on stripped binaries. Gives the text start and the types base.
use super::elf::ElfImage;

/// Offsets of fields in `runtime.moduledata` (64-bit), stable from Go 1.18 on except `types`.
const TEXT_OFFSET: u64 = 176;
const ETEXT_OFFSET: u64 = 184;
/// `types` moved from 280 to 296 when Go 1.20 added `covctrs`/`ecovctrs`.
const TYPES_OFFSET_GO118: u64 = 280;
const TYPES_OFFSET_GO120: u64 = 296;

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
    /// relative to this. Known for Go 1.18–1.27 (checked against the symbol), `None` otherwise.
    pub gofunc: Option<u64>,
    pub found_by: FoundBy,
}

/// Locates and reads the first module's data. `go_minor` picks the `types` offset.
pub fn find(elf: &ElfImage, pclntab_addr: u64, go_minor: u32) -> Option<ModuleData> {
    let candidates = || -> Vec<(u64, FoundBy)> {
        let mut c = Vec::new();
        if let Some(a) = elf.symbol("runtime.firstmoduledata") {
            c.push((a, FoundBy::Symbol));
        }
        if let Some(s) = elf.section(".go.module") {
            c.push((s.addr, FoundBy::GoModuleSection));
        }
        c
    };
    let types_off = if go_minor >= 20 {
        TYPES_OFFSET_GO120
    } else {
        TYPES_OFFSET_GO118
    };
    let found = candidates()
        .into_iter()
        .find_map(|(addr, by)| read(elf, addr, pclntab_addr, types_off, by))
        .or_else(|| scan(elf, pclntab_addr, types_off))?;
    // `gofunc` follows `types`, `etypes` and `rodata` up to Go 1.26; Go 1.27 put more fields
    // between them (and `go:func.*` inside .gopclntab). Checked against the symbol on each.
    let gofunc_off = match go_minor {
        18..=26 => Some(types_off + 24),
        27 => Some(types_off + 48),
        _ => None,
    };
    let gofunc = gofunc_off
        .and_then(|off| elf.u64_at(found.addr + off))
        .filter(|&a| elf.bytes_at(a, 1).is_some());
    Some(ModuleData { gofunc, ..found })
}

fn read(
    elf: &ElfImage,
    addr: u64,
    pclntab_addr: u64,
    types_off: u64,
    by: FoundBy,
) -> Option<ModuleData> {
    if elf.u64_at(addr)? != pclntab_addr {
        return None;
    }
    let text = elf.u64_at(addr + TEXT_OFFSET)?;
    let etext = elf.u64_at(addr + ETEXT_OFFSET)?;
    let types = elf.u64_at(addr + types_off)?;
    let text_ok = elf
        .segments
        .iter()
        .any(|s| s.executable && text >= s.vaddr && text - s.vaddr < s.memsz);
    if !text_ok || etext < text || elf.bytes_at(types, 1).is_none() {
        return None;
    }
    Some(ModuleData {
        addr,
        text,
        etext,
        types,
        gofunc: None,
        found_by: by,
    })
}

/// Stripped binaries: moduledata is in a writable segment and starts with the pclntab address.
fn scan(elf: &ElfImage, pclntab_addr: u64, types_off: u64) -> Option<ModuleData> {
    let needle = pclntab_addr.to_le_bytes();
    for (seg, bytes) in elf.data_segments() {
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            if chunk == needle {
                let addr = seg.vaddr + (i as u64) * 8;
                if let Some(md) = read(elf, addr, pclntab_addr, types_off, FoundBy::Scan) {
                    return Some(md);
                }
            }
        }
    }
    None
}
