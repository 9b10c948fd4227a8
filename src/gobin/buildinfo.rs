//! `.go.buildinfo`: the Go version, main module and build settings the linker records
//! (what `go version -m` prints). Handles the inline-string format (Go 1.18+) and the older
//! pointer format (Go 1.13–1.17), so a too-old binary can be named as such. Without the section
//! (some release builds drop it), [`inferred`] rebuilds what it can: the module info the linker
//! also keeps in read-only data for `runtime.modinfo`, and the experiments named in the runtime's
//! version string.
use serde::Serialize;

use super::bytes::{uvarint, word_at};
use super::error::{corrupt, Result};

const MAGIC: &[u8] = b"\xff Go buildinf:";
const FLAG_INLINE_STRINGS: u8 = 0x2;
const FLAG_BIG_ENDIAN: u8 = 0x1;
/// The frame of the module info text (`infoStart`/`infoEnd` of cmd/go/internal/modload), in
/// `.go.buildinfo` and in `runtime.modinfo`'s string alike.
const MODINFO_START: [u8; 16] = [
    0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6,
];
const MODINFO_END: [u8; 16] = [
    0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2,
];
/// Longest module info text looked for (dependency lists of large programs run to tens of KB).
const MAX_MODINFO: usize = 1 << 20;

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BuildInfo {
    /// e.g. `go1.26.6`.
    pub go_version: String,
    /// Import path of the main package (`path` line), if recorded.
    pub path: Option<String>,
    /// Main module (`mod` line: path and version), if recorded.
    pub main_module: Option<String>,
    /// `build` lines: key, value (e.g. `-buildmode`, `GOARCH`, `GOEXPERIMENT`).
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// (major, minor) of the Go version, e.g. (1, 26); `None` for development versions.
    pub fn version(&self) -> Option<(u32, u32)> {
        parse_go_version(&self.go_version)
    }
}

/// `go1.26.6` → (1, 26); `go1.21rc2` → (1, 21).
pub fn parse_go_version(v: &str) -> Option<(u32, u32)> {
    let rest = v.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_str = parts.next()?;
    let digits: String = minor_str
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, digits.parse().ok()?))
}

/// Parses the `.go.buildinfo` section bytes. `read_string` resolves a Go string header at a
/// virtual address (pointer format only): it receives (address of header, pointer size).
pub fn parse(
    section: &[u8],
    read_string: impl Fn(u64, usize) -> Option<String>,
) -> Result<BuildInfo> {
    if section.len() < 32 || &section[..MAGIC.len()] != MAGIC {
        return Err(corrupt!(".go.buildinfo has no build-info magic"));
    }
    let ptr_size = section[14] as usize;
    let flags = section[15];
    let (version, modinfo) = if flags & FLAG_INLINE_STRINGS != 0 {
        let (version, used) = varint_string(section, 32)
            .ok_or_else(|| corrupt!(".go.buildinfo version string is truncated"))?;
        let (modinfo, _) = varint_string(section, 32 + used).unwrap_or_default();
        (version, modinfo)
    } else {
        if flags & FLAG_BIG_ENDIAN != 0 || !(ptr_size == 4 || ptr_size == 8) {
            return Err(corrupt!(".go.buildinfo has an unsupported pointer format"));
        }
        let vptr =
            word_at(section, 16, ptr_size).ok_or_else(|| corrupt!(".go.buildinfo is truncated"))?;
        let mptr = word_at(section, 16 + ptr_size, ptr_size)
            .ok_or_else(|| corrupt!(".go.buildinfo is truncated"))?;
        let version = read_string(vptr, ptr_size)
            .ok_or_else(|| corrupt!(".go.buildinfo version pointer is out of the file"))?;
        (version, read_string(mptr, ptr_size).unwrap_or_default())
    };
    if !version.starts_with("go") {
        return Err(corrupt!(
            "Go version {version:?} in .go.buildinfo is not a Go version"
        ));
    }
    let mut info = BuildInfo {
        go_version: version,
        ..Default::default()
    };
    parse_modinfo(unframed(&modinfo), &mut info);
    Ok(info)
}

/// Build info for a binary without a readable `.go.buildinfo`: `go_version` and `experiments`
/// as found in the runtime's version string, module path and settings from the first framed
/// module info text in `read_only` (none in GOPATH-mode builds), `GOEXPERIMENT` from the
/// experiments if the module info does not say.
pub fn inferred(go_version: &str, experiments: &[String], read_only: &[&[u8]]) -> BuildInfo {
    let mut info = BuildInfo {
        go_version: go_version.to_string(),
        ..Default::default()
    };
    if let Some(text) = read_only.iter().find_map(|r| framed_modinfo(r)) {
        parse_modinfo(&text, &mut info);
    }
    if !experiments.is_empty() && info.setting("GOEXPERIMENT").is_none() {
        info.settings
            .push(("GOEXPERIMENT".into(), experiments.join(",")));
    }
    info
}

/// The text between the first module info start frame in `d` and the end frame after it.
pub fn framed_modinfo(d: &[u8]) -> Option<String> {
    let start = memchr::memmem::find(d, &MODINFO_START)? + MODINFO_START.len();
    let window = &d[start..d.len().min(start.saturating_add(MAX_MODINFO))];
    let len = memchr::memmem::find(window, &MODINFO_END)?;
    Some(String::from_utf8_lossy(&window[..len]).into_owned())
}

/// A varint length followed by that many bytes; returns (string, bytes consumed).
fn varint_string(d: &[u8], off: usize) -> Option<(String, usize)> {
    let (len, n) = uvarint(d, off)?;
    let len = usize::try_from(len).ok()?;
    let start = off + n;
    let bytes = d.get(start..start.checked_add(len)?)?;
    Some((String::from_utf8_lossy(bytes).into_owned(), n + len))
}

/// The module info text inside its 16-byte frames (as `.go.buildinfo` holds it).
fn unframed(modinfo: &str) -> &str {
    if modinfo.len() >= 33 && modinfo.is_char_boundary(16) {
        let body = &modinfo[16..];
        match body.len().checked_sub(16) {
            Some(end) if body.is_char_boundary(end) => &body[..end],
            _ => body,
        }
    } else {
        modinfo
    }
}

/// Module info lines: tab-separated kind and value.
fn parse_modinfo(text: &str, info: &mut BuildInfo) {
    for line in text.lines() {
        let mut cols = line.splitn(2, '\t');
        let (Some(kind), Some(rest)) = (cols.next(), cols.next()) else {
            continue;
        };
        match kind {
            "path" => info.path = Some(rest.to_string()),
            "mod" => info.main_module = Some(rest.replace('\t', " ")),
            "build" => {
                if let Some((k, v)) = rest.split_once('=') {
                    info.settings
                        .push((k.to_string(), v.trim_matches('"').to_string()));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(version: &str, modinfo: &str) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.push(8);
        d.push(FLAG_INLINE_STRINGS);
        d.resize(32, 0);
        d.push(version.len() as u8);
        d.extend_from_slice(version.as_bytes());
        d.push(modinfo.len() as u8);
        d.extend_from_slice(modinfo.as_bytes());
        d
    }

    #[test]
    fn inline_format_with_settings() {
        let sentinel = "0123456789abcdef";
        let mi = format!("{sentinel}path\tcommand-line-arguments\nbuild\t-buildmode=pie\nbuild\tGOEXPERIMENT=noswissmap\n{sentinel}");
        let info = parse(&inline("go1.24.11", &mi), |_, _| None).unwrap();
        assert_eq!(info.go_version, "go1.24.11");
        assert_eq!(info.version(), Some((1, 24)));
        assert_eq!(info.path.as_deref(), Some("command-line-arguments"));
        assert_eq!(info.setting("-buildmode"), Some("pie"));
        assert_eq!(info.setting("GOEXPERIMENT"), Some("noswissmap"));
    }

    #[test]
    fn pointer_format_uses_the_resolver() {
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&[8, 0]);
        d.extend_from_slice(&0x1000u64.to_le_bytes());
        d.extend_from_slice(&0x2000u64.to_le_bytes());
        let info = parse(&d, |a, _| (a == 0x1000).then(|| "go1.16.15".to_string())).unwrap();
        assert_eq!(info.version(), Some((1, 16)));
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let full = inline("go1.21.13", "");
        assert!(parse(&full[..33], |_, _| None).is_err());
        assert!(parse(b"hello", |_, _| None).is_err());
        assert!(parse(&inline("notgo", ""), |_, _| None).is_err());
    }

    #[test]
    fn inferred_from_framed_modinfo_and_experiments() {
        let mut ro = b"junk".to_vec();
        ro.extend_from_slice(&MODINFO_START);
        ro.extend_from_slice(
            b"path\tgithub.com/x/y\nmod\tgithub.com/x/y\t(devel)\t\nbuild\t-trimpath=true\n",
        );
        ro.extend_from_slice(&MODINFO_END);
        let info = inferred("go1.24.11", &["noswissmap".into()], &[b"other", &ro]);
        assert_eq!(info.go_version, "go1.24.11");
        assert_eq!(info.path.as_deref(), Some("github.com/x/y"));
        assert_eq!(info.main_module.as_deref(), Some("github.com/x/y (devel) "));
        assert_eq!(info.setting("-trimpath"), Some("true"));
        assert_eq!(info.setting("GOEXPERIMENT"), Some("noswissmap"));
        let bare = inferred("go1.26", &[], &[b"no frame here"]);
        assert_eq!((bare.path, bare.settings.len()), (None, 0));
        let unterminated = [&MODINFO_START[..], b"path\tx"].concat();
        assert_eq!(framed_modinfo(&unterminated), None);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_go_version("go1.21rc2"), Some((1, 21)));
        assert_eq!(parse_go_version("devel +abc"), None);
    }
}
