//! Where to attach: the runtime's map-assign, map-delete, map-clear and map-grow functions present
//! in a binary, each with its address, file offset, and the probe point just after the
//! stack-check prologue (an entry probe fires twice when morestack re-runs the function), or on
//! the stack check's branch where the instruction after it would be single-stepped, plus
//! the offsets of its RET instructions (return probes without uretprobes), and whether it only
//! wraps another function of the list (then probing both would count one operation twice).
//! x86-64 only.
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
    /// `runtime.mapdelete*`: the arguments of the assign function of the same suffix (pointer
    /// keys use `mapdelete_fast64`). Also `reflect.mapdelete*`, which Swiss-map runtimes build
    /// with `runtime.mapdelete` inlined.
    Delete,
    DeleteFast32,
    DeleteFast64,
    DeleteFastStr,
    /// `runtime.mapclear(t, h)`: `clear(m)` and `for k := range m { delete(m, k) }`. Also
    /// `reflect.mapclear` (`reflect.Value.Clear`), which Swiss-map runtimes build with
    /// `runtime.mapclear` inlined.
    Clear,
    /// `sync.Map` methods: those of `sync.(*Map)` before Go 1.24, of
    /// `internal/sync.(*HashTrieMap[any,any])` (what a `sync.Map` is) from Go 1.24. `Store`
    /// and `Delete` only wrap `Swap` and `LoadAndDelete` from Go 1.20 (and always in the
    /// hash-trie).
    SyncStore,
    SyncSwap,
    SyncLoadOrStore,
    SyncCompareAndSwap,
    SyncLoadAndDelete,
    SyncDelete,
    SyncCompareAndDelete,
    /// `Clear` (Go 1.23+).
    SyncClear,
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
    pub fn is_delete(self) -> bool {
        matches!(
            self,
            Role::Delete | Role::DeleteFast32 | Role::DeleteFast64 | Role::DeleteFastStr
        )
    }

    pub fn is_sync(self) -> bool {
        matches!(
            self,
            Role::SyncStore
                | Role::SyncSwap
                | Role::SyncLoadOrStore
                | Role::SyncCompareAndSwap
                | Role::SyncLoadAndDelete
                | Role::SyncDelete
                | Role::SyncCompareAndDelete
                | Role::SyncClear
        )
    }

    /// Functions of one family do one kind of operation: one that calls another of its family
    /// directly is a wrapper of it (see [`ProbeSite::wraps`]).
    fn family(self) -> u8 {
        if self.is_assign() {
            0
        } else if self.is_delete() {
            1
        } else if self == Role::Clear {
            2
        } else if self.is_sync() {
            3
        } else {
            4
        }
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

/// The hash-trie behind `sync.Map` (Go 1.24+), as its generic methods are named: the shape of
/// `HashTrieMap[any, any]`. Other users of the hash-trie (e.g. `unique`) instantiate it with
/// other shapes, so their methods have other names and are not probed.
macro_rules! hash_trie {
    () => {
        "internal/sync.(*HashTrieMap[go.shape.interface {},go.shape.interface {}])"
    };
}

/// Prefix of the hash-trie's methods.
pub const HASH_TRIE: &str = hash_trie!();

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
    ("reflect.mapdelete", Role::Delete),
    ("reflect.mapdelete_faststr", Role::DeleteFastStr),
    ("runtime.mapclear", Role::Clear),
    ("reflect.mapclear", Role::Clear),
    ("sync.(*Map).Store", Role::SyncStore),
    ("sync.(*Map).Swap", Role::SyncSwap),
    ("sync.(*Map).LoadOrStore", Role::SyncLoadOrStore),
    ("sync.(*Map).CompareAndSwap", Role::SyncCompareAndSwap),
    ("sync.(*Map).LoadAndDelete", Role::SyncLoadAndDelete),
    ("sync.(*Map).Delete", Role::SyncDelete),
    ("sync.(*Map).CompareAndDelete", Role::SyncCompareAndDelete),
    ("sync.(*Map).Clear", Role::SyncClear),
    (concat!(hash_trie!(), ".Store"), Role::SyncStore),
    (concat!(hash_trie!(), ".Swap"), Role::SyncSwap),
    (concat!(hash_trie!(), ".LoadOrStore"), Role::SyncLoadOrStore),
    (
        concat!(hash_trie!(), ".CompareAndSwap"),
        Role::SyncCompareAndSwap,
    ),
    (
        concat!(hash_trie!(), ".LoadAndDelete"),
        Role::SyncLoadAndDelete,
    ),
    (concat!(hash_trie!(), ".Delete"), Role::SyncDelete),
    (
        concat!(hash_trie!(), ".CompareAndDelete"),
        Role::SyncCompareAndDelete,
    ),
    (concat!(hash_trie!(), ".Clear"), Role::SyncClear),
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
    /// The function of the same family this one calls directly (e.g. `reflect.mapclear` calls
    /// `runtime.mapclear` in classic-map runtimes): that one is probed, this one is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wraps: Option<String>,
}

impl ProbeSite {
    /// Whether the operations of this function are counted at its own probe (not at the one of
    /// the function it wraps).
    pub fn is_probed(&self) -> bool {
        self.wraps.is_none()
    }
}

/// Where a probe sits relative to the function's stack check.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The first instruction after the stack check's `JBE morestack` (an entry probe would fire
    /// twice when the stack grows: morestack starts the function again). Go 1.21+: `push rbp`,
    /// which the kernel emulates.
    AfterStackCheck,
    /// The stack check's `JBE morestack` itself, which the kernel emulates, because the
    /// instruction after it would be single-stepped (Go 1.17-1.20: `sub rsp, N`, ~15x the cost
    /// per hit). The branch has not been taken when the probe fires: a hit whose saved flags say
    /// it will be (CF or ZF set) is the function about to grow its stack and start again, and
    /// is not counted (`COOKIE_STACK_CHECK` in `maptrace.h`). The arguments, `[RSP]` (the
    /// return address) and R14 (g) are the same as after it: nothing before the branch writes
    /// them.
    StackCheckBranch,
}

impl Placement {
    /// A few words for a table: `after check` or `on check`.
    pub fn short(self) -> &'static str {
        match self {
            Placement::AfterStackCheck => "after check",
            Placement::StackCheckBranch => "on check",
        }
    }

    /// Why a probe is placed so, in a sentence.
    pub fn explain(self) -> &'static str {
        match self {
            Placement::AfterStackCheck => {
                "the first instruction after the stack check (an entry probe would fire twice when the stack grows)"
            }
            Placement::StackCheckBranch => {
                "the stack check's `jbe morestack`, which the kernel emulates, as the `sub rsp` after it would be single-stepped (~15x the cost); a hit whose flags say the branch goes to morestack is not counted (the function starts again and is counted then)"
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbePoint {
    /// Offset of the probed instruction from the function's entry.
    pub offset: u64,
    pub file_offset: u64,
    /// That instruction, e.g. `push rbp` or `jbe 0x411adb`.
    pub instruction: String,
    pub placement: Placement,
    /// Whether the kernel emulates the probed instruction (a cheap probe) instead of
    /// single-stepping it out of line.
    pub emulated: bool,
    /// Why the probe sits there, for `inspect`.
    pub why: String,
}

/// Every known map function present in the binary, in `KNOWN` order.
pub fn find(elf: &ElfImage, tab: &Pclntab) -> Vec<ProbeSite> {
    let mut sites: Vec<(ProbeSite, Vec<u64>)> = KNOWN
        .iter()
        .filter_map(|&(name, role)| tab.func_by_name(name).map(|f| site(elf, f, role)))
        .collect();
    let by_addr: Vec<(u64, Role, String)> = sites
        .iter()
        .map(|(s, _)| (s.addr, s.role, s.function.clone()))
        .collect();
    for (s, calls) in &mut sites {
        if s.role.is_grow() {
            continue;
        }
        s.wraps = by_addr
            .iter()
            .find(|(addr, role, _)| {
                *addr != s.addr && role.family() == s.role.family() && calls.contains(addr)
            })
            .map(|(_, _, name)| name.clone());
    }
    sites.into_iter().map(|(s, _)| s).collect()
}

/// The function's probe site, and the targets of its direct calls.
fn site(elf: &ElfImage, f: &Func, role: Role) -> (ProbeSite, Vec<u64>) {
    let file_offset = elf.vaddr_to_offset(f.entry).unwrap_or(0);
    let code = elf
        .bytes_at(f.entry, usize::try_from(f.end - f.entry).unwrap_or(0))
        .unwrap_or(&[]);
    let probe = probe_point(code, f.entry).and_then(|p| {
        Ok(ProbePoint {
            file_offset: elf
                .vaddr_to_offset(f.entry + p.offset)
                .ok_or_else(|| "probe point is not backed by the file".to_string())?,
            ..p
        })
    });
    let (rets, calls) = rets_and_calls(code, f.entry);
    let site = ProbeSite {
        function: f.name.clone(),
        role,
        addr: f.entry,
        end: f.end,
        file_offset,
        probe: probe.map_err(|e| format!("{}: {e}", f.name)),
        ret_offsets: rets,
        wraps: None,
    };
    (site, calls)
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

/// One instruction of a prologue: its offset from the entry, its text, and whether the kernel
/// emulates it when probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrologueInsn {
    pub offset: u64,
    pub text: String,
    pub emulated: bool,
}

/// The stack-check branch of a prologue and the instruction after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prologue {
    pub branch: PrologueInsn,
    pub after: PrologueInsn,
}

/// Whether the kernel's x86 uprobe code emulates `i` instead of single-stepping it out of line
/// (arch/x86/kernel/uprobes.c: `push` of a 64-bit register, relative `call`, `jmp` and `jcc`).
fn kernel_emulates(i: &Instruction) -> bool {
    match i.mnemonic() {
        Mnemonic::Push => i.op0_kind() == OpKind::Register && i.op0_register().is_gpr64(),
        _ => {
            i.op0_kind() == OpKind::NearBranch64
                && (i.is_jcc_short_or_near() || i.is_jmp_short_or_near() || i.is_call_near())
        }
    }
}

/// Recognises `[LEA r12,[rsp-N]]; CMP rsp|r12,[r14+0x10]; JBE morestack` and returns the JBE
/// and the instruction after it.
pub fn prologue(code: &[u8], entry: u64) -> std::result::Result<Prologue, String> {
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
    let insn = |i: &Instruction| PrologueInsn {
        offset: i.ip() - entry,
        text: format(i),
        emulated: kernel_emulates(i),
    };
    Ok(Prologue {
        branch: insn(&j),
        after: insn(&after),
    })
}

/// Where to probe a function with a recognised prologue (`file_offset` left 0): after the stack
/// check where the kernel emulates that instruction, else on the stack check's branch (see
/// [`Placement`]).
pub fn probe_point(code: &[u8], entry: u64) -> std::result::Result<ProbePoint, String> {
    let Prologue { branch, after } = prologue(code, entry)?;
    let (at, placement, why) = if after.emulated || !branch.emulated {
        let why = if after.emulated {
            format!(
                "after the stack check, which an entry probe would hit twice when the stack grows; `{}` is emulated by the kernel",
                after.text
            )
        } else {
            format!(
                "after the stack check; `{}` is single-stepped by the kernel, and so is the branch `{}`",
                after.text, branch.text
            )
        };
        (after, Placement::AfterStackCheck, why)
    } else {
        let why = format!(
            "on the stack check's branch, which the kernel emulates, as `{}` after it would be single-stepped (~15x the cost); a hit whose flags say the branch goes to morestack is not counted: the function starts again",
            after.text
        );
        (branch, Placement::StackCheckBranch, why)
    };
    Ok(ProbePoint {
        offset: at.offset,
        file_offset: 0,
        instruction: at.text,
        placement,
        emulated: at.emulated,
        why,
    })
}

/// Offsets of RET instructions, by a linear sweep (Go emits no data inside functions).
pub fn ret_offsets(code: &[u8], entry: u64) -> Vec<u64> {
    rets_and_calls(code, entry).0
}

/// Offsets of RET instructions and targets of direct CALLs, by one linear sweep.
fn rets_and_calls(code: &[u8], entry: u64) -> (Vec<u64>, Vec<u64>) {
    let mut d = decoder(code, entry);
    let (mut rets, mut calls) = (Vec::new(), Vec::new());
    let mut i = Instruction::default();
    while d.can_decode() {
        d.decode_out(&mut i);
        match i.mnemonic() {
            Mnemonic::Ret => rets.push(i.ip() - entry),
            Mnemonic::Call if i.op0_kind() == OpKind::NearBranch64 => {
                calls.push(i.near_branch_target())
            }
            _ => {}
        }
    }
    (rets, calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_go121_prologue() {
        // CMPQ SP, 0x10(R14); JBE +0x50; PUSHQ BP
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x50, 0x55, 0xc3];
        let p = probe_point(&code, 0x1000).unwrap();
        assert_eq!(p.offset, 6);
        assert_eq!(p.instruction, "push rbp");
        assert_eq!(p.placement, Placement::AfterStackCheck);
        assert!(p.emulated);
        assert_eq!(ret_offsets(&code, 0x1000), vec![7]);
    }

    #[test]
    fn go119_prologue_is_probed_on_its_stack_check_branch() {
        // runtime.mapassign_faststr, Go 1.19.8: CMPQ SP, 0x10(R14); JBE (rel32); SUBQ $0x68, SP
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xd1, 0x03, 0, 0, 0x48, 0x83, 0xec, 0x68,
        ];
        let pro = prologue(&code, 0x411700).unwrap();
        assert_eq!((pro.branch.offset, pro.branch.emulated), (4, true));
        assert_eq!(pro.branch.text, "jbe 0000000000411ADBh");
        assert_eq!((pro.after.offset, pro.after.emulated), (10, false));
        assert_eq!(pro.after.text, "sub rsp,68h");
        let p = probe_point(&code, 0x411700).unwrap();
        assert_eq!(p.offset, 4);
        assert_eq!(p.placement, Placement::StackCheckBranch);
        assert!(p.emulated);
        assert!(p.why.contains("sub rsp,68h"), "{}", p.why);
    }

    #[test]
    fn recognises_lea_r12_prologue() {
        // LEAQ -0x88(SP), R12; CMPQ R12, 0x10(R14); JBE (rel32); SUBQ $0x108, SP
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x78, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0,
            1, 0, 0, 0x48, 0x81, 0xec, 0x08, 0x01, 0, 0,
        ];
        let pro = prologue(&code, 0).unwrap();
        assert_eq!(pro.after.offset, 18);
        assert!(pro.after.text.starts_with("sub rsp"), "{}", pro.after.text);
        let p = probe_point(&code, 0).unwrap();
        assert_eq!((p.offset, p.placement), (12, Placement::StackCheckBranch));
    }

    #[test]
    fn what_the_kernel_emulates() {
        let emulated = |code: &[u8]| kernel_emulates(&decoder(code, 0).decode());
        assert!(emulated(&[0x55])); // push rbp
        assert!(emulated(&[0x41, 0x56])); // push r14
        assert!(emulated(&[0x76, 0x10])); // jbe rel8
        assert!(emulated(&[0x0f, 0x86, 0, 1, 0, 0])); // jbe rel32
        assert!(emulated(&[0xe8, 0, 0, 0, 0])); // call rel32
        assert!(emulated(&[0xeb, 0x10])); // jmp rel8
        assert!(!emulated(&[0x48, 0x83, 0xec, 0x68])); // sub rsp,0x68
        assert!(!emulated(&[0x48, 0x83, 0xc4, 0x80])); // add rsp,-0x80
        assert!(!emulated(&[0x6a, 0x01])); // push imm
        assert!(!emulated(&[0xff, 0xd0])); // call rax
    }

    #[test]
    fn direct_call_targets_are_found() {
        // CALL rel32 (to 0x1000 + 5 + 0x10); RET
        let code = [0xe8, 0x10, 0, 0, 0, 0xc3];
        assert_eq!(rets_and_calls(&code, 0x1000), (vec![5], vec![0x1015]));
    }

    #[test]
    fn unknown_prologue_is_an_error_naming_it() {
        let err = probe_point(&[0x55, 0x48, 0x89, 0xe5], 0).unwrap_err();
        assert!(err.contains("push rbp"), "{err}");
        assert!(probe_point(&[], 0).is_err());
    }
}
