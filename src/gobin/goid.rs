//! Where the goroutine id lives: the offset of `goid` in `runtime.g` (R14 points at the current
//! g). Read from DWARF when the binary has it, else from a table of released Go versions.
use gimli::{EndianSlice, LittleEndian, SectionId};
use serde::Serialize;

use super::elf::ElfImage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GoidSource {
    Dwarf,
    Table,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GoidOffset {
    pub offset: u64,
    pub source: GoidSource,
}

/// Offsets of `g.goid` by Go minor version on 64-bit targets (checked against DWARF).
pub fn table_offset(go_minor: u32) -> Option<u64> {
    match go_minor {
        17..=22 => Some(152),
        23..=24 => Some(160),
        25..=27 => Some(152),
        _ => None,
    }
}

pub fn find(elf: &ElfImage, go_minor: u32) -> Option<GoidOffset> {
    if let Some(offset) = from_dwarf(elf) {
        return Some(GoidOffset {
            offset,
            source: GoidSource::Dwarf,
        });
    }
    table_offset(go_minor).map(|offset| GoidOffset {
        offset,
        source: GoidSource::Table,
    })
}

/// Searches the units named `runtime` for `runtime.g` and its `goid` member. Reads DIEs directly
/// from unit headers: no line programs or ranges are needed (nor loaded).
pub fn from_dwarf(elf: &ElfImage) -> Option<u64> {
    elf.section(".debug_info")?;
    let wanted = [
        SectionId::DebugInfo,
        SectionId::DebugAbbrev,
        SectionId::DebugStr,
    ];
    let loaded: Vec<(SectionId, Vec<u8>)> = wanted
        .iter()
        .filter_map(|&id| Some((id, elf.section_uncompressed(id.name())?)))
        .collect();
    let dwarf = gimli::Dwarf::load(|id| -> std::result::Result<_, gimli::Error> {
        let bytes = loaded
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.as_slice())
            .unwrap_or(&[]);
        Ok(EndianSlice::new(bytes, LittleEndian))
    })
    .ok()?;
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(abbrevs) = dwarf.abbreviations(&header) else {
            continue;
        };
        let Ok(mut tree) = header.entries_tree(&abbrevs, None) else {
            continue;
        };
        let Ok(root) = tree.root() else { continue };
        if name_of(&dwarf, root.entry()).as_deref() != Some(b"runtime".as_slice()) {
            continue;
        }
        // Go emits several units named `runtime`; the type DIEs are in a later one.
        if let Some(off) = goid_in_children(&dwarf, root) {
            return Some(off);
        }
    }
    None
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

fn name_of(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    e: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Option<Vec<u8>> {
    match e.attr_value(gimli::DW_AT_name).ok()?? {
        gimli::AttributeValue::String(s) => Some(s.slice().to_vec()),
        gimli::AttributeValue::DebugStrRef(o) => {
            Some(dwarf.debug_str.get_str(o).ok()?.slice().to_vec())
        }
        _ => None,
    }
}

fn goid_in_children(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    root: gimli::EntriesTreeNode<'_, '_, '_, Slice<'_>>,
) -> Option<u64> {
    let mut children = root.children();
    while let Ok(Some(node)) = children.next() {
        let e = node.entry();
        if e.tag() != gimli::DW_TAG_structure_type
            || name_of(dwarf, e).as_deref() != Some(b"runtime.g".as_slice())
        {
            continue;
        }
        let mut members = node.children();
        while let Ok(Some(m)) = members.next() {
            let me = m.entry();
            if me.tag() == gimli::DW_TAG_member
                && name_of(dwarf, me).as_deref() == Some(b"goid".as_slice())
            {
                return match me.attr_value(gimli::DW_AT_data_member_location).ok()?? {
                    gimli::AttributeValue::Udata(v) => Some(v),
                    gimli::AttributeValue::Data1(v) => Some(v.into()),
                    gimli::AttributeValue::Data2(v) => Some(v.into()),
                    gimli::AttributeValue::Data4(v) => Some(v.into()),
                    gimli::AttributeValue::Data8(v) => Some(v),
                    gimli::AttributeValue::Sdata(v) => u64::try_from(v).ok(),
                    _ => None,
                };
            }
        }
    }
    None
}
