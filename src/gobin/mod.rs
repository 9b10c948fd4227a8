//! Everything known about a Go binary from the file alone, without privileges or BPF: ELF facts,
//! the Go version (and how it was found), build info, the function table, the map functions and
//! where to probe them, the goroutine-id offset, and type descriptors. `GoBinary::open` is the
//! entry point.
pub mod buildinfo;
pub mod bytes;
pub mod elf;
pub mod error;
pub mod evidence;
pub mod goid;
pub mod inline;
pub mod moduledata;
pub mod pclntab;
pub mod probes;
pub mod types;
pub mod version;

use std::path::Path;
use std::sync::Arc;

use memmap2::{Mmap, UncheckedAdvice};
use serde::Serialize;

pub use buildinfo::BuildInfo;
pub use elf::{Arch, ElfImage};
pub use error::{GoBinError, Result};
pub use goid::GoidOffset;
pub use moduledata::ModuleData;
pub use pclntab::Pclntab;
pub use probes::{ProbeSite, Role};
pub use types::{GoType, KeyLayout, TypeReader};
pub use version::VersionSource;

/// Which hash map implementation the runtime was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapImpl {
    /// Buckets and overflow chains (`runtime.hmap`), Go ≤1.23 and 1.24/1.25 with noswissmap.
    Classic,
    /// Swiss tables (`internal/runtime/maps.Map`), Go 1.24+.
    Swiss,
}

impl std::fmt::Display for MapImpl {
    /// As the JSON report names it: `classic` or `swiss`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapImpl::Classic => "classic",
            MapImpl::Swiss => "swiss",
        })
    }
}

pub struct GoBinary {
    pub elf: ElfImage,
    /// As recorded, or (without a readable `.go.buildinfo`) as far as it could be inferred.
    pub build: BuildInfo,
    /// (major, minor) of the Go version.
    pub version: (u32, u32),
    /// How the Go version was found.
    pub version_source: VersionSource,
    /// The versions the binary's layout allows, and why.
    pub layout_range: evidence::LayoutRange,
    pub pclntab: Pclntab,
    pub pclntab_addr: u64,
    pub moduledata: Option<ModuleData>,
    pub map_impl: MapImpl,
    /// Frames of the PCs symbolized so far (`frames_at`).
    frames: inline::FrameCache,
    /// `map_functions`, found once (a search of the whole function table).
    map_functions: std::sync::OnceLock<Vec<ProbeSite>>,
    /// The file's mapping, when opened from a file (`release_pages`).
    mapped: Option<Arc<Mmap>>,
}

/// A shared read-only mapping as the bytes the parsers read.
struct Mapped(Arc<Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl GoBinary {
    /// Maps the file (its pages stay the page cache's; only those read are resident).
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| GoBinError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is private and read-only. A file changed under it by another
        // process would change what we read (Linux has no way to forbid it); executables are
        // replaced by rename, not rewritten in place, and a running one cannot be written
        // (ETXTBSY); every read through it is bounds-checked, so a change makes wrong facts,
        // never unsafety beyond the mapping (a file truncated under us would SIGBUS).
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
        let mut bin = Self::parse(::bytes::Bytes::from_owner(Mapped(map.clone())))?;
        bin.mapped = Some(map);
        Ok(bin)
    }

    /// Gives the file's pages read so far back (a parse reads most of the function table and
    /// the type data; later reads are a few pages, faulted in again from the page cache), so
    /// that a tracer's resident memory holds its own data and not the target's file.
    pub fn release_pages(&self) {
        if let Some(map) = &self.mapped {
            // SAFETY: the mapping is private, read-only and file-backed: its pages dropped are
            // read again from the file on the next access, unchanged (no private copy exists to
            // lose: nothing writes through it).
            let _ = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }

    /// Parses a whole file's bytes (a `Vec<u8>` or a shared view).
    pub fn parse(data: impl Into<::bytes::Bytes>) -> Result<Self> {
        let elf = ElfImage::parse(data)?;
        if let Some(missing) = elf.missing_bytes() {
            return Err(error::corrupt!(
                "the file is truncated: its loadable segments need {missing} more bytes"
            ));
        }
        let pcln_section = elf
            .section(".gopclntab")
            .cloned()
            .or_else(|| find_pclntab(&elf));
        let build = read_buildinfo(&elf);
        let Some(pcln_section) = pcln_section else {
            return Err(match build {
                Ok(b) => error::corrupt!("{} binary without a .gopclntab section", b.go_version),
                Err(_) => GoBinError::NotGo,
            });
        };
        let pcln_bytes = elf
            .section_bytes(&pcln_section)
            .ok_or_else(|| error::corrupt!(".gopclntab lies outside the file"))?;
        let magic =
            Pclntab::magic(&pcln_bytes).ok_or_else(|| error::corrupt!(".gopclntab is empty"))?;
        if magic == pclntab::MAGIC_GO12 {
            let v = build
                .as_ref()
                .map(|b| b.go_version.clone())
                .unwrap_or_else(|_| "Go 1.2–1.15".into());
            return Err(GoBinError::TooOld(v));
        }
        if let Ok(b) = &build {
            if b.version().is_some_and(|v| v < (1, 17)) {
                return Err(GoBinError::TooOld(b.go_version.clone()));
            }
        }
        let symbol = match &build {
            Ok(_) => None,
            Err(_) => version::runtime_symbol(&elf),
        };
        let hint = match &build {
            Ok(b) => b.version().map(|v| v.1),
            Err(_) => symbol.as_ref().map(|s| s.minor),
        };
        let moduledata = moduledata::find(&elf, pcln_section.addr, hint)
            .or_else(|| moduledata::find(&elf, pcln_section.addr, None));
        let text_start = moduledata
            .map(|m| m.text)
            .or_else(|| elf.section(".text").map(|s| s.addr))
            .unwrap_or(0);
        let pclntab = Pclntab::parse(pcln_bytes, text_start)?;
        let layout_range =
            evidence::layout_range(&elf, magic, moduledata.map(|m| m.layout), &pclntab);
        let (build, version_source) = identify(&elf, build, symbol, &layout_range)?;
        let version = build.version().unwrap_or((1, 99));
        if version < (1, 17) {
            return Err(GoBinError::TooOld(build.go_version.clone()));
        }
        let has = |name: &str| pclntab.func_by_name(name).is_some();
        let map_impl = if has("runtime.hashGrow") || !has("internal/runtime/maps.(*table).rehash") {
            MapImpl::Classic
        } else {
            MapImpl::Swiss
        };
        Ok(GoBinary {
            build,
            version,
            version_source,
            layout_range,
            pclntab,
            pclntab_addr: pcln_section.addr,
            moduledata,
            map_impl,
            elf,
            frames: Default::default(),
            map_functions: Default::default(),
            mapped: None,
        })
    }

    pub fn arch(&self) -> Arch {
        self.elf.arch
    }

    /// Map-assign, delete and grow functions present, with probe points (x86-64 only).
    pub fn map_functions(&self) -> Vec<ProbeSite> {
        self.map_functions
            .get_or_init(|| match self.elf.arch {
                Arch::X86_64 => probes::find(&self.elf, &self.pclntab),
                Arch::Arm64 => Vec::new(),
            })
            .clone()
    }

    pub fn goid_offset(&self) -> Option<GoidOffset> {
        goid::find(&self.elf, self.version.1)
    }

    /// A reader of type descriptors, if the types base could be found.
    pub fn types(&self) -> Option<TypeReader<'_>> {
        self.moduledata.map(|m| TypeReader::new(&self.elf, m.types))
    }
}

/// The build info, or why there is none to read: "no .go.buildinfo section" or the reason the
/// section does not parse (e.g. wiped to zeros).
fn read_buildinfo(elf: &ElfImage) -> std::result::Result<BuildInfo, String> {
    let s = elf
        .section(".go.buildinfo")
        .ok_or_else(|| "no .go.buildinfo section".to_string())?;
    let bytes = elf
        .section_data(s)
        .ok_or_else(|| ".go.buildinfo lies outside the file".to_string())?;
    buildinfo::parse(bytes, |addr, ptr| read_go_string(elf, addr, ptr))
        .map_err(|e| format!("unreadable .go.buildinfo ({e})"))
}

/// The version and how it was found: the build info if readable; else the runtime's version
/// string (symbol or scan) that the layout allows; else the layout's range if it is one version.
fn identify(
    elf: &ElfImage,
    build: std::result::Result<BuildInfo, String>,
    symbol: Option<version::VersionString>,
    layout: &evidence::LayoutRange,
) -> Result<(BuildInfo, VersionSource)> {
    let why_no_buildinfo = match build {
        Ok(b) => return Ok((b, VersionSource::BuildInfo)),
        Err(why) => why,
    };
    let range = layout.range.unwrap_or(version::MinorRange::ANY);
    let read_only = version::read_only_regions(elf);
    let scanned = match &symbol {
        Some(s) if range.contains(s.minor) => Vec::new(),
        _ => version::scan(&read_only, &version::data_regions(elf)),
    };
    let ro_bytes: Vec<&[u8]> = read_only.iter().map(|r| r.bytes).collect();
    if let Some(c) = version::choose(symbol, &scanned, range) {
        let info = buildinfo::inferred(&c.string.text, &c.string.experiments, &ro_bytes);
        return Ok((info, c.source));
    }
    if let Some(minor) = layout.range.and_then(|r| r.single()) {
        let info = buildinfo::inferred(&format!("go1.{minor}"), &[], &ro_bytes);
        return Ok((info, VersionSource::Layout));
    }
    let narrowed = match layout.range {
        Some(r) => format!("its layout only narrows it to {r}"),
        None => "its layout clues contradict each other".into(),
    };
    Err(GoBinError::UnknownVersion(format!(
        "{why_no_buildinfo}, no runtime.buildVersion symbol, no go1.N version string the \
         layout allows in its read-only data, and {narrowed}"
    )))
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
            let data = elf.section_bytes(&candidate)?;
            // A real table parses: its function entries are sorted and its names resolve.
            if Pclntab::parse(data, elf.section(".text").map(|t| t.addr).unwrap_or(0))
                .is_ok_and(|t| !t.funcs().is_empty())
            {
                return Some(candidate);
            }
        }
    }
    None
}
