//! What a binary's layout says about which Go version built it, for when no version string is
//! left: the pclntab magic, the `runtime.moduledata` layout whose fields are consistent, the
//! sections the linker writes, and runtime functions that exist only from (or only up to) some
//! version. Each piece gives a range of minor versions; the answer is their intersection. Only
//! what is present counts: a function missing from the table proves nothing (the linker drops
//! unused code), a function present proves its version range.
use super::elf::ElfImage;
use super::moduledata::Layout;
use super::pclntab::Pclntab;
use super::version::MinorRange;

/// Runtime functions new in Go 1.N (present in every program built with 1.N…1.27, absent from
/// every one built before: checked on the test programs of each toolchain of the matrix).
const NEW_IN: [(&str, u32); 5] = [
    ("runtime.(*inlineUnwinder).next", 21),
    ("runtime.(*_panic).nextDefer", 22),
    ("internal/runtime/exithook.Run", 23),
    ("internal/runtime/maps.(*Map).growToSmall", 24),
    ("internal/runtime/cgroup.FindCPU", 25),
];

/// Runtime functions last present in Go 1.N (removed in 1.N+1, absent up to 1.27 at least).
const LAST_IN: [(&str, u32); 7] = [
    ("runtime.(*_type).string", 19),
    ("runtime.cpuinit", 21),
    ("runtime.adjusttimers", 22),
    ("runtime.(*workbuf).checkempty", 23),
    ("runtime.globrunqget", 24),
    ("runtime.exitsyscallfast", 25),
    ("runtime.alginit", 26),
];

/// Sections first written by Go 1.N's linker.
const SECTIONS_FROM: [(&str, u32); 3] =
    [(".go.fipsinfo", 24), (".go.module", 26), (".go.type", 27)];

/// One fact and the versions it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clue {
    pub what: String,
    pub range: MinorRange,
}

/// The versions a binary's layout allows, and the clues that say so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRange {
    /// `None` if the clues contradict each other.
    pub range: Option<MinorRange>,
    pub clues: Vec<Clue>,
}

/// Minor versions a pclntab magic is written by.
pub fn magic_range(magic: u32) -> Option<MinorRange> {
    match magic {
        0xffff_fffb => Some(MinorRange::new(2, Some(15))),
        0xffff_fffa => Some(MinorRange::new(16, Some(17))),
        0xffff_fff0 => Some(MinorRange::new(18, Some(19))),
        0xffff_fff1 => Some(MinorRange::new(20, None)),
        _ => None,
    }
}

/// Collects the clues of `elf` (with its pclntab `magic`, parsed table, and the moduledata
/// layout found, if any) and intersects them.
pub fn layout_range(
    elf: &ElfImage,
    magic: u32,
    layout: Option<Layout>,
    pclntab: &Pclntab,
) -> LayoutRange {
    let mut clues = Vec::new();
    if let Some(range) = magic_range(magic) {
        clues.push(Clue {
            what: format!("pclntab magic {magic:#x}"),
            range,
        });
    }
    if let Some(l) = layout {
        let (min, max) = l.minors();
        clues.push(Clue {
            what: format!("moduledata layout {l:?}"),
            range: MinorRange::new(min, max),
        });
    }
    for (name, minor) in SECTIONS_FROM {
        if elf.section(name).is_some() {
            clues.push(Clue {
                what: format!("section {name}"),
                range: MinorRange::new(minor, None),
            });
        }
    }
    let has = |name: &str| pclntab.func_by_name(name).is_some();
    for (name, minor) in NEW_IN {
        if has(name) {
            clues.push(Clue {
                what: format!("function {name}"),
                range: MinorRange::new(minor, None),
            });
        }
    }
    for (name, minor) in LAST_IN {
        if has(name) {
            clues.push(Clue {
                what: format!("function {name}"),
                range: MinorRange::new(0, Some(minor)),
            });
        }
    }
    let range = clues
        .iter()
        .try_fold(MinorRange::ANY, |acc, c| acc.intersect(c.range));
    LayoutRange { range, clues }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clue_tables_are_ordered_and_disjoint() {
        for w in NEW_IN.windows(2) {
            assert!(w[0].1 < w[1].1);
        }
        for w in LAST_IN.windows(2) {
            assert!(w[0].1 < w[1].1);
        }
        for (new, _) in NEW_IN {
            assert!(LAST_IN.iter().all(|(last, _)| *last != new));
        }
        assert_eq!(magic_range(0xffff_fff1), Some(MinorRange::new(20, None)));
        assert_eq!(magic_range(0x1234), None);
    }
}
