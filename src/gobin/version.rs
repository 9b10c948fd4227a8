//! The Go version of a binary, and how it was found. In order of trust: the build info
//! (`.go.buildinfo`, see `buildinfo`); the runtime's own version string, which the linker
//! writes into `runtime.buildVersion` whether or not build info is kept (read by symbol, else
//! found by scanning read-only data for a `go1.N[.P]` string that a Go string header in data
//! points at, else for such a string alone); and, when no string is left, the range of versions
//! the binary's layout allows (see `evidence`), if it allows only one. Every string found
//! without build info must lie in that range.
use std::collections::HashSet;
use std::fmt;

use serde::{Serialize, Serializer};

use super::elf::ElfImage;

/// How the Go version was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSource {
    BuildInfo,
    RuntimeSymbol,
    StringScan,
    Layout,
}

impl VersionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionSource::BuildInfo => "buildinfo",
            VersionSource::RuntimeSymbol => "runtime.buildVersion",
            VersionSource::StringScan => "version string scan",
            VersionSource::Layout => "pclntab+moduledata layout (range)",
        }
    }
}

impl fmt::Display for VersionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for VersionSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Go 1.`min` to 1.`max` (`max: None`: or newer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinorRange {
    pub min: u32,
    pub max: Option<u32>,
}

impl MinorRange {
    /// Any version the tool knows of (Go 1.2's table format is the oldest recognised).
    pub const ANY: MinorRange = MinorRange { min: 2, max: None };

    pub fn new(min: u32, max: Option<u32>) -> Self {
        MinorRange { min, max }
    }

    pub fn contains(self, minor: u32) -> bool {
        minor >= self.min && self.max.is_none_or(|m| minor <= m)
    }

    /// Both ranges at once, or `None` if they exclude each other.
    pub fn intersect(self, other: MinorRange) -> Option<MinorRange> {
        let min = self.min.max(other.min);
        let max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        max.is_none_or(|m| min <= m)
            .then_some(MinorRange { min, max })
    }

    /// The one minor version the range holds.
    pub fn single(self) -> Option<u32> {
        (self.max == Some(self.min)).then_some(self.min)
    }
}

impl fmt::Display for MinorRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            Some(m) if m == self.min => write!(f, "go1.{m}"),
            Some(m) => write!(f, "go1.{}–go1.{m}", self.min),
            None => write!(f, "go1.{} or newer", self.min),
        }
    }
}

/// A runtime version string: `go1.26.6`, `go1.21rc2`, `go1.24.11 X:noswissmap`,
/// `go1.26.6-X:nogreenteagc` (the linker appends non-default experiments; Go 1.26 with `-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionString {
    /// The whole string, as `go version` prints it, e.g. `go1.24.11 X:noswissmap`.
    pub text: String,
    /// The version without experiments, e.g. `go1.24.11`.
    pub version: String,
    pub minor: u32,
    /// `GOEXPERIMENT` entries the runtime was built with, e.g. `["noswissmap"]`.
    pub experiments: Vec<String>,
}

/// Parses a whole runtime version string; `None` if any of it is not one.
pub fn parse_version_string(s: &str) -> Option<VersionString> {
    let len = version_len(s.as_bytes())?;
    let (version, rest) = s.split_at(len);
    let experiments = if rest.is_empty() {
        Vec::new()
    } else {
        let list = rest
            .strip_prefix(" X:")
            .or_else(|| rest.strip_prefix("-X:"))?;
        let items: Vec<String> = list.split(',').map(str::to_string).collect();
        let valid = |e: &String| {
            !e.is_empty()
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !items.iter().all(valid) {
            return None;
        }
        items
    };
    let minor = version[4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(VersionString {
        text: s.to_string(),
        version: version.to_string(),
        minor,
        experiments,
    })
}

/// Length of the `go1.N[.P][rcN|betaN]` at the start of `b` (N, P: 1–3 digits, no leading
/// zero), taking as many characters as fit the grammar.
fn version_len(b: &[u8]) -> Option<usize> {
    if !b.starts_with(b"go1.") {
        return None;
    }
    let digits = |at: usize| {
        let n = b
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (1..=3).contains(&n) && (n == 1 || b[at] != b'0')
    };
    let run = |at: usize| {
        b.get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    if !digits(4) {
        return None;
    }
    let mut end = 4 + run(4);
    if b.get(end) == Some(&b'.') && digits(end + 1) {
        end += 1 + run(end + 1);
    }
    for pre in [&b"rc"[..], b"beta"] {
        if b[end..].starts_with(pre) && digits(end + pre.len()) {
            end += pre.len() + run(end + pre.len());
            break;
        }
    }
    Some(end)
}

/// A block of the binary's memory as the file holds it.
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    pub vaddr: u64,
    pub bytes: &'a [u8],
}

/// A version string found by scanning, and whether a Go string header in data points at it
/// (as `runtime.buildVersion`'s does), which gives its exact length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    pub string: VersionString,
    pub referenced: bool,
}

/// Longest version string a header may describe: version plus a few experiments.
const MAX_VERSION_LEN: u64 = 256;

/// Every `go1.N…` string in `read_only`; those that a (pointer, length) pair in `data`
/// describes exactly come first. Distinct strings only.
pub fn scan(read_only: &[Region<'_>], data: &[Region<'_>]) -> Vec<Scanned> {
    let finder = memchr::memmem::Finder::new(b"go1.");
    let mut starts = HashSet::new();
    let mut loose = Vec::new();
    for r in read_only {
        for i in finder.find_iter(r.bytes) {
            let Some(len) = version_len(&r.bytes[i..]) else {
                continue;
            };
            let Some(addr) = r.vaddr.checked_add(i as u64) else {
                continue;
            };
            starts.insert(addr);
            let text = String::from_utf8_lossy(&r.bytes[i..i + len]);
            if let Some(v) = parse_version_string(&text) {
                loose.push(v);
            }
        }
    }
    let mut out: Vec<Scanned> = Vec::new();
    let mut push = |string: VersionString, referenced: bool| {
        if !out.iter().any(|s| s.string == string) {
            out.push(Scanned { string, referenced });
        }
    };
    for r in data {
        let words: Vec<u64> = r
            .bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
            .collect();
        for pair in words.windows(2) {
            let (ptr, len) = (pair[0], pair[1]);
            if len == 0 || len > MAX_VERSION_LEN || !starts.contains(&ptr) {
                continue;
            }
            if let Some(v) =
                read_only_str(read_only, ptr, len).and_then(|s| parse_version_string(&s))
            {
                push(v, true);
            }
        }
    }
    for v in loose {
        push(v, false);
    }
    out
}

fn read_only_str(regions: &[Region<'_>], addr: u64, len: u64) -> Option<String> {
    let r = regions
        .iter()
        .find(|r| addr >= r.vaddr && addr - r.vaddr < r.bytes.len() as u64)?;
    let start = usize::try_from(addr - r.vaddr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    std::str::from_utf8(r.bytes.get(start..end)?)
        .ok()
        .map(str::to_string)
}

/// The string `runtime.buildVersion` holds, read through its symbol (binaries with symbols).
pub fn runtime_symbol(elf: &ElfImage) -> Option<VersionString> {
    let addr = elf.symbol("runtime.buildVersion")?;
    let ptr = elf.u64_at(addr)?;
    let len = elf.u64_at(addr.checked_add(8)?)?;
    if len > MAX_VERSION_LEN {
        return None;
    }
    let bytes = elf.exact_bytes_at(ptr, usize::try_from(len).ok()?)?;
    parse_version_string(std::str::from_utf8(bytes).ok()?)
}

/// Read-only data to scan for version strings: non-code, non-writable loaded segments.
pub fn read_only_regions(elf: &ElfImage) -> Vec<Region<'_>> {
    regions(elf, false)
}

/// Writable data, where string headers live.
pub fn data_regions(elf: &ElfImage) -> Vec<Region<'_>> {
    regions(elf, true)
}

fn regions(elf: &ElfImage, writable: bool) -> Vec<Region<'_>> {
    elf.data_segments()
        .filter(|(seg, _)| seg.writable == writable)
        .map(|(seg, bytes)| Region {
            vaddr: seg.vaddr,
            bytes,
        })
        .collect()
}

/// The version chosen from the strings found, checked against the layout's `range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub string: VersionString,
    pub source: VersionSource,
}

/// Picks the runtime's version string: the symbol's, else the one string referenced from data,
/// else the one version all loose strings agree on; each only if `range` allows it.
pub fn choose(
    symbol: Option<VersionString>,
    scanned: &[Scanned],
    range: MinorRange,
) -> Option<Chosen> {
    if let Some(s) = symbol.filter(|s| range.contains(s.minor)) {
        return Some(Chosen {
            string: s,
            source: VersionSource::RuntimeSymbol,
        });
    }
    for referenced in [true, false] {
        let fitting: Vec<&Scanned> = scanned
            .iter()
            .filter(|s| s.referenced == referenced && range.contains(s.string.minor))
            .collect();
        let Some(first) = fitting.first() else {
            continue;
        };
        if fitting.iter().all(|s| s.string.minor == first.string.minor) {
            // Loose strings have no known end: the longest agreeing one is the fullest.
            let best = fitting
                .iter()
                .max_by_key(|s| s.string.text.len())
                .unwrap_or(first);
            return Some(Chosen {
                string: best.string.clone(),
                source: VersionSource::StringScan,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_parse() {
        let v = parse_version_string("go1.26.6").unwrap();
        assert_eq!((v.version.as_str(), v.minor), ("go1.26.6", 26));
        let v = parse_version_string("go1.24.11 X:noswissmap").unwrap();
        assert_eq!(
            (v.version.as_str(), v.experiments),
            ("go1.24.11", vec!["noswissmap".into()])
        );
        let v = parse_version_string("go1.26.6-X:nogreenteagc,jsonv2").unwrap();
        assert_eq!(v.experiments, ["nogreenteagc", "jsonv2"]);
        assert_eq!(parse_version_string("go1.21rc2").unwrap().minor, 21);
        for bad in [
            "go1.",
            "go1.x",
            "go2.1",
            "go1.26.6 ",
            "go1.26.6 X:",
            "go1.026",
            "go1.26.6garbage",
            "go1.1234",
        ] {
            assert_eq!(parse_version_string(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loose_strings_take_what_fits_the_grammar() {
        assert_eq!(version_len(b"go1.26.5                "), Some(8));
        assert_eq!(version_len(b"go1.22.10gopark"), Some(9));
        assert_eq!(version_len(b"go1.21rc2)"), Some(9));
        assert_eq!(version_len(b"go1.19"), Some(6));
        assert_eq!(version_len(b"go1.%d"), None);
    }

    fn le(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn referenced_strings_come_first_with_their_exact_length() {
        // Read-only data: a decoy, then "go1.24.11 X:noswissmap" followed by other string bytes.
        let ro = b"xxgo1.99.1yyyygo1.24.11 X:noswissmapruntime.main".to_vec();
        let data = le(&[7, 0x1000 + 14, 22, 3]);
        let found = scan(
            &[Region {
                vaddr: 0x1000,
                bytes: &ro,
            }],
            &[Region {
                vaddr: 0x9000,
                bytes: &data,
            }],
        );
        assert!(found[0].referenced);
        assert_eq!(found[0].string.version, "go1.24.11");
        assert_eq!(found[0].string.experiments, ["noswissmap"]);
        assert!(found[1..].iter().all(|s| !s.referenced));
        let range = MinorRange::new(20, Some(25));
        let c = choose(None, &found, range).unwrap();
        assert_eq!(
            (c.string.version.as_str(), c.source),
            ("go1.24.11", VersionSource::StringScan)
        );
        // A range that excludes the referenced string leaves only what fits it.
        assert_eq!(choose(None, &found, MinorRange::new(26, Some(26))), None);
    }

    #[test]
    fn loose_strings_must_agree() {
        let s = |v: &str| Scanned {
            string: parse_version_string(v).unwrap(),
            referenced: false,
        };
        let range = MinorRange::new(20, None);
        let c = choose(None, &[s("go1.26"), s("go1.26.5")], range).unwrap();
        assert_eq!(c.string.version, "go1.26.5");
        assert_eq!(choose(None, &[s("go1.26.5"), s("go1.22")], range), None);
        assert_eq!(choose(None, &[s("go1.19.2")], range), None);
    }

    #[test]
    fn ranges() {
        let r = MinorRange::new(20, Some(25));
        assert!(r.contains(20) && r.contains(25) && !r.contains(26));
        assert_eq!(
            r.intersect(MinorRange::new(24, None)),
            Some(MinorRange::new(24, Some(25)))
        );
        assert_eq!(r.intersect(MinorRange::new(26, None)), None);
        assert_eq!(MinorRange::new(26, Some(26)).single(), Some(26));
        assert_eq!(MinorRange::new(27, None).single(), None);
        assert_eq!(r.to_string(), "go1.20–go1.25");
        assert_eq!(MinorRange::new(27, None).to_string(), "go1.27 or newer");
    }
}
