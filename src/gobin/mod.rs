//! Everything known about a Go binary from the file alone, without privileges or BPF: ELF facts,
//! build info, the function table, the map functions and where to probe them, the goroutine-id
//! offset, and type descriptors. `GoBinary::open` is the entry point.
pub mod buildinfo;
pub mod bytes;
pub mod elf;
pub mod error;
pub mod goid;
pub mod inline;
pub mod moduledata;
pub mod pclntab;
pub mod probes;
pub mod types;

use std::path::Path;

use serde::Serialize;

pub use buildinfo::BuildInfo;
pub use elf::{Arch, ElfImage};
pub use error::{GoBinError, Result};
pub use goid::GoidOffset;
pub use moduledata::ModuleData;
pub use pclntab::Pclntab;
pub use probes::{ProbeSite, Role};
pub use types::{GoType, KeyLayout, TypeReader};

/// Which hash map implementation the runtime was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapImpl {
    /// Buckets and overflow chains (`runtime.hmap`), Go ≤1.23 and 1.24/1.25 with noswissmap.
    Classic,
    /// Swiss tables (`internal/runtime/maps.Map`), Go 1.24+.
    Swiss,
}

pub struct GoBinary {
    pub elf: ElfImage,
    pub build: BuildInfo,
    /// (major, minor) of the Go version.
    pub version: (u32, u32),
    pub pclntab: Pclntab,
    pub pclntab_addr: u64,
    pub moduledata: Option<ModuleData>,
    pub map_impl: MapImpl,
}

impl GoBinary {
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|source| GoBinError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self> {
        let elf = ElfImage::parse(data)?;
        let pcln_section = elf
            .section(".gopclntab")
            .cloned()
            .or_else(|| find_pclntab(&elf));
        let build = match elf.section(".go.buildinfo") {
            Some(s) => {
                let bytes = elf
                    .section_data(s)
                    .ok_or_else(|| error::corrupt!(".go.buildinfo lies outside the file"))?;
                Some(buildinfo::parse(bytes, |addr, ptr| {
                    read_go_string(&elf, addr, ptr)
                })?)
            }
            None => None,
        };
        let Some(pcln_section) = pcln_section else {
            return Err(match build {
                Some(b) => error::corrupt!("{} binary without a .gopclntab section", b.go_version),
                None => GoBinError::NotGo,
            });
        };
        let pcln_bytes = elf
            .section_data(&pcln_section)
            .ok_or_else(|| error::corrupt!(".gopclntab lies outside the file"))?;
        let magic =
            Pclntab::magic(pcln_bytes).ok_or_else(|| error::corrupt!(".gopclntab is empty"))?;
        if magic == pclntab::MAGIC_GO12 {
            let v = build
                .as_ref()
                .map(|b| b.go_version.clone())
                .unwrap_or_else(|| "Go 1.2–1.15".into());
            return Err(GoBinError::TooOld(v));
        }
        let build = build.ok_or_else(|| error::corrupt!("Go binary without .go.buildinfo"))?;
        let version = build.version().unwrap_or((1, 99));
        if version < (1, 17) {
            return Err(GoBinError::TooOld(build.go_version.clone()));
        }
        let moduledata = moduledata::find(&elf, pcln_section.addr, version.1);
        let text_start = moduledata
            .map(|m| m.text)
            .or_else(|| elf.section(".text").map(|s| s.addr))
            .unwrap_or(0);
        let pclntab = Pclntab::parse(pcln_bytes.to_vec(), text_start)?;
        let has = |name: &str| pclntab.func_by_name(name).is_some();
        let map_impl = if has("runtime.hashGrow") || !has("internal/runtime/maps.(*table).rehash") {
            MapImpl::Classic
        } else {
            MapImpl::Swiss
        };
        Ok(GoBinary {
            build,
            version,
            pclntab,
            pclntab_addr: pcln_section.addr,
            moduledata,
            map_impl,
            elf,
        })
    }

    pub fn arch(&self) -> Arch {
        self.elf.arch
    }

    /// Map-assign, delete and grow functions present, with probe points (x86-64 only).
    pub fn map_functions(&self) -> Vec<ProbeSite> {
        match self.elf.arch {
            Arch::X86_64 => probes::find(&self.elf, &self.pclntab),
            Arch::Arm64 => Vec::new(),
        }
    }

    pub fn goid_offset(&self) -> Option<GoidOffset> {
        goid::find(&self.elf, self.version.1)
    }

    /// A reader of type descriptors, if the types base could be found.
    pub fn types(&self) -> Option<TypeReader<'_>> {
        self.moduledata.map(|m| TypeReader::new(&self.elf, m.types))
    }
}

/// A Go string header (data pointer, length) at `addr`, as found in pre-1.18 build info.
fn read_go_string(elf: &ElfImage, addr: u64, ptr_size: usize) -> Option<String> {
    let hdr = elf.exact_bytes_at(addr, 2 * ptr_size)?;
    let data = bytes::word_at(hdr, 0, ptr_size)?;
    let len = usize::try_from(bytes::word_at(hdr, ptr_size, ptr_size)?).ok()?;
    Some(String::from_utf8_lossy(elf.exact_bytes_at(data, len.min(1 << 20))?).into_owned())
}

/// PIE binaries of Go ≤1.20 keep the table inside `.data.rel.ro` with no section of its own:
/// find its header (magic, two zero pad bytes, pc quantum, pointer size) in non-code segments.
fn find_pclntab(elf: &ElfImage) -> Option<elf::Section> {
    for (seg, bytes) in elf.data_segments() {
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let header_ok = matches!(w[0], 0xf0 | 0xf1 | 0xfa | 0xfb)
                && w[1..4] == [0xff, 0xff, 0xff]
                && w[4..6] == [0, 0]
                && matches!(w[6], 1 | 2 | 4)
                && w[7] == 8;
            if !header_ok {
                continue;
            }
            let off = (i * 8) as u64;
            let candidate = elf::Section {
                name: ".gopclntab".into(),
                addr: seg.vaddr.wrapping_add(off),
                size: seg.filesz - off,
                offset: Some(seg.offset + off),
                compressed: false,
            };
            let data = elf.section_data(&candidate)?;
            // A real table parses: its function entries are sorted and its names resolve.
            if Pclntab::parse(
                data.to_vec(),
                elf.section(".text").map(|t| t.addr).unwrap_or(0),
            )
            .is_ok_and(|t| !t.funcs().is_empty())
            {
                return Some(candidate);
            }
        }
    }
    None
}
