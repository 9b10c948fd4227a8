//! Go binaries without build info (issue 12), for every toolchain of the matrix. Three ways a
//! `.go.buildinfo` goes missing, each on the `keys` test program:
//! - **release**: linked by the toolchain's own linker with `ctxt.buildinfo()` commented out,
//!   as esbuild's release Makefile does to its Go compiler (its npm binaries have no such
//!   section), built stripped (`-ldflags=-s -w`), as esbuild's are;
//! - **removed**: `objcopy --remove-section .go.buildinfo` of the plain build (symbols kept);
//! - **wiped**: the section's bytes zeroed in a stripped PIE build (header kept, content gone);
//!
//! and on 1.24/1.25 a `GOEXPERIMENT=noswissmap` build with the section removed (the experiment
//! must be inferred from the runtime's version string). `inspect` must name the version `go
//! version` reads from the intact build, say how it found it, and recover the same build
//! settings; `run` must count exactly what the program counts itself. With every `go1.N`
//! string gone too, the version comes from the layout where that pins it, and is otherwise
//! refused with one clear line.
mod common;
#[path = "support/exact.rs"]
mod exact;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Recipe, Toolchain, Variant};
use ebpf_map_trace::gobin::moduledata::{self, Layout};
use ebpf_map_trace::gobin::{GoBinary, VersionSource};
use object::{Object, ObjectSection};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Release,
    Removed,
    Wiped,
    NoSwissRemoved,
}

impl Kind {
    /// How `inspect` must say it found the version: by symbol where the symbol table is kept.
    fn source(self) -> VersionSource {
        match self {
            Kind::Removed => VersionSource::RuntimeSymbol,
            _ => VersionSource::StringScan,
        }
    }
}

/// One binary without build info, and the intact build it came from (the truth for `go
/// version` and the build settings).
struct Case {
    tc: Toolchain,
    kind: Kind,
    intact: PathBuf,
    bin: PathBuf,
}

impl Case {
    fn label(&self) -> String {
        format!("go{} {:?}", self.tc.version, self.kind)
    }
}

fn scratch() -> PathBuf {
    let d = common::gotest_dir().with_file_name("no-buildinfo-test");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The toolchain's linker without `ctxt.buildinfo()` (cmd/link/internal/ld/main.go), built once
/// per toolchain through `go build -overlay`, and a `-toolexec` wrapper that runs it in place of
/// the toolchain's `link`. Returns the wrapper.
fn release_linker(tc: &Toolchain) -> PathBuf {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let lock = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(tc.version.clone())
        .or_default()
        .clone();
    let _guard = lock.lock().unwrap();
    let dir = common::gotest_dir().join("release-link").join(&tc.version);
    let wrapper = dir.join("toolexec.sh");
    if wrapper.is_file() {
        return wrapper;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let goroot = common::go_tool(tc, &["env", "GOROOT"]);
    let main_go = Path::new(goroot.trim()).join("src/cmd/link/internal/ld/main.go");
    let src = std::fs::read_to_string(&main_go).unwrap();
    assert_eq!(
        src.matches("\n\tctxt.buildinfo()\n").count(),
        1,
        "{}: the buildinfo call to patch out",
        main_go.display()
    );
    let patched = dir.join("main.go");
    std::fs::write(
        &patched,
        src.replace("\n\tctxt.buildinfo()\n", "\n\t// ctxt.buildinfo()\n"),
    )
    .unwrap();
    let overlay = dir.join("overlay.json");
    let replace = serde_json::json!({ "Replace": { main_go.to_str().unwrap(): patched } });
    std::fs::write(&overlay, replace.to_string()).unwrap();
    // The binary must be named `link`: cmd/go checks the tool's `-V=full` answer.
    let link = dir.join("link");
    common::go_tool(
        tc,
        &[
            "build",
            "-overlay",
            overlay.to_str().unwrap(),
            "-o",
            link.to_str().unwrap(),
            "cmd/link",
        ],
    );
    let script = format!(
        "#!/bin/sh\ntool=\"$1\"; shift\ncase \"$tool\" in */link) exec '{}' \"$@\";; esac\nexec \"$tool\" \"$@\"\n",
        link.display()
    );
    let tmp = dir.join("toolexec.sh.tmp");
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &wrapper).unwrap();
    wrapper
}

/// File offset and size of a section.
fn section_range(bytes: &[u8], name: &str) -> Option<(usize, usize)> {
    let file = object::File::parse(bytes).unwrap();
    let s = file.section_by_name(name)?;
    let (off, size) = s.file_range()?;
    Some((off as usize, size as usize))
}

fn objcopy_removed(src: &Path, dst: &Path) {
    let st = Command::new("objcopy")
        .args(["--remove-section", ".go.buildinfo"])
        .arg(src)
        .arg(dst)
        .status()
        .expect("objcopy (binutils) is needed for these tests: apt-get install binutils");
    assert!(st.success(), "objcopy failed on {}", src.display());
}

fn wiped(src: &Path, dst: &Path) {
    let mut bytes = std::fs::read(src).unwrap();
    let (off, size) = section_range(&bytes, ".go.buildinfo").expect("a .go.buildinfo to wipe");
    bytes[off..off + size].fill(0);
    write_executable(dst, &bytes);
}

fn write_executable(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).unwrap();
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn make_case(tc: &Toolchain, kind: Kind) -> Case {
    let out = scratch().join(format!("keys-go{}-{kind:?}", tc.version));
    let (intact, bin) = match kind {
        Kind::Release => {
            let recipe = Recipe {
                name: "release-link".into(),
                flags: vec![format!("-toolexec={}", release_linker(tc).display())],
                env: vec![],
            };
            let intact = common::build("keys", tc, Variant::Stripped);
            (
                intact,
                common::build_recipe("keys", tc, Variant::Stripped, &recipe),
            )
        }
        Kind::Removed => {
            let intact = common::build("keys", tc, Variant::Plain);
            objcopy_removed(&intact, &out);
            (intact, out)
        }
        Kind::Wiped => {
            let recipe = Recipe {
                name: "stripped".into(),
                flags: vec!["-ldflags=-s -w".into()],
                env: vec![],
            };
            let intact = common::build_recipe("keys", tc, Variant::Pie, &recipe);
            wiped(&intact, &out);
            (intact, out)
        }
        Kind::NoSwissRemoved => {
            let recipe = Recipe {
                name: "noswissmap".into(),
                flags: vec![],
                env: vec![("GOEXPERIMENT".into(), "noswissmap".into())],
            };
            let intact = common::build_recipe("keys", tc, Variant::Stripped, &recipe);
            objcopy_removed(&intact, &out);
            (intact, out)
        }
    };
    let bytes = std::fs::read(&bin).unwrap();
    if kind != Kind::Wiped {
        assert_eq!(
            section_range(&bytes, ".go.buildinfo"),
            None,
            "{}: section left",
            bin.display()
        );
    }
    Case {
        tc: tc.clone(),
        kind,
        intact,
        bin,
    }
}

/// Every case: three kinds per toolchain, noswissmap on the toolchains that have it.
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut out = Vec::new();
        for tc in common::toolchains() {
            for kind in [Kind::Release, Kind::Removed, Kind::Wiped] {
                out.push(make_case(&tc, kind));
            }
            if matches!(tc.minor(), 24 | 25) {
                out.push(make_case(&tc, Kind::NoSwissRemoved));
            }
        }
        out
    })
}

fn inspect_json(bin: &Path) -> Value {
    let out = common::run_command(
        Command::new(TRACER).args(["inspect", "--json"]).arg(bin),
        common::RUN_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "inspect {}: {}",
        bin.display(),
        out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap()
}

/// `go version BIN` of the intact build: `go1.24.11` (with ` X:noswissmap` if set).
fn go_version_of(tc: &Toolchain, bin: &Path) -> String {
    let out = common::go_tool(tc, &["version", bin.to_str().unwrap()]);
    out.trim().rsplit(": ").next().unwrap().to_string()
}

#[test]
fn inspect_names_the_version_how_it_was_found_and_the_build_settings() {
    for case in cases() {
        let label = case.label();
        let truth = go_version_of(&case.tc, &case.intact);
        let intact = inspect_json(&case.intact);
        let r = inspect_json(&case.bin);
        assert_eq!(r["go_version"], truth.as_str(), "{label}: version");
        assert_eq!(
            r["go_version_source"],
            case.kind.source().as_str(),
            "{label}: source"
        );
        assert_eq!(
            intact["go_version_source"], "buildinfo",
            "{label}: intact build"
        );
        // Settings come back from the module info the runtime keeps (and the experiment from
        // the version string), equal to what the intact build info records.
        assert_eq!(
            r["build_settings"], intact["build_settings"],
            "{label}: build settings"
        );
        assert_eq!(
            r["map_impl"], intact["map_impl"],
            "{label}: map implementation"
        );
        assert_eq!(r["goid"], intact["goid"], "{label}: goroutine id offset");
        assert_eq!(
            r["map_functions"], intact["map_functions"],
            "{label}: map functions"
        );
        if case.kind == Kind::NoSwissRemoved {
            assert_eq!(r["map_impl"], "classic", "{label}");
            let settings = r["build_settings"].as_array().unwrap();
            assert!(
                settings.contains(&serde_json::json!(["GOEXPERIMENT", "noswissmap"])),
                "{label}: {settings:?}"
            );
        }
        // The layout alone allows this version, and exactly one moduledata layout fits.
        let bin = GoBinary::open(&case.bin).unwrap();
        let minor = case.tc.minor();
        let range = bin.layout_range.range.expect("consistent clues");
        assert!(
            range.contains(minor),
            "{label}: layout range {range} excludes 1.{minor}"
        );
        let md = bin.moduledata.expect("module data");
        assert_eq!(Some(md.layout), Layout::for_minor(minor), "{label}: layout");
        assert_eq!(
            moduledata::consistent_layouts(&bin.elf, md.addr, bin.pclntab_addr),
            vec![md.layout],
            "{label}: layouts that fit"
        );
    }
}

/// Every `go1.` in the file made `gx1.`: no version string is left anywhere.
fn scrubbed(case: &Case) -> PathBuf {
    let bytes = std::fs::read(&case.bin).unwrap();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"go1.") {
            out.extend_from_slice(b"gx1.");
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let p = scratch().join(format!(
        "keys-go{}-{:?}-noversion",
        case.tc.version, case.kind
    ));
    write_executable(&p, &out);
    p
}

/// Toolchains whose binaries no clue tells apart from a neighbour once every version string is
/// gone: 1.19 from 1.18 (same pclntab magic, moduledata layout and runtime functions looked
/// for), and 1.27, the newest known, from whatever comes after it.
const NOT_PINNED_BY_LAYOUT: [u32; 2] = [19, 27];

#[test]
fn without_any_version_string_the_layout_pins_it_or_one_line_says_what_is_missing() {
    for case in cases().iter().filter(|c| c.kind == Kind::Release) {
        let label = case.label();
        let p = scrubbed(case);
        let minor = case.tc.minor();
        let out = common::run_command(
            Command::new(TRACER).arg("inspect").arg("--json").arg(&p),
            common::RUN_TIMEOUT,
        );
        let stderr = &out.stderr;
        if NOT_PINNED_BY_LAYOUT.contains(&minor) {
            assert_eq!(out.status.code(), Some(1), "{label}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{label}: one line: {stderr}");
            for missing in [
                "cannot tell which Go version built it",
                "no .go.buildinfo section",
                "no runtime.buildVersion symbol",
                "no go1.N version string",
                "its layout only narrows it to go1.",
            ] {
                assert!(stderr.contains(missing), "{label}: {missing:?} in {stderr}");
            }
            // `run` refuses it the same way, before starting anything.
            let run = common::run_command(
                Command::new(TRACER).arg("run").arg("--").arg(&p),
                common::RUN_TIMEOUT,
            );
            let run_err = &run.stderr;
            assert_eq!(run.status.code(), Some(1), "{label} run: {run_err}");
            assert!(
                run_err.contains("cannot tell which Go version"),
                "{label}: {run_err}"
            );
            assert!(run.stdout.is_empty(), "{label}: the target ran: {run:?}");
        } else {
            assert!(out.status.success(), "{label}: {stderr}");
            let r: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(r["go_version"], format!("go1.{minor}"), "{label}");
            assert_eq!(
                r["go_version_source"], "pclntab+moduledata layout (range)",
                "{label}"
            );
            assert_eq!(r["go_version_range"], format!("go1.{minor}"), "{label}");
        }
    }
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

#[test]
fn run_counts_exactly_without_build_info() {
    require_root();
    for case in cases() {
        let label = case.label();
        let json = scratch().join("report.json");
        let (program, report) = exact::run_keys(&label, &case.bin, &[], &json);
        assert_eq!(report["lost_events"], 0, "{label}: lost events");
        assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
        let truth = go_version_of(&case.tc, &case.intact);
        assert_eq!(report["target"]["go_version"], truth.as_str(), "{label}");
        exact::assert_counts_match(&label, &program, &report, 20);
    }
}
