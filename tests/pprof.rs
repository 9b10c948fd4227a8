//! `--pprof` and `--folded` (root, real probes): `run` traces the `keys` program (which counts
//! its own writes per writing function) built plain, stripped and PIE by Go 1.19 and 1.21 (classic
//! maps) and 1.26 (Swiss maps); `go tool pprof -top` of the profile shows each writing function's
//! writes equal to the program's own counts, the folded stacks add up to the same counts with
//! frames root first, `-tags` shows the map type and key labels (hashes with `--redact`), and
//! `top` in budget mode writes a profile with estimated writes and folded stacks that agree.
mod common;
#[path = "support/tracer.rs"]
mod tracer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::{go_tool, newest_toolchain, parse_keys, run_output, toolchain, KeysRun, Variant};

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");
/// Classic maps with a `sub rsp` prologue (1.19: the probe's frame walk misses the direct
/// caller), classic maps with `push rbp` (1.21), Swiss maps (1.26).
const VERSIONS: [&str; 3] = ["1.19", "1.21.13", "1.26.6"];
/// Writes per scenario of `keys`: enough for distinct counts, quick to trace.
const WRITES: &str = "3000";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "pprof tests need root (CAP_BPF + CAP_PERFMON) to trace"
    );
}

/// A scratch directory under `target/` (next to the built Go programs), emptied first, so runs
/// leave nothing behind in /tmp.
fn scratch(name: &str) -> PathBuf {
    let dir = common::gotest_dir().with_file_name("pprof-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One traced run of `keys` with both outputs.
struct Traced {
    what: String,
    truth: KeysRun,
    pprof: PathBuf,
    folded: String,
}

impl Traced {
    /// The program's own writes per writing function, over all its maps.
    fn per_function(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for c in &self.truth.counts {
            for (f, n) in &c.funcs {
                *out.entry(f.clone()).or_default() += n;
            }
        }
        out
    }
}

fn trace_keys(bin: &Path, dir: &Path, extra: &[&str]) -> Traced {
    let name = bin.file_name().unwrap().to_string_lossy().to_string();
    let pprof = dir.join(format!("{name}.pb.gz"));
    let folded = dir.join(format!("{name}.folded"));
    let mut args = vec![
        "run",
        "--pprof",
        pprof.to_str().unwrap(),
        "--folded",
        folded.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", bin.to_str().unwrap(), "-n", WRITES]);
    let out = run_output(Path::new(TRACER), &args, common::RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{name}: tracer failed ({}):\n{}",
        out.status,
        out.stderr
    );
    let truth = parse_keys(&common::json_lines(&out.stdout));
    let folded = std::fs::read_to_string(&folded)
        .unwrap_or_else(|e| panic!("{name}: no folded file: {e}\n{}", out.stderr));
    Traced {
        what: name,
        truth,
        pprof,
        folded,
    }
}

/// The matrix, traced once for all tests of this file (two at a time).
fn matrix() -> &'static [Traced] {
    static RUNS: OnceLock<Vec<Traced>> = OnceLock::new();
    RUNS.get_or_init(|| {
        require_root();
        let dir = scratch("matrix");
        let jobs: Vec<PathBuf> = VERSIONS
            .iter()
            .flat_map(|v| {
                let tc = toolchain(v);
                Variant::ALL.map(|var| common::build("keys", &tc, var))
            })
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(jobs.len().div_ceil(2))
                .map(|chunk| {
                    let dir = &dir;
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|b| trace_keys(b, dir, &[]))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    })
}

/// `go tool pprof ARGS FILE` with the newest toolchain.
fn pprof(args: &[&str], file: &Path) -> String {
    let mut all = vec!["tool", "pprof"];
    all.extend_from_slice(args);
    all.push(file.to_str().unwrap());
    go_tool(&newest_toolchain(), &all)
}

/// `-top` rows: function → (flat, cum), inlined and not added together.
fn top_rows(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("flat") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.len() >= 6, "unexpected -top row: {line:?}\n{text}");
        let num = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|_| panic!("not a count: {s:?} in {line:?}"))
        };
        // pprof marks a function seen only inlined with " (inline)".
        let name = cols[5..].join(" ");
        let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
        let (flat, cum) = (num(cols[0]), num(cols[3]));
        let row = rows.entry(name).or_insert((0, 0));
        row.0 += flat;
        row.1 += cum;
    }
    rows
}

/// Folded lines: (frames root first, count).
fn folded_lines(text: &str) -> Vec<(Vec<&str>, u64)> {
    text.lines()
        .map(|l| {
            let (stack, n) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {l:?}"));
            let n = n
                .parse()
                .unwrap_or_else(|_| panic!("bad count in folded line {l:?}"));
            (stack.split(';').collect(), n)
        })
        .collect()
}

#[test]
fn pprof_top_shows_each_writing_functions_exact_count() {
    for t in matrix() {
        let text = pprof(&["-top", "-nodefraction=0", "-nodecount=100000"], &t.pprof);
        let rows = top_rows(&text);
        let expected = t.per_function();
        assert!(expected.len() >= 10, "{}: {expected:?}", t.what);
        for (f, n) in &expected {
            let (flat, cum) = rows
                .get(f)
                .unwrap_or_else(|| panic!("{}: {f} missing from -top:\n{text}", t.what));
            assert_eq!(
                (*flat, *cum),
                (*n, *n),
                "{}: {f} wrote {n} times (its own count); pprof -top says flat {flat}, cum {cum}",
                t.what
            );
        }
        let main = rows["main.main"].1;
        let direct: u64 = expected
            .iter()
            .filter(|(f, _)| *f != "main.writeLocked")
            .map(|(_, n)| n)
            .sum();
        assert!(
            main >= direct,
            "{}: main.main's cum {main} < its writers' {direct}",
            t.what
        );
    }
}

#[test]
fn folded_stacks_add_up_per_writer_and_run_root_to_leaf() {
    for t in matrix() {
        let expected = t.per_function();
        let lines = folded_lines(&t.folded);
        let mut per_writer: BTreeMap<String, u64> = BTreeMap::new();
        for (frames, n) in &lines {
            assert!(frames.len() >= 2, "{}: {frames:?}", t.what);
            let writer = frames[frames.len() - 2];
            let leaf = frames[frames.len() - 1];
            if !expected.contains_key(writer) {
                continue;
            }
            *per_writer.entry(writer.to_string()).or_default() += n;
            // The leaf is the map type this function writes.
            assert!(
                t.truth
                    .counts
                    .iter()
                    .any(|c| c.funcs.contains_key(writer) && c.type_name == leaf),
                "{}: leaf {leaf:?} is not a map type {writer} writes: {frames:?}",
                t.what
            );
            // Root first: the goroutine's start, then main.main (or its closure), then the writer.
            assert_eq!(frames[0], "runtime.goexit", "{}: {frames:?}", t.what);
            let main_at = frames
                .iter()
                .position(|f| *f == "main.main" || f.starts_with("main.main."))
                .unwrap_or_else(|| panic!("{}: no main.main in {frames:?}", t.what));
            assert!(
                main_at < frames.len() - 2,
                "{}: main.main after {writer}: {frames:?}",
                t.what
            );
            if writer != "main.writeLocked" {
                assert_eq!(
                    &frames[main_at - 1..],
                    ["runtime.main", "main.main", writer, leaf],
                    "{}",
                    t.what
                );
            }
        }
        assert_eq!(
            per_writer, expected,
            "{}: folded writes per writer vs the program's own counts",
            t.what
        );
    }
}

/// `-tags` sections: label → value → count.
fn tags(text: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some((label, rest)) = l.split_once(": Total ") {
            let _ = rest;
            current = Some(label.to_string());
        } else if let (Some(label), Some((n, v))) = (&current, l.split_once(" (")) {
            if let (Ok(n), Some((_, value))) = (n.trim().parse::<u64>(), v.split_once("): ")) {
                out.entry(label.clone())
                    .or_default()
                    .insert(value.to_string(), n);
            }
        }
    }
    out
}

#[test]
fn pprof_tags_show_map_types_and_keys_or_their_hashes() {
    let t = &matrix()[VERSIONS.len() * Variant::ALL.len() - 3]; // 1.26 plain
    let text = pprof(&["-tags"], &t.pprof);
    let labels = tags(&text);
    let structs = t.truth.counts("struct");
    let top = &structs.keys[0];
    assert_eq!(
        labels.get("map").and_then(|m| m.get(&structs.type_name)),
        Some(&structs.total),
        "{}: label map={} in -tags:\n{text}",
        t.what,
        structs.type_name
    );
    assert_eq!(
        labels.get("key").and_then(|m| m.get(&top.key)),
        Some(&top.writes),
        "{}: label key={} in -tags:\n{text}",
        t.what,
        top.key
    );

    // --redact: the key label is the key's hash, never its text.
    let dir = scratch("redact");
    let bin = common::build(
        "keys",
        &toolchain(VERSIONS[VERSIONS.len() - 1]),
        Variant::Plain,
    );
    let r = trace_keys(&bin, &dir, &["--redact"]);
    let text = pprof(&["-tags"], &r.pprof);
    let keys = tags(&text).remove("key").unwrap_or_default();
    let top = &r.truth.counts("struct").keys[0];
    assert_eq!(
        keys.get(&common::key_hash(&top.key)),
        Some(&top.writes),
        "hash of {:?}:\n{text}",
        top.key
    );
    assert!(
        !keys.keys().any(|k| k.contains("user:")),
        "a key's text leaked with --redact:\n{text}"
    );
}

#[test]
fn top_in_budget_mode_writes_an_estimated_profile_and_folded_stacks() {
    require_root();
    let dir = scratch("top");
    let (pprof_file, folded_file) = (dir.join("top.pb.gz"), dir.join("top.folded"));
    let bin = common::build("workload", &newest_toolchain(), Variant::Plain);
    let target = common::GoProcess::start_waiting(&bin, &["-rate", "20000", "-duration", "3"]);
    let pid = target.pid().to_string();
    let mut tracer = std::process::Command::new(TRACER)
        .args([
            "top",
            "-p",
            &pid,
            "--once",
            "--json",
            "--duration",
            "60",
            "--pprof",
            pprof_file.to_str().unwrap(),
            "--folded",
            folded_file.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (
        common::read_all(tracer.stdout.take().unwrap()),
        common::read_all(tracer.stderr.take().unwrap()),
    );
    // The tracer has attached when it created the files and its probes are on: wait for a link.
    let t0 = std::time::Instant::now();
    while !tracer::holds_target_link(tracer.id()) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "tracer never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    target.release();
    let truth = common::parse_workload(&target.finish());
    let status = common::wait_or_kill(&mut tracer, Duration::from_secs(60), "top --once");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "top failed:\n{out}\n{err}");

    let raw = pprof(&["-raw"], &pprof_file);
    assert!(
        raw.contains("writes/count writes_estimated/count[dflt]"),
        "sample types:\n{raw}"
    );
    let observed = top_rows(&pprof(
        &["-top", "-sample_index=writes", "-nodefraction=0"],
        &pprof_file,
    ));
    let estimated = top_rows(&pprof(
        &["-top", "-sample_index=writes_estimated", "-nodefraction=0"],
        &pprof_file,
    ));
    let seen = observed.get("main.writeKey").map(|r| r.0).unwrap_or(0);
    let est = estimated.get("main.writeKey").map(|r| r.0).unwrap_or(0);
    let written = truth.done.writes;
    // Budget mode observes part of the writes (all of them when the target is slow enough to
    // afford it: a loaded machine starves the program).
    assert!(
        seen > 0 && seen <= written,
        "budget mode observed {seen} of the program's {written} writes"
    );
    // The profile's estimated writes against the program's own count, within the bound the
    // tracer states for its estimates (a 3-sigma sampling bound plus a bias fraction of the
    // estimate; the report's `error_bound` per key): the hottest key's bound as a fraction of
    // its estimate, which bounds the total's fraction (the bias fraction is the same, and the
    // sampling part is a smaller fraction the more writes it covers). Per key the profile holds
    // each stack's guaranteed counts (a sketch of 8 keys per stack), so its total is what is
    // checked; the report's keys are checked against the program's in `live`.
    let report = common::json_lines(&out).pop().expect("a JSON report");
    let map = report["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "map[string]int" && m["sites"][0]["function"] == "main.writeKey")
        .unwrap_or_else(|| panic!("no map[string]int of main.writeKey in {report}"));
    let hot = &map["top_keys"][0];
    let (hot_est, hot_bound) = (
        hot["writes_estimated"].as_f64().unwrap(),
        hot["error_bound"].as_f64().unwrap(),
    );
    let total_bound = est as f64 * hot_bound / hot_est.max(1.0);
    assert!(
        (est as f64 - written as f64).abs() <= total_bound,
        "the profile estimates {est} writes of main.writeKey, the program made {written} (bound ±{total_bound:.0}, observed {seen})\n{err}"
    );
    let folded = std::fs::read_to_string(&folded_file).unwrap();
    let in_folded: u64 = folded_lines(&folded)
        .iter()
        .filter(|(f, _)| f.ends_with(&["main.writeKey", "map[string]int"]))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        in_folded, seen,
        "folded vs pprof observed writes:\n{folded}"
    );
}

/// Writes made from an inlined method appear under that method, inside the functions it was
/// inlined into, on every Go version whose inline trees are read (1.18–1.27).
#[test]
fn inlined_writers_are_frames_of_their_own() {
    require_root();
    let dir = scratch("inlined");
    let builds = [
        ("1.19", Variant::Plain),
        ("1.21.13", Variant::Plain),
        ("1.26.6", Variant::Plain),
        ("1.26.6", Variant::Stripped),
        ("1.26.6", Variant::Pie),
        ("1.27.3", Variant::Plain),
        ("1.27.3", Variant::Stripped),
    ];
    for (v, variant) in builds {
        let bin = common::build("inlined", &toolchain(v), variant);
        let what = format!("inlined go{v} {}", variant.name());
        let (pprof_file, folded_file) = (dir.join("p.pb.gz"), dir.join("f.folded"));
        let out = run_output(
            Path::new(TRACER),
            &[
                "run",
                "--pprof",
                pprof_file.to_str().unwrap(),
                "--folded",
                folded_file.to_str().unwrap(),
                "--",
                bin.to_str().unwrap(),
                "-n",
                "3000",
            ],
            common::RUN_TIMEOUT,
        );
        assert!(out.status.success(), "{what}: {}", out.stderr);
        let done = common::json_lines(&out.stdout).pop().expect("a done line");
        let (via_loop, via_direct) = (
            done["loop"].as_u64().unwrap(),
            done["direct"].as_u64().unwrap(),
        );
        let folded = std::fs::read_to_string(&folded_file).unwrap();
        let count = |chain: &[&str]| -> u64 {
            folded_lines(&folded)
                .iter()
                .filter(|(f, _)| f.ends_with(chain))
                .map(|(_, n)| n)
                .sum()
        };
        let touch = "main.(*Store).touch";
        assert_eq!(
            count(&[
                "main.main",
                "main.loop",
                "main.record",
                touch,
                "map[string]int"
            ]),
            via_loop,
            "{what}: folded:\n{folded}"
        );
        assert_eq!(
            count(&["main.main", "main.direct", touch, "map[string]int"]),
            via_direct,
            "{what}: folded:\n{folded}"
        );
        let text = pprof(&["-top", "-nodefraction=0"], &pprof_file);
        let rows = top_rows(&text);
        assert_eq!(
            rows.get(touch).map(|r| r.0),
            Some(via_loop + via_direct),
            "{what}: {touch} flat in:\n{text}"
        );
        assert_eq!(
            rows.get("main.record").map(|r| r.1),
            Some(via_loop),
            "{what}: main.record cum in:\n{text}"
        );
    }
}

/// The inline trees' base (`moduledata.gofunc`, read by field offset so that stripped binaries
/// work) is the `go:func.*` symbol on every toolchain of the matrix. No root needed.
#[test]
fn gofunc_base_is_the_go_func_symbol_on_every_toolchain() {
    for tc in common::toolchains() {
        let bin = common::build("keys", &tc, Variant::Plain);
        let go = ebpf_map_trace::gobin::GoBinary::open(&bin).unwrap();
        let symbol = go
            .elf
            .symbol("go:func.*")
            .or_else(|| go.elf.symbol("go.func.*"));
        assert!(symbol.is_some(), "go{}: no go:func.* symbol", tc.version);
        assert_eq!(
            go.moduledata.and_then(|m| m.gofunc),
            symbol,
            "go{}: moduledata.gofunc",
            tc.version
        );
    }
}
