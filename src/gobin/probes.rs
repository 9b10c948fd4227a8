//! Where to attach: the runtime's map-assign, map-delete and map-grow functions present in a
//! binary, each with its address, file offset, and the probe point just after the stack-check
//! prologue (an entry probe fires twice when morestack re-runs the function), plus the offsets
//! of its RET instructions (return probes without uretprobes). x86-64 only.
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use serde::Serialize;

use super::elf::ElfImage;
use super::pclntab::{Func, Pclntab};

/// Which flavour of map write a function performs; the BPF side decodes the key by this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `runtime.mapassign`: RCX points at the key; decode by the map type's key layout.
    Assign,
    /// `runtime.mapassign_fast32`: ECX is the 4-byte key.
    AssignFast32,
    /// `runtime.mapassign_fast64`: RCX is the 8-byte key.
    AssignFast64,
    /// `runtime.mapassign_fast64ptr`: RCX is the pointer key.
    AssignFast64Ptr,
    /// `runtime.mapassign_faststr`: RCX/RDI are the string's data and length.
    AssignFastStr,
    Delete,
    DeleteFast32,
    DeleteFast64,
    DeleteFastStr,
    /// Classic maps: `runtime.hashGrow(t, h)`.
    HashGrow,
    /// Swiss maps: `(*Map).growToSmall`, `(*Map).growToTable`.
    GrowToSmall,
    GrowToTable,
    /// Swiss maps: `(*table).rehash`, `(*table).grow`, `(*table).split`.
    TableRehash,
    TableGrow,
    TableSplit,
}

impl Role {
    pub fn is_assign(self) -> bool {
        matches!(
            self,
            Role::Assign
                | Role::AssignFast32
                | Role::AssignFast64
                | Role::AssignFast64Ptr
                | Role::AssignFastStr
        )
    }
    pub fn is_grow(self) -> bool {
        matches!(
            self,
            Role::HashGrow
                | Role::GrowToSmall
                | Role::GrowToTable
                | Role::TableRehash
                | Role::TableGrow
                | Role::TableSplit
        )
    }
}

/// Function names by role. Swiss-map internals live in `internal/runtime/maps` (Go 1.24+).
pub const KNOWN: &[(&str, Role)] = &[
    ("runtime.mapassign", Role::Assign),
    ("runtime.mapassign_fast32", Role::AssignFast32),
    ("runtime.mapassign_fast64", Role::AssignFast64),
    ("runtime.mapassign_fast64ptr", Role::AssignFast64Ptr),
    ("runtime.mapassign_faststr", Role::AssignFastStr),
    ("runtime.mapdelete", Role::Delete),
    ("runtime.mapdelete_fast32", Role::DeleteFast32),
    ("runtime.mapdelete_fast64", Role::DeleteFast64),
    ("runtime.mapdelete_faststr", Role::DeleteFastStr),
    ("runtime.hashGrow", Role::HashGrow),
    (
        "internal/runtime/maps.(*Map).growToSmall",
        Role::GrowToSmall,
    ),
    (
        "internal/runtime/maps.(*Map).growToTable",
        Role::GrowToTable,
    ),
    ("internal/runtime/maps.(*table).rehash", Role::TableRehash),
    ("internal/runtime/maps.(*table).grow", Role::TableGrow),
    ("internal/runtime/maps.(*table).split", Role::TableSplit),
];

#[derive(Clone, Debug, Serialize)]
pub struct ProbeSite {
    pub function: String,
    pub role: Role,
    pub addr: u64,
    pub end: u64,
    pub file_offset: u64,
    /// Where the probe goes, or why no safe probe point was found.
    pub probe: std::result::Result<ProbePoint, String>,
    /// Offsets (from `addr`) of every RET instruction.
    pub ret_offsets: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbePoint {
    /// Offset from the function's entry of the first instruction after the stack check.
    pub offset: u64,
    pub file_offset: u64,
    /// That instruction, e.g. `push rbp` (which the kernel emulates: a cheap probe).
    pub instruction: String,
}

/// Every known map function present in the binary, in `KNOWN` order.
pub fn find(elf: &ElfImage, tab: &Pclntab) -> Vec<ProbeSite> {
    KNOWN
        .iter()
        .filter_map(|&(name, role)| tab.func_by_name(name).map(|f| site(elf, f, role)))
        .collect()
}

fn site(elf: &ElfImage, f: &Func, role: Role) -> ProbeSite {
    let file_offset = elf.vaddr_to_offset(f.entry).unwrap_or(0);
    let code = elf
        .bytes_at(f.entry, usize::try_from(f.end - f.entry).unwrap_or(0))
        .unwrap_or(&[]);
    let probe = prologue_end(code, f.entry).and_then(|(offset, instruction)| {
        Ok(ProbePoint {
            offset,
            file_offset: elf
                .vaddr_to_offset(f.entry + offset)
                .ok_or_else(|| "probe point is not backed by the file".to_string())?,
            instruction,
        })
    });
    ProbeSite {
        function: f.name.clone(),
        role,
        addr: f.entry,
        end: f.end,
        file_offset,
        probe: probe.map_err(|e| format!("{}: {e}", f.name)),
        ret_offsets: ret_offsets(code, f.entry),
    }
}

fn decoder(code: &[u8], ip: u64) -> Decoder<'_> {
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
}

fn format(i: &Instruction) -> String {
    use iced_x86::Formatter;
    let mut out = String::new();
    iced_x86::IntelFormatter::new().format(i, &mut out);
    out
}

fn is_reg(i: &Instruction, op: u32, r: Register) -> bool {
    i.op_kind(op) == OpKind::Register && i.op_register(op) == r
}

/// Recognises `[LEA r12,[rsp-N]]; CMP rsp|r12,[r14+0x10]; JBE morestack` and returns the offset
/// and text of the instruction after the JBE.
pub fn prologue_end(code: &[u8], entry: u64) -> std::result::Result<(u64, String), String> {
    let mut d = decoder(code, entry);
    let mut seen = Vec::new();
    let mut next = || -> Option<Instruction> {
        if !d.can_decode() {
            return None;
        }
        let i = d.decode();
        (!i.is_invalid()).then_some(i)
    };
    let mut i = next().ok_or("no code at the function entry")?;
    seen.push(format(&i));
    if i.mnemonic() == Mnemonic::Lea
        && is_reg(&i, 0, Register::R12)
        && i.memory_base() == Register::RSP
    {
        i = next().ok_or("code ends after LEA")?;
        seen.push(format(&i));
    }
    let cmp_ok = i.mnemonic() == Mnemonic::Cmp
        && (is_reg(&i, 0, Register::RSP) || is_reg(&i, 0, Register::R12))
        && i.op_kind(1) == OpKind::Memory
        && i.memory_base() == Register::R14
        && i.memory_displacement64() == 0x10;
    if !cmp_ok {
        return Err(format!(
            "prologue not recognised (no stack check): {}",
            seen.join("; ")
        ));
    }
    let j = next().ok_or("code ends after the stack check")?;
    seen.push(format(&j));
    if j.mnemonic() != Mnemonic::Jbe {
        return Err(format!(
            "prologue not recognised (no JBE after CMP): {}",
            seen.join("; ")
        ));
    }
    let after = next().ok_or("code ends after the JBE")?;
    Ok((j.next_ip() - entry, format(&after)))
}

/// Offsets of RET instructions, by a linear sweep (Go emits no data inside functions).
pub fn ret_offsets(code: &[u8], entry: u64) -> Vec<u64> {
    let mut d = decoder(code, entry);
    let mut out = Vec::new();
    let mut i = Instruction::default();
    while d.can_decode() {
        d.decode_out(&mut i);
        if i.mnemonic() == Mnemonic::Ret {
            out.push(i.ip() - entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_go121_prologue() {
        // CMPQ SP, 0x10(R14); JBE +0x50; PUSHQ BP
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x50, 0x55, 0xc3];
        let (off, ins) = prologue_end(&code, 0x1000).unwrap();
        assert_eq!(off, 6);
        assert_eq!(ins, "push rbp");
        assert_eq!(ret_offsets(&code, 0x1000), vec![7]);
    }

    #[test]
    fn recognises_lea_r12_prologue() {
        // LEAQ -0x88(SP), R12; CMPQ R12, 0x10(R14); JBE (rel32); SUBQ $0x108, SP
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x78, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0,
            1, 0, 0, 0x48, 0x81, 0xec, 0x08, 0x01, 0, 0,
        ];
        let (off, ins) = prologue_end(&code, 0).unwrap();
        assert_eq!(off, 18);
        assert!(ins.starts_with("sub rsp"), "{ins}");
    }

    #[test]
    fn unknown_prologue_is_an_error_naming_it() {
        let err = prologue_end(&[0x55, 0x48, 0x89, 0xe5], 0).unwrap_err();
        assert!(err.contains("push rbp"), "{err}");
        assert!(prologue_end(&[], 0).is_err());
    }
}
