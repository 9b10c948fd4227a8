//! `.gopclntab`: Go's own function table. Gives every function's name, entry and end, and maps a
//! PC to its function, file and line — on stripped binaries too, since `strip` keeps it.
//! Formats: Go 1.16/1.17 (magic 0xfffffffa), 1.18/1.19 (0xfffffff0) and 1.20+ (0xfffffff1),
//! including Go 1.26+, which writes `textStart` as 0 (the caller supplies the text start).
//! Written by hand: no maintained crate parses Go 1.26+ tables.
use ::bytes::Bytes;

use super::bytes::{cstr_at, i32_at, u32_at, u8_at, uvarint, word_at};
use super::error::{corrupt, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PclnFormat {
    Go116,
    Go118,
    Go120,
}

impl PclnFormat {
    pub fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            0xffff_fffa => Some(Self::Go116),
            0xffff_fff0 => Some(Self::Go118),
            0xffff_fff1 => Some(Self::Go120),
            _ => None,
        }
    }
}

/// Magic of Go 1.2–1.15 tables: recognised only to say the binary is too old.
pub const MAGIC_GO12: u32 = 0xffff_fffb;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Func {
    pub name: String,
    pub entry: u64,
    /// One past the last byte: the next function's entry (or the table's end marker).
    pub end: u64,
    /// Offset of this function's `_func` record within the function table.
    meta: usize,
}

pub struct Pclntab {
    data: Bytes,
    pub format: PclnFormat,
    pub ptr_size: usize,
    pub pc_quantum: u64,
    /// Text start used to turn entry offsets into addresses.
    pub text_start: u64,
    /// `textStart` as written in the header (0 in Go 1.26+).
    pub header_text_start: u64,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    funcs: Vec<Func>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub file: String,
    pub line: u32,
}

impl Pclntab {
    /// Reads the header magic alone: what format (or too-old table) a section holds.
    pub fn magic(data: &[u8]) -> Option<u32> {
        u32_at(data, 0)
    }

    /// Parses a table. `text_start` is used when the header's own is 0 (Go 1.26+).
    pub fn parse(data: impl Into<Bytes>, text_start: u64) -> Result<Self> {
        let data: Bytes = data.into();
        let magic = u32_at(&data, 0).ok_or_else(|| corrupt!(".gopclntab is empty"))?;
        let format = PclnFormat::from_magic(magic)
            .ok_or_else(|| corrupt!(".gopclntab has unknown magic {magic:#x}"))?;
        let (pad, min_lc, ptr_size) = (
            u16::from_le_bytes([
                data.get(4).copied().unwrap_or(1),
                data.get(5).copied().unwrap_or(1),
            ]),
            u8_at(&data, 6).unwrap_or(0),
            u8_at(&data, 7).unwrap_or(0) as usize,
        );
        if pad != 0 || !matches!(min_lc, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err(corrupt!(".gopclntab header is malformed"));
        }
        let word = |i: usize| {
            word_at(&data, 8 + i * ptr_size, ptr_size)
                .ok_or_else(|| corrupt!(".gopclntab header is truncated"))
        };
        let nfunc = word(0)?;
        let (header_text_start, base) = match format {
            PclnFormat::Go116 => (0, 2),
            _ => (word(2)?, 3),
        };
        let off = |i: usize| -> Result<usize> {
            let v = word(base + i)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= data.len())
                .ok_or_else(|| corrupt!(".gopclntab header offset {v:#x} is out of range"))
        };
        let (funcname, cutab, filetab, pctab, functab) =
            (off(0)?, off(1)?, off(2)?, off(3)?, off(4)?);
        let entry_size = if format == PclnFormat::Go116 {
            2 * ptr_size
        } else {
            8
        };
        let nfunc = usize::try_from(nfunc)
            .ok()
            .filter(|&n| {
                n.checked_mul(entry_size)
                    .is_some_and(|b| functab.checked_add(b).is_some_and(|end| end <= data.len()))
            })
            .ok_or_else(|| corrupt!(".gopclntab function count {nfunc} does not fit the table"))?;
        let text_start = if header_text_start != 0 {
            header_text_start
        } else {
            text_start
        };
        let mut tab = Pclntab {
            data,
            format,
            ptr_size,
            pc_quantum: u64::from(min_lc),
            text_start,
            header_text_start,
            funcname,
            cutab,
            filetab,
            pctab,
            functab,
            funcs: Vec::with_capacity(nfunc),
        };
        tab.read_functions(nfunc)?;
        Ok(tab)
    }

    fn functab_entry(&self, i: usize) -> Option<(u64, usize)> {
        let d = &self.data;
        let (entry, funcoff) = match self.format {
            PclnFormat::Go116 => {
                let at = self.functab + i * 2 * self.ptr_size;
                (
                    word_at(d, at, self.ptr_size)?,
                    word_at(d, at + self.ptr_size, self.ptr_size)?,
                )
            }
            _ => {
                let at = self.functab + i * 8;
                let entry_off = u64::from(u32_at(d, at)?);
                (
                    self.text_start.checked_add(entry_off)?,
                    u64::from(u32_at(d, at + 4)?),
                )
            }
        };
        Some((entry, usize::try_from(funcoff).ok()?))
    }

    fn read_functions(&mut self, nfunc: usize) -> Result<()> {
        let mut prev = 0u64;
        for i in 0..nfunc {
            let (entry, funcoff) = self
                .functab_entry(i)
                .ok_or_else(|| corrupt!(".gopclntab function {i} is truncated"))?;
            let (end, _) = self
                .functab_entry(i + 1)
                .ok_or_else(|| corrupt!(".gopclntab function {i} has no end"))?;
            if entry < prev || end < entry {
                return Err(corrupt!(".gopclntab functions are not sorted at {i}"));
            }
            prev = entry;
            let meta = self
                .functab
                .checked_add(funcoff)
                .filter(|&m| m < self.data.len())
                .ok_or_else(|| corrupt!(".gopclntab function {i} record is out of range"))?;
            let name_off = self
                .field_i32(meta, FuncField::NameOff)
                .ok_or_else(|| corrupt!(".gopclntab function {i} record is truncated"))?;
            let name = usize::try_from(name_off)
                .ok()
                .and_then(|o| cstr_at(&self.data, self.funcname.checked_add(o)?))
                .ok_or_else(|| corrupt!(".gopclntab function {i} name is out of range"))?;
            self.funcs.push(Func {
                name,
                entry,
                end,
                meta,
            });
        }
        Ok(())
    }

    fn field_i32(&self, meta: usize, field: FuncField) -> Option<i32> {
        let base = match self.format {
            PclnFormat::Go116 => meta + self.ptr_size,
            _ => meta + 4,
        };
        let index = match field {
            FuncField::NameOff => 0,
            FuncField::PcFile => 4,
            FuncField::PcLine => 5,
            FuncField::CuOffset => 7,
        };
        i32_at(&self.data, base + 4 * index)
    }

    pub fn funcs(&self) -> &[Func] {
        &self.funcs
    }

    pub fn func_by_name(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }

    /// The function containing `pc`.
    pub fn func_at(&self, pc: u64) -> Option<&Func> {
        let i = self.funcs.partition_point(|f| f.entry <= pc);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    /// File and line of the instruction at `pc` (for inlined code: the inlined callee's).
    pub fn source_line(&self, pc: u64) -> Option<SourceLine> {
        let f = self.func_at(pc)?;
        let file_table = u32::try_from(self.field_i32(f.meta, FuncField::PcFile)?).ok()?;
        let line_table = u32::try_from(self.field_i32(f.meta, FuncField::PcLine)?).ok()?;
        let file_index = self.pc_value(file_table, f.entry, pc)?;
        let line = self.pc_value(line_table, f.entry, pc)?;
        let cu = u32::try_from(self.field_i32(f.meta, FuncField::CuOffset)?).ok()?;
        let slot = (cu as usize).checked_add(usize::try_from(file_index).ok()?)?;
        let name_off = u32_at(&self.data, self.cutab.checked_add(slot.checked_mul(4)?)?)?;
        if name_off == u32::MAX {
            return None;
        }
        let file = cstr_at(&self.data, self.filetab.checked_add(name_off as usize)?)?;
        Some(SourceLine {
            file,
            line: u32::try_from(line).ok()?,
        })
    }

    /// Value of the function's pc-data table number `table` at `pc` (Go 1.18+ tables; e.g. 2,
    /// the inline tree index: −1 where no call is inlined).
    pub fn pcdata(&self, f: &Func, table: u32, pc: u64) -> Option<i64> {
        let (npcdata, start) = self.pcdata_layout(f)?;
        if table >= npcdata {
            return None;
        }
        let off = u32_at(&self.data, start.checked_add(4 * table as usize)?)?;
        self.pc_value(off, f.entry, pc)
    }

    /// Offset of the function's funcdata number `index` from `moduledata.gofunc` (Go 1.18+;
    /// e.g. 3, the inline tree), if it has one.
    pub fn funcdata_offset(&self, f: &Func, index: u8) -> Option<u32> {
        let (npcdata, start) = self.pcdata_layout(f)?;
        let nfuncdata = u8_at(&self.data, start - 1)?;
        if index >= nfuncdata {
            return None;
        }
        let at = start
            .checked_add(4 * usize::try_from(npcdata).ok()?)?
            .checked_add(4 * usize::from(index))?;
        u32_at(&self.data, at).filter(|&v| v != u32::MAX)
    }

    /// `_func` of Go 1.18+: nine (1.20+: ten) 32-bit fields, four bytes ending with `nfuncdata`,
    /// then `npcdata` pc-data table offsets and `nfuncdata` funcdata offsets.
    fn pcdata_layout(&self, f: &Func) -> Option<(u32, usize)> {
        let header = match self.format {
            PclnFormat::Go116 => return None,
            PclnFormat::Go118 => 40,
            PclnFormat::Go120 => 44,
        };
        let npcdata = u32_at(&self.data, f.meta.checked_add(4 + 6 * 4)?)?;
        Some((npcdata, f.meta.checked_add(header)?))
    }

    /// A function name by its offset in the name table (inline tree entries name functions so).
    pub fn name_at(&self, off: i32) -> Option<String> {
        cstr_at(
            &self.data,
            self.funcname.checked_add(usize::try_from(off).ok()?)?,
        )
    }

    /// Runs a pc-value table (zig-zag value deltas, quantised pc deltas) up to `target`.
    fn pc_value(&self, table_off: u32, entry: u64, target: u64) -> Option<i64> {
        if table_off == 0 {
            return None;
        }
        let mut p = self.pctab.checked_add(table_off as usize)?;
        let mut pc = entry;
        let mut value: i64 = -1;
        let mut first = true;
        // A function's table cannot have more steps than it has bytes; bound the walk anyway.
        for _ in 0..1_000_000 {
            let (uvdelta, n) = uvarint(&self.data, p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            p += n;
            let vdelta = if uvdelta & 1 != 0 {
                !(uvdelta >> 1) as i64
            } else {
                (uvdelta >> 1) as i64
            };
            let (pcdelta, n) = uvarint(&self.data, p)?;
            p += n;
            first = false;
            value = value.wrapping_add(vdelta as i32 as i64);
            pc = pc.checked_add(pcdelta.checked_mul(self.pc_quantum)?)?;
            if target < pc {
                return Some(value);
            }
        }
        None
    }
}

#[derive(Clone, Copy)]
enum FuncField {
    NameOff,
    PcFile,
    PcLine,
    CuOffset,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_headers() {
        assert!(Pclntab::parse(vec![], 0).is_err());
        assert!(Pclntab::parse(vec![0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8], 0).is_err());
        let mut h = vec![0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        h.extend_from_slice(&u64::MAX.to_le_bytes());
        h.resize(80, 0);
        assert!(
            Pclntab::parse(h, 0).is_err(),
            "a huge nfunc must not allocate or panic"
        );
    }

    /// Found by `cargo fuzz run pclntab`: nfunc × entry size fit, but adding the function
    /// table's offset overflowed (and in release builds wrapped into a huge allocation).
    #[test]
    fn regression_nfunc_plus_functab_offset_overflow() {
        for bytes in [
            &include_bytes!("../../fuzz/regressions/pclntab/nfunc-add-overflow-min.bin")[..],
            &include_bytes!("../../fuzz/regressions/pclntab/nfunc-add-overflow-fuzzed.bin")[..],
        ] {
            // The fuzz target's input: 8 bytes of text start, then the table.
            let text_start = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            assert!(Pclntab::parse(bytes[8..].to_vec(), text_start).is_err());
        }
    }
}
