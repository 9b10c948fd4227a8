//! The binary parser against the Go toolchain's own tools, for every toolchain × variant (plain,
//! stripped, PIE): functions vs `go tool nm`, version vs `go version -m`, PC → file:line vs
//! `go tool objdump`, stripped twin vs unstripped, and map type names vs the program's `%T`.
mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{Toolchain, Variant};
use ebpf_map_trace::gobin::types::KeyLayout;
use ebpf_map_trace::gobin::{GoBinary, MapImpl};

fn open(p: &Path) -> GoBinary {
    GoBinary::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `go tool nm` names assembly functions `.abi0` and prints `·` where pclntab has `.`; before Go
/// 1.22 pclntab names of generic instantiations elide type arguments as `[...]`.
fn nm_normalize(name: &str) -> String {
    let name = name.trim_end_matches(".abi0").replace('·', ".");
    let mut out = String::new();
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[...]");
                }
                depth += 1;
            }
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn check_against_nm(tc: &Toolchain, path: &Path, bin: &GoBinary) {
    let out = common::go_tool(tc, &["tool", "nm", path.to_str().unwrap()]);
    let by_entry: HashMap<u64, &str> = bin
        .pclntab
        .funcs()
        .iter()
        .map(|f| (f.entry, f.name.as_str()))
        .collect();
    let mut checked = 0;
    for line in out.lines() {
        let mut cols = line.split_whitespace();
        let (Some(addr), Some(kind)) = (cols.next(), cols.next()) else {
            continue;
        };
        if kind != "T" && kind != "t" {
            continue;
        }
        let name: String = cols.collect::<Vec<_>>().join(" ");
        if name == "runtime.text" || name == "runtime.etext" {
            continue;
        }
        let addr = u64::from_str_radix(addr, 16).unwrap();
        let ours = by_entry.get(&addr).unwrap_or_else(|| {
            panic!(
                "{}: nm has {name} at {addr:#x}, pclntab has no function there",
                path.display()
            )
        });
        assert_eq!(
            nm_normalize(ours),
            nm_normalize(&name),
            "{}: function at {addr:#x}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        bin.pclntab.funcs().len(),
        "{}: nm and pclntab list different numbers of functions",
        path.display()
    );
}

fn check_against_objdump(tc: &Toolchain, path: &Path, bin: &GoBinary) -> usize {
    // main.* and the map-assign functions: user code and runtime code, inlined calls included.
    let args = [
        "tool",
        "objdump",
        "-s",
        r"^main\.|^runtime\.mapassign_faststr$",
        path.to_str().unwrap(),
    ];
    let mut out = common::go_tool(tc, &args);
    if out.contains("\n  :0\t") {
        // Go 1.19's objdump cannot find the line table of its own PIE binaries; a newer one can.
        out = common::go_tool(&common::newest_toolchain(), &args);
    }
    let mut checked = 0;
    for (i, line) in out.lines().filter(|l| l.starts_with("  ")).enumerate() {
        if i % 7 != 0 {
            continue; // a sample is enough
        }
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        let (Some(fileline), Some(pc)) = (cols.first(), cols.get(2).or(cols.get(1))) else {
            continue;
        };
        let Some(pc) = pc
            .strip_prefix("0x")
            .and_then(|p| u64::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        let (file, line_no) = fileline.rsplit_once(':').unwrap();
        let ours = bin
            .pclntab
            .source_line(pc)
            .unwrap_or_else(|| panic!("{}: no line for pc {pc:#x}", path.display()));
        let base = Path::new(&ours.file).file_name().unwrap().to_str().unwrap();
        assert_eq!(
            (base, ours.line.to_string().as_str()),
            (file, line_no),
            "{}: pc {pc:#x}",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked > 20,
        "{}: too few PCs sampled from objdump ({checked})",
        path.display()
    );
    checked
}

fn check_version(tc: &Toolchain, path: &Path, bin: &GoBinary) {
    let out = common::go_tool(tc, &["version", "-m", path.to_str().unwrap()]);
    let first = out.lines().next().unwrap();
    let version = first.rsplit(' ').next().unwrap().trim();
    assert_eq!(bin.build.go_version, version, "{}", path.display());
    assert!(
        bin.build
            .go_version
            .starts_with(&format!("go{}", tc.version)),
        "{}: {}",
        path.display(),
        bin.build.go_version
    );
    for line in out
        .lines()
        .filter(|l| l.trim_start().starts_with("build\t"))
    {
        let kv = line.trim_start().trim_start_matches("build\t");
        let (k, v) = kv.split_once('=').unwrap();
        assert_eq!(
            bin.build.setting(k),
            Some(v.trim_matches('"')),
            "{}: build setting {k}",
            path.display()
        );
    }
}

/// The offset of `goid` in `runtime.g` as Go's own debug/dwarf reads it from `path` (the
/// `dwarfgoid` helper), or None when `path` has no DWARF.
fn dwarf_goid(path: &Path) -> Option<u64> {
    let helper = common::build("dwarfgoid", &common::newest_toolchain(), Variant::Plain);
    let out = common::run_output(&helper, &[path.to_str().unwrap()], common::RUN_TIMEOUT);
    if out.status.code() == Some(3) {
        return None; // no DWARF
    }
    assert!(
        out.status.success(),
        "dwarfgoid {}: {}",
        path.display(),
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("dwarfgoid's line");
    Some(v["goid_offset"].as_u64().expect("goid_offset"))
}

/// The goid offset the parser finds equals Go's own DWARF reader's: from the binary's DWARF in
/// plain and PIE builds (and found there, not in the table), from its plain twin's (the same
/// toolchain's runtime.g) in a stripped build, which has no DWARF and uses the table.
fn check_goid(tc: &Toolchain, variant: Variant, path: &Path, bin: &GoBinary) {
    use ebpf_map_trace::gobin::goid::{table_offset, GoidSource};
    let truth = match variant {
        Variant::Stripped => {
            assert_eq!(
                dwarf_goid(path),
                None,
                "{}: DWARF in a stripped build",
                path.display()
            );
            dwarf_goid(&common::build("keys", tc, Variant::Plain))
        }
        _ => dwarf_goid(path),
    }
    .unwrap_or_else(|| panic!("{}: no runtime.g goid in DWARF", path.display()));
    let goid = bin.goid_offset().expect("goid offset");
    let source = if variant == Variant::Stripped {
        GoidSource::Table
    } else {
        GoidSource::Dwarf
    };
    assert_eq!(
        (goid.offset, goid.source),
        (truth, source),
        "{}: goid offset (Go's debug/dwarf says {truth})",
        path.display()
    );
    assert_eq!(
        table_offset(tc.minor()),
        Some(truth),
        "go{}: the table's goid offset vs DWARF",
        tc.version
    );
}

/// [`ebpf_map_trace::gobin::types::KeyLayout`] in the notation the `keys` program prints for
/// its maps' key types from Go's reflect.
fn layout_text(l: &KeyLayout) -> String {
    match l {
        KeyLayout::Bool => "bool".into(),
        KeyLayout::Int { size } => format!("i{size}"),
        KeyLayout::Uint { size } => format!("u{size}"),
        KeyLayout::Float { size } => format!("f{size}"),
        KeyLayout::Complex { size } => format!("c{size}"),
        KeyLayout::String => "string".into(),
        KeyLayout::Pointer => "ptr".into(),
        KeyLayout::Interface { empty: true } => "eface".into(),
        KeyLayout::Interface { empty: false } => "iface".into(),
        KeyLayout::Array {
            elem,
            elem_size,
            len,
        } => format!("[{len}]{elem_size}:{}", layout_text(elem)),
        KeyLayout::Struct { fields } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(off, f)| format!("{off}:{}", layout_text(f)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
    }
}

#[test]
fn parser_agrees_with_go_tools_for_every_toolchain_and_variant() {
    let built = common::matrix("keys");
    let mut twins: HashMap<String, GoBinary> = HashMap::new();
    for (tc, variant, path) in &built {
        let bin = open(path);
        check_version(tc, path, &bin);
        assert_eq!(
            bin.elf.pie,
            *variant == Variant::Pie,
            "{}: build mode",
            path.display()
        );
        assert_eq!(
            bin.elf.has_symbols,
            *variant != Variant::Stripped,
            "{}: stripped",
            path.display()
        );
        assert_eq!(
            bin.map_impl,
            if tc.swiss_maps() {
                MapImpl::Swiss
            } else {
                MapImpl::Classic
            },
            "{}",
            path.display()
        );
        assert!(
            bin.moduledata.is_some(),
            "{}: module data not found",
            path.display()
        );
        let sites = bin.map_functions();
        for f in [
            "runtime.mapassign",
            "runtime.mapassign_faststr",
            "runtime.mapassign_fast64",
            "runtime.mapassign_fast32",
            "runtime.mapassign_fast64ptr",
        ] {
            let s = sites
                .iter()
                .find(|s| s.function == f)
                .unwrap_or_else(|| panic!("{}: {f} not found", path.display()));
            let p = s
                .probe
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(p.offset > 0 && s.addr + p.offset < s.end);
        }
        check_goid(tc, *variant, path, &bin);
        // A stripped binary has no symbols for `go tool nm`/`objdump`: it is checked against its
        // plain twin below (same functions, lines, map functions), which was checked against them.
        if *variant != Variant::Stripped {
            check_against_nm(tc, path, &bin);
            check_against_objdump(tc, path, &bin);
        }
        match variant {
            Variant::Plain => {
                twins.insert(tc.version.clone(), bin);
            }
            Variant::Stripped => {
                let plain = twins
                    .get(&tc.version)
                    .expect("plain variant is built before stripped");
                assert_eq!(
                    plain.pclntab.funcs(),
                    bin.pclntab.funcs(),
                    "{}: functions differ from unstripped twin",
                    path.display()
                );
                for f in plain.pclntab.funcs().iter().step_by(53) {
                    assert_eq!(
                        plain.pclntab.source_line(f.entry + 1),
                        bin.pclntab.source_line(f.entry + 1)
                    );
                }
                let a: Vec<_> = plain
                    .map_functions()
                    .into_iter()
                    .map(|s| (s.function, s.addr, s.probe.ok()))
                    .collect();
                let b: Vec<_> = bin
                    .map_functions()
                    .into_iter()
                    .map(|s| (s.function, s.addr, s.probe.ok()))
                    .collect();
                assert_eq!(
                    a,
                    b,
                    "{}: map functions differ from unstripped twin",
                    path.display()
                );
                assert_eq!(plain.build.go_version, bin.build.go_version);
                assert_eq!(
                    plain.goid_offset().map(|g| g.offset),
                    bin.goid_offset().map(|g| g.offset)
                );
            }
            Variant::Pie => {}
        }
    }
}

#[test]
fn map_type_names_equal_what_the_program_prints() {
    for (tc, variant, path) in common::matrix("keys") {
        let bin = open(&path);
        let out = common::run(&path, &["-n", "10"]);
        let types = out
            .iter()
            .find(|v| v["event"] == "types")
            .expect("types line");
        let main_main = common::parse_hex(types["main_main"].as_str().unwrap());
        let bias = main_main - bin.pclntab.func_by_name("main.main").unwrap().entry;
        let reader = bin.types().expect("types reader");
        let maps = types["maps"].as_array().unwrap();
        let printed: Vec<&str> = maps.iter().map(|m| m["type"].as_str().unwrap()).collect();
        let scenarios: Vec<&str> = common::KEYS_SCENARIOS.iter().map(|s| s.type_name).collect();
        assert_eq!(
            printed, scenarios,
            "go{} {variant:?}: the program's maps",
            tc.version
        );
        let all_map_types: Vec<String> = reader.map_types().into_iter().map(|t| t.name).collect();
        for m in maps {
            let addr = common::parse_hex(m["type_addr"].as_str().unwrap()) - bias;
            let t = reader
                .read(addr)
                .unwrap_or_else(|e| panic!("go{} {variant:?}: {e}", tc.version));
            assert_eq!(
                t.name,
                m["type"].as_str().unwrap(),
                "go{} {variant:?}",
                tc.version
            );
            assert!(
                all_map_types.contains(&t.name),
                "map type scan misses {}",
                t.name
            );
            if let ebpf_map_trace::gobin::types::Detail::Map { key, .. } = t.detail {
                let layout = reader
                    .key_layout(key)
                    .unwrap_or_else(|e| panic!("go{} {variant:?} {}: {e}", tc.version, t.name));
                assert_eq!(
                    layout_text(&layout),
                    m["key_layout"].as_str().unwrap(),
                    "go{} {variant:?} {}: key layout vs Go's reflect",
                    tc.version,
                    t.name
                );
            } else {
                panic!("{} is not a map type", t.name);
            }
        }
    }
}
