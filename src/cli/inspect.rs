//! `inspect`: what the tool knows about a Go binary and what will and will not work, for a person
//! or as JSON. Needs no privileges.
use std::path::PathBuf;
use std::process::ExitCode;

use std::fmt::Write;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::gobin::goid::GoidOffset;
use crate::gobin::moduledata::FoundBy;
use crate::gobin::probes::{Placement, ProbeSite, Role};
use crate::gobin::{Arch, GoBinary, GoType, MapImpl, VersionSource};
use crate::probe::points::decided_at_ret;

#[derive(clap::Args)]
#[command(about = "Show what can be traced in a Go binary (no privileges needed)")]
pub struct Args {
    /// The Go executable to inspect.
    #[arg(required_unless_present = "pid", conflicts_with = "pid")]
    binary: Option<PathBuf>,
    /// Inspect the executable of this running process.
    #[arg(short, long)]
    pid: Option<u32>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also resolve the type descriptor at this address (hex, e.g. the RAX of a map write).
    #[arg(long = "type", value_name = "ADDR", value_parser = parse_addr)]
    types: Vec<u64>,
    /// Also symbolize this program counter to function, file and line (hex).
    #[arg(long = "pc", value_name = "ADDR", value_parser = parse_addr)]
    pcs: Vec<u64>,
}

fn parse_addr(s: &str) -> std::result::Result<u64, String> {
    let hex = s.trim_start_matches("0x").trim_start_matches("0X");
    u64::from_str_radix(hex, 16).map_err(|_| format!("{s:?} is not a hex address"))
}

#[derive(Serialize)]
pub struct Inspection {
    pub path: String,
    pub go_version: String,
    /// How the version was found: build info, `runtime.buildVersion`, a version string scan, or
    /// the layout's range.
    pub go_version_source: VersionSource,
    /// The versions the binary's layout allows (pclntab magic, module data, sections, runtime
    /// functions), e.g. `go1.20–go1.25`.
    pub go_version_range: String,
    pub arch: Arch,
    pub build_mode: &'static str,
    pub stripped: bool,
    pub map_impl: MapImpl,
    pub build_settings: Vec<(String, String)>,
    pub functions: usize,
    pub pclntab_format: String,
    pub text_start: String,
    pub moduledata: Option<String>,
    pub type_names: bool,
    pub goid: Option<GoidOffset>,
    pub map_functions: Vec<ProbeSite>,
    pub types: Vec<TypeAnswer>,
    pub pcs: Vec<PcAnswer>,
    /// What will not work, and why.
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct TypeAnswer {
    pub addr: String,
    #[serde(flatten)]
    pub result: TypeResult,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum TypeResult {
    Ok {
        name: String,
        kind: String,
        size: u64,
        key: Option<String>,
        elem: Option<String>,
        key_layout: Option<crate::gobin::KeyLayout>,
    },
    Err {
        error: String,
    },
}

#[derive(Serialize)]
pub struct PcAnswer {
    pub pc: String,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let path = match (args.pid, &args.binary) {
        (Some(pid), _) => crate::probe::process::exe_of(pid)?,
        (None, Some(p)) => p.clone(),
        (None, None) => bail!("give a binary or -p PID"),
    };
    let bin = GoBinary::open(&path).with_context(|| format!("{}", path.display()))?;
    let report = inspect(&bin, &path.display().to_string(), &args.types, &args.pcs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(bin: &GoBinary, path: &str, types: &[u64], pcs: &[u64]) -> Inspection {
    let map_functions = bin.map_functions();
    let mut problems = probe_problems(bin, &map_functions);
    let goid = bin.goid_offset();
    if goid.is_none() {
        problems.push(format!(
            "goroutine ids unknown for {}",
            bin.build.go_version
        ));
    }
    let reader = bin.types();
    let name_of = |a: u64| reader.as_ref().and_then(|r| r.read(a).ok()).map(|t| t.name);
    let types = types
        .iter()
        .map(|&a| TypeAnswer {
            addr: format!("{a:#x}"),
            result: match reader.as_ref().map(|r| r.read(a)) {
                Some(Ok(t)) => type_ok(&t, reader.as_ref(), &name_of),
                Some(Err(e)) => TypeResult::Err {
                    error: e.to_string(),
                },
                None => TypeResult::Err {
                    error: "type data not found".into(),
                },
            },
        })
        .collect();
    let pcs = pcs
        .iter()
        .map(|&pc| {
            let line = bin.pclntab.source_line(pc);
            PcAnswer {
                pc: format!("{pc:#x}"),
                function: bin.pclntab.func_at(pc).map(|f| f.name.clone()),
                file: line.as_ref().map(|l| l.file.clone()),
                line: line.map(|l| l.line),
            }
        })
        .collect();
    Inspection {
        path: path.to_string(),
        go_version: bin.build.go_version.clone(),
        go_version_source: bin.version_source,
        go_version_range: bin
            .layout_range
            .range
            .map(|r| r.to_string())
            .unwrap_or_else(|| "unknown (contradicting clues)".into()),
        arch: bin.arch(),
        build_mode: if bin.elf.pie { "pie" } else { "exe" },
        stripped: !bin.elf.has_symbols,
        map_impl: bin.map_impl,
        build_settings: bin.build.settings.clone(),
        functions: bin.pclntab.funcs().len(),
        pclntab_format: format!("{:?}", bin.pclntab.format),
        text_start: format!(
            "{:#x}{}",
            bin.pclntab.text_start,
            if bin.pclntab.header_text_start == 0 {
                " (header has 0: taken from module data)"
            } else {
                ""
            }
        ),
        moduledata: bin.moduledata.map(|m| {
            let by = match m.found_by {
                FoundBy::Symbol => "symbol runtime.firstmoduledata",
                FoundBy::GoModuleSection => "section .go.module",
                FoundBy::Scan => "scan for the pclntab pointer",
            };
            format!("{:#x} (found by {by}), types at {:#x}", m.addr, m.types)
        }),
        type_names: bin.moduledata.is_some(),
        goid,
        map_functions,
        types,
        pcs,
        problems,
    }
}

/// What will not work as well in tracing this binary's map functions.
fn probe_problems(bin: &GoBinary, map_functions: &[ProbeSite]) -> Vec<String> {
    let mut problems = Vec::new();
    if bin.arch() != Arch::X86_64 {
        problems.push(format!(
            "tracing is not supported on {}: only x86-64 can be traced (inspect works)",
            bin.arch()
        ));
    }
    for f in map_functions.iter().filter(|f| f.is_probed()) {
        if let Err(e) = &f.probe {
            problems.push(format!("no probe point: {e}"));
        } else if let Ok(p) = &f.probe {
            if f.role.is_assign() && !p.emulated {
                problems.push(format!("{}: probe instruction `{}` is single-stepped by the kernel (~10x slower per write than Go 1.21+)", f.function, p.instruction));
            }
        }
    }
    if bin.arch() == Arch::X86_64 && !map_functions.iter().any(|f| f.role.is_assign()) {
        problems.push("no map-assign function found: this program never writes a map".into());
    }
    for f in map_functions
        .iter()
        .filter(|f| f.role == Role::SyncDelete && f.is_probed())
    {
        problems.push(format!(
            "{} does not call LoadAndDelete (it has it inlined): its deletes are not seen",
            f.function
        ));
    }
    if bin.moduledata.is_none() {
        problems.push("runtime module data not found: map type names cannot be resolved".into());
    }
    problems
}

fn type_ok(
    t: &GoType,
    reader: Option<&crate::gobin::TypeReader<'_>>,
    name_of: &dyn Fn(u64) -> Option<String>,
) -> TypeResult {
    let (key, elem, key_layout) = match &t.detail {
        crate::gobin::types::Detail::Map { key, elem } => (
            name_of(*key),
            name_of(*elem),
            reader.and_then(|r| r.key_layout(*key).ok()),
        ),
        _ => (None, None, None),
    };
    TypeResult::Ok {
        name: t.name.clone(),
        kind: format!("{:?}", t.kind).to_lowercase(),
        size: t.size,
        key,
        elem,
        key_layout,
    }
}

fn role_group(r: Role) -> &'static str {
    if r.is_assign() {
        "assign"
    } else if r.is_grow() {
        "grow"
    } else if r.is_delete() {
        "delete"
    } else if r == Role::Clear {
        "clear"
    } else {
        "sync"
    }
}

pub fn render(r: &Inspection) -> String {
    let mut o = String::new();
    render_binary(&mut o, r);
    render_functions(&mut o, &r.map_functions);
    render_answers(&mut o, r);
    if r.problems.is_empty() {
        let _ = writeln!(o, "\n  ready to trace: every map write can be probed");
    } else {
        let _ = writeln!(o, "\n  will not work as well:");
        for p in &r.problems {
            let _ = writeln!(o, "    - {p}");
        }
    }
    o
}

/// What the binary is: version, architecture, build, map implementation, tables found.
fn render_binary(o: &mut String, r: &Inspection) {
    let _ = writeln!(o, "{}", r.path);
    let _ = writeln!(
        o,
        "  Go version      {} (from {}; layout allows {})",
        r.go_version, r.go_version_source, r.go_version_range
    );
    let _ = writeln!(o, "  architecture    {}", r.arch);
    let _ = writeln!(
        o,
        "  build mode      {}{}",
        r.build_mode,
        if r.stripped {
            ", stripped (no symbol table)"
        } else {
            ", with symbols"
        }
    );
    let _ = writeln!(o, "  map impl        {}", r.map_impl);
    let _ = writeln!(
        o,
        "  functions       {} (pclntab {}, text at {})",
        r.functions, r.pclntab_format, r.text_start
    );
    let _ = writeln!(
        o,
        "  module data     {}",
        r.moduledata.as_deref().unwrap_or("not found")
    );
    let _ = writeln!(
        o,
        "  type names      {}",
        if r.type_names {
            "resolvable from type descriptors"
        } else {
            "not resolvable"
        }
    );
    match &r.goid {
        Some(g) => {
            let _ = writeln!(
                o,
                "  goroutine id    g+{} (from {})",
                g.offset,
                match g.source {
                    crate::gobin::goid::GoidSource::Dwarf => "DWARF",
                    crate::gobin::goid::GoidSource::Table => "the per-version table",
                }
            );
        }
        None => {
            let _ = writeln!(o, "  goroutine id    unknown");
        }
    }
}

/// The map functions and their probe points.
fn render_functions(o: &mut String, functions: &[ProbeSite]) {
    if !functions.is_empty() {
        let _ = writeln!(
            o,
            "\n  {:<7} {:<44} {:>10} {:>10}  probe",
            "role", "function", "address", "file off"
        );
        for f in functions {
            let probe = match &f.probe {
                Ok(p) => format!(
                    "+{:#x} `{}` {} ({})",
                    p.offset,
                    p.instruction,
                    p.placement.short(),
                    if p.emulated {
                        "emulated"
                    } else {
                        "SINGLE-STEPPED"
                    }
                ),
                Err(e) => format!("NONE: {e}"),
            };
            let _ = writeln!(
                o,
                "  {:<7} {:<44} {:>#10x} {:>#10x}  {probe}{}",
                role_group(f.role),
                f.function,
                f.addr,
                f.file_offset,
                match &f.wraps {
                    Some(w) => format!(" (only wraps {w}: not probed)"),
                    None if f.role.is_grow() || decided_at_ret(f.role) => {
                        format!(", {} RET", f.ret_offsets.len())
                    }
                    None => String::new(),
                }
            );
        }
        let mut placements: Vec<Placement> = functions
            .iter()
            .filter_map(|f| f.probe.as_ref().ok().map(|p| p.placement))
            .collect();
        placements.dedup();
        placements.sort_by_key(|p| p.short());
        placements.dedup();
        for p in placements {
            let _ = writeln!(o, "  {}: {}", p.short(), p.explain());
        }
    }
}

/// The answers to `--type` and `--pc`.
fn render_answers(o: &mut String, r: &Inspection) {
    for t in &r.types {
        match &t.result {
            TypeResult::Ok {
                name,
                kind,
                size,
                key,
                elem,
                ..
            } => {
                let _ = write!(o, "\n  type {}: {name} ({kind}, {size} bytes)", t.addr);
                if let (Some(k), Some(e)) = (key, elem) {
                    let _ = write!(o, " key {k}, elem {e}");
                }
                o.push('\n');
            }
            TypeResult::Err { error } => {
                let _ = writeln!(o, "\n  type {}: {error}", t.addr);
            }
        }
    }
    for p in &r.pcs {
        let _ = writeln!(
            o,
            "  pc {}: {} {}:{}",
            p.pc,
            p.function.as_deref().unwrap_or("?"),
            p.file.as_deref().unwrap_or("?"),
            p.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
        );
    }
}
