//! Test support for the integration tests (`tests/common`, owned by the test suite; use it with
//! `mod common;`): finds the Go toolchains installed by `./setup`, builds the Go test programs of
//! `tests/go/<prog>/` for every toolchain and build variant (cached by source hash under
//! `target/gotest/`), runs them, and parses their JSON-lines output into plain structs.
//!
//! The test programs count their own map writes exactly, so their output is the ground truth a
//! tracer's report is compared with:
//! - `keys`: one map per key-type scenario ([`KEYS_SCENARIOS`]), see [`KeysRun`];
//! - `growth`: `-n` distinct keys into one map made with `-hint`, see [`GrowthRun`];
//! - `workload`: string-key writes in a tight or paced loop, for benchmarks, see [`WorkloadRun`].
//!
//! All three accept `-wait`: they print `{"event":"ready","pid":P}` and write nothing until they
//! get SIGUSR1 ([`GoProcess::start_waiting`] and [`GoProcess::release`]).
#![allow(dead_code)]

pub mod probes;
pub mod tmux;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The Go versions the tests run against, oldest first.
pub const GO_VERSIONS: [&str; 8] = [
    "1.19", "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

/// How long a test program may run before [`run`] kills it and fails the test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// At most this many `go build`s run at once in one test process (the machine has 2 cores).
const MAX_PARALLEL_BUILDS: usize = 2;

/// Part of every build hash: bump it when the build recipe below changes.
const BUILD_RECIPE: &str = "gotest-build-v1";

/// One installed Go toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// e.g. "1.26.6" ("1.19" for Debian's Go 1.19, which is 1.19.8).
    pub version: String,
    /// The `go` command.
    pub go: PathBuf,
}

impl Toolchain {
    /// The minor version: 26 for "1.26.6".
    pub fn minor(&self) -> u32 {
        self.version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("bad Go version {:?}", self.version))
    }

    /// Whether this toolchain's maps are Swiss tables by default (Go 1.24+).
    pub fn swiss_maps(&self) -> bool {
        self.minor() >= 24
    }
}

/// All toolchains of [`GO_VERSIONS`], in that order. Panics if one is not installed.
/// `EBPF_MAP_TRACE_TEST_GO=1.19,1.21.13` keeps only those (to run a matrix test on a few).
pub fn toolchains() -> Vec<Toolchain> {
    let only = std::env::var("EBPF_MAP_TRACE_TEST_GO").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|v| !v.is_empty()).collect();
    GO_VERSIONS
        .iter()
        .filter(|v| only.is_empty() || only.contains(v))
        .map(|v| toolchain(v))
        .collect()
}

/// The toolchain of one of [`GO_VERSIONS`]. Panics if it is not installed.
pub fn toolchain(version: &str) -> Toolchain {
    let go = if version == "1.19" {
        PathBuf::from("/usr/lib/go-1.19/bin/go")
    } else {
        manifest_dir()
            .join(".cache/go")
            .join(version)
            .join("bin/go")
    };
    assert!(
        go.is_file(),
        "Go {version} toolchain not found at {}: run ./setup",
        go.display()
    );
    Toolchain {
        version: version.to_string(),
        go,
    }
}

/// The newest toolchain of [`GO_VERSIONS`].
pub fn newest_toolchain() -> Toolchain {
    toolchain(GO_VERSIONS[GO_VERSIONS.len() - 1])
}

/// How a test program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `go build`: symbols, DWARF, fixed load address.
    Plain,
    /// `go build -ldflags=-s -w`: no symbol table, no DWARF (pclntab remains).
    Stripped,
    /// `go build -buildmode=pie`: position-independent, loaded at a random address.
    Pie,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Plain, Variant::Stripped, Variant::Pie];

    /// "plain", "stripped" or "pie" (used in binary names).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
        }
    }

    /// The extra `go build` flags.
    pub fn build_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Plain => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
        }
    }

    /// Whether the binary has an ELF symbol table (`go tool nm`/`objdump` work on it).
    pub fn has_symbols(self) -> bool {
        self != Variant::Stripped
    }
}

/// The crate root (`CARGO_MANIFEST_DIR`).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/gotest` (under `CARGO_TARGET_DIR` if that is set): built programs and Go caches.
pub fn gotest_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => manifest_dir().join(dir),
        _ => manifest_dir().join("target"),
    };
    target.join("gotest")
}

/// Builds the test program `tests/go/<prog>/` (all its `.go` files) with `tc` as `v`, or returns
/// the binary built earlier from the same sources: `target/gotest/<prog>/<hash>/<prog>-go<version>-<variant>`.
/// Safe to call from many threads and processes at once. Panics with Go's output if the build fails.
pub fn build(prog: &str, tc: &Toolchain, v: Variant) -> PathBuf {
    build_recipe(prog, tc, v, &Recipe::default())
}

/// Like [`build`], for the example program `examples/<name>/`.
pub fn build_example(name: &str, tc: &Toolchain, v: Variant) -> PathBuf {
    build_dir(
        &manifest_dir().join("examples").join(name),
        &format!("example-{name}"),
        name,
        tc,
        v,
        &Recipe::default(),
    )
}

/// A build beyond [`Variant`]: extra `go build` flags and environment (e.g. a `-toolexec`
/// linker, `GOEXPERIMENT=noswissmap`), part of the build hash and named in the file name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipe {
    /// Appended to the binary's file name: `keys-go1.24.11-stripped-<name>`.
    pub name: String,
    pub flags: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Like [`build`], with the extra flags and environment of `recipe`.
pub fn build_recipe(prog: &str, tc: &Toolchain, v: Variant, recipe: &Recipe) -> PathBuf {
    build_dir(
        &manifest_dir().join("tests/go").join(prog),
        prog,
        prog,
        tc,
        v,
        recipe,
    )
}

/// Every toolchain × variant of `prog`, built (at most two builds at once), in the order of
/// [`toolchains`] then [`Variant::ALL`].
pub fn matrix(prog: &str) -> Vec<(Toolchain, Variant, PathBuf)> {
    let tcs = toolchains();
    let mut jobs = Vec::new();
    // Variant-major, so that the two concurrent builds use different toolchains (and Go caches).
    for v in Variant::ALL {
        for tc in &tcs {
            jobs.push((tc.clone(), v));
        }
    }
    let next = AtomicUsize::new(0);
    let built: Mutex<Vec<(Toolchain, Variant, PathBuf)>> = Mutex::new(Vec::new());
    thread::scope(|s| {
        let workers: Vec<_> = (0..MAX_PARALLEL_BUILDS)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((tc, v)) = jobs.get(i) else { break };
                    let bin = build(prog, tc, *v);
                    lock(&built).push((tc.clone(), *v, bin));
                })
            })
            .collect();
        for w in workers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let mut built = built.into_inner().unwrap_or_else(PoisonError::into_inner);
    let rank = |tc: &Toolchain, v: Variant| {
        let t = GO_VERSIONS.iter().position(|x| *x == tc.version).unwrap();
        let v = Variant::ALL.iter().position(|x| *x == v).unwrap();
        (t, v)
    };
    built.sort_by_key(|(tc, v, _)| rank(tc, *v));
    built
}

/// A copy of the built program `bin` under `target/tmp/<name>/` (same file name): a path and
/// inode of one test's own, for `--binary` tests (the tracer follows every process of an
/// executable, and tests run at the same time). Waits until the copy can be executed: a process
/// forked by another test thread while the copy was open for writing holds that descriptor
/// until it execs, and exec fails with ETXTBSY until then.
pub fn private_copy(bin: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let copy = dir.join(bin.file_name().expect("a file name"));
    fs::copy(bin, &copy)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", bin.display(), copy.display()));
    let t0 = Instant::now();
    while let Err(e) = Command::new(&copy).arg("-h").output() {
        assert!(
            e.raw_os_error() == Some(libc::ETXTBSY) && t0.elapsed() < Duration::from_secs(10),
            "cannot run {}: {e}",
            copy.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
    copy
}

/// Runs `go <args>` with `tc` (e.g. `["tool", "nm", bin]`, `["version", "-m", bin]`) and returns
/// its stdout. Panics with its stderr if it fails.
pub fn go_tool(tc: &Toolchain, args: &[&str]) -> String {
    let out = go_command(tc)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tc.go.display()));
    assert!(
        out.status.success(),
        "go {} (Go {}) failed ({}):\n{}",
        args.join(" "),
        tc.version,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("go's output is UTF-8")
}

/// A `go` command with an environment of its own: GOPATH mode, local toolchain only, caches and
/// HOME under [`gotest_dir`], nothing inherited that changes code generation.
fn go_command(tc: &Toolchain) -> Command {
    let root = gotest_dir();
    let home = root.join("home");
    let gopath = root.join("gopath");
    for dir in [&home, &gopath] {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    let mut cmd = Command::new(&tc.go);
    for var in [
        "GOROOT",
        "GOFLAGS",
        "GOOS",
        "GOARCH",
        "GOAMD64",
        "GOEXPERIMENT",
        "GOBIN",
        "GOWORK",
        "GODEBUG",
        "GOMODCACHE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GO111MODULE", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env("GOCACHE", root.join(format!("gocache-{}", tc.version)))
        .env("GOPATH", &gopath)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"));
    cmd
}

/// FNV-1a, 64 bits: a stable hash written out here so that build paths never change.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes a length-prefixed field, so that field boundaries matter.
    fn field(&mut self, bytes: &[u8]) {
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn build_dir(
    src: &Path,
    out_name: &str,
    bin_name: &str,
    tc: &Toolchain,
    v: Variant,
    recipe: &Recipe,
) -> PathBuf {
    let mut files: Vec<String> = fs::read_dir(src)
        .unwrap_or_else(|e| panic!("cannot read Go program dir {}: {e}", src.display()))
        .map(|e| {
            e.expect("readdir")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".go") && !n.ends_with("_test.go"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .go files in {}", src.display());

    let mut h = Fnv::new();
    h.field(BUILD_RECIPE.as_bytes());
    h.field(bin_name.as_bytes());
    for f in &files {
        let bytes = fs::read(src.join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
        h.field(f.as_bytes());
        h.field(&bytes);
    }
    h.field(tc.version.as_bytes());
    h.field(v.name().as_bytes());
    let mut file_name = format!("{bin_name}-go{}-{}", tc.version, v.name());
    if *recipe != Recipe::default() {
        h.field(recipe.name.as_bytes());
        for f in &recipe.flags {
            h.field(f.as_bytes());
        }
        for (k, val) in &recipe.env {
            h.field(k.as_bytes());
            h.field(val.as_bytes());
        }
        file_name = format!("{file_name}-{}", recipe.name);
    }
    let out = gotest_dir()
        .join(out_name)
        .join(format!("{:016x}", h.0))
        .join(&file_name);
    if out.is_file() {
        return out;
    }

    // One build per output in this process; other processes may race us: both rename a complete
    // binary into place, and the last one wins.
    let path_lock = {
        static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
        let mut locks = lock(LOCKS.get_or_init(Default::default));
        locks.entry(out.clone()).or_default().clone()
    };
    let _building = lock(&path_lock);
    if out.is_file() {
        return out;
    }
    let _slot = BuildSlot::acquire();

    let dir = out.parent().unwrap();
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);
    let tmp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let started = Instant::now();
    let result = go_command(tc)
        .current_dir(src)
        .arg("build")
        .arg("-buildvcs=false")
        .arg("-o")
        .arg(&tmp)
        .args(v.build_flags())
        .args(&recipe.flags)
        .envs(recipe.env.iter().map(|(k, v)| (k, v)))
        // The directory, not its files: files of other Go versions (`//go:build go1.21`) are
        // left out as they should be (a list of files would compile them all).
        .arg(".")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tc.go.display()));
    if !result.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "go build of {} with Go {} ({}) failed ({}):\n{}{}",
            src.display(),
            tc.version,
            v.name(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), out.display()));
    eprintln!(
        "built {} in {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    out
}

/// A slot of the process-wide limit of concurrent `go build`s.
struct BuildSlot;

static SLOTS_USED: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

impl BuildSlot {
    fn acquire() -> BuildSlot {
        let mut used = lock(&SLOTS_USED);
        while *used >= MAX_PARALLEL_BUILDS {
            used = SLOT_FREED
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += 1;
        BuildSlot
    }
}

impl Drop for BuildSlot {
    fn drop(&mut self) {
        *lock(&SLOTS_USED) -= 1;
        SLOT_FREED.notify_one();
    }
}

/// Locks, ignoring poisoning (a panicking test must not fail the others).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Running programs

/// What a finished program printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Tests whose numbers depend on the target's CPU time (budget estimates, growth durations)
/// must not share the machine with another test of their binary: a paced loop starved of CPU
/// writes in catch-up bursts that short windows sample unevenly (40 % low in CI), and a starved
/// program's first growths took longer than its largest. Such a test holds [`alone`]; every
/// other test of its binary holds [`among_others`].
static CPU: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(PoisonError::into_inner)
}

pub fn among_others() -> std::sync::RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(PoisonError::into_inner)
}

/// The writes per key of a program's `counts` line (its `keys`).
pub fn key_writes(counts: &Value) -> HashMap<&str, u64> {
    counts["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap(), k["writes"].as_u64().unwrap()))
        .collect()
}

/// Checks a report made with `--top top_n` against the `counts` lines of a program that counts its
/// own writes (`stress`, `stackgrow`: `scenarios` of them, each with its writing `func`): per scenario,
/// the maps written from its function hold exactly its writes and distinct keys; each map lists
/// `top_n` keys (or all it has), every one with its true count; a scenario's only map ranks the
/// program's most written keys.
pub fn assert_counts_by_function(
    label: &str,
    program: &[Value],
    report: &Value,
    top_n: usize,
    scenarios: usize,
) {
    let maps = report["maps"].as_array().expect("report maps");
    let mut seen = 0;
    for c in program.iter().filter(|v| v["event"] == "counts") {
        seen += 1;
        let sc = c["scenario"].as_str().unwrap();
        let func = c["func"].as_str().unwrap();
        let ours: Vec<&Value> = maps
            .iter()
            .filter(|m| {
                m["sites"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["function"] == func)
            })
            .collect();
        assert!(!ours.is_empty(), "{label} {sc}: no map written from {func}");
        for m in &ours {
            assert_eq!(m["type"], c["type"], "{label} {sc}: map type");
        }
        let writes: u64 = ours.iter().map(|m| m["writes"].as_u64().unwrap()).sum();
        assert_eq!(writes, c["total"].as_u64().unwrap(), "{label} {sc}: writes");
        let distinct: u64 = ours
            .iter()
            .map(|m| m["distinct_keys"].as_u64().unwrap())
            .sum();
        assert_eq!(
            distinct,
            c["distinct"].as_u64().unwrap(),
            "{label} {sc}: distinct keys"
        );
        let truth = key_writes(c);
        for m in &ours {
            let top = m["top_keys"].as_array().unwrap();
            let distinct = m["distinct_keys"].as_u64().unwrap() as usize;
            assert_eq!(
                top.len(),
                top_n.min(distinct),
                "{label} {sc}: top keys of map {}",
                m["id"]
            );
            for k in top {
                let key = k["key"].as_str().unwrap();
                assert_eq!(
                    truth.get(key).copied(),
                    k["writes"].as_u64(),
                    "{label} {sc}: key {key:?}"
                );
            }
        }
        // A scenario with one map: its top keys are the program's most written, in order.
        if let [m] = ours[..] {
            let counts: Vec<u64> = m["top_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["writes"].as_u64().unwrap())
                .collect();
            let want: Vec<u64> = c["keys"]
                .as_array()
                .unwrap()
                .iter()
                .take(top_n)
                .map(|k| k["writes"].as_u64().unwrap())
                .collect();
            assert_eq!(counts, want, "{label} {sc}: ranking of the top {top_n}");
        }
    }
    assert_eq!(
        seen, scenarios,
        "{label}: the program printed {seen} scenarios"
    );
}

/// Runs the test program `bin` untraced, then under `ebpf-map-trace run --top TOP --json
/// DIR/LABEL.json`, and checks that the tracer ran, harmed nothing (the program printed the same)
/// and lost or misread nothing. Returns the program's JSON lines and the report.
pub fn run_untraced_and_traced(
    label: &str,
    bin: &Path,
    dir: &Path,
    top: usize,
) -> (Vec<Value>, Value) {
    let plain = run_output(bin, &[], RUN_TIMEOUT);
    assert!(
        plain.status.success(),
        "{label}: untraced run failed: {}",
        plain.stderr
    );
    let json = dir.join(format!("{}.json", label.replace(' ', "-")));
    let traced = run_output(
        Path::new(env!("CARGO_BIN_EXE_ebpf-map-trace")),
        &[
            "run",
            "--top",
            &top.to_string(),
            "--json",
            json.to_str().unwrap(),
            "--",
            bin.to_str().unwrap(),
        ],
        RUN_TIMEOUT,
    );
    assert_eq!(
        traced.status.code(),
        Some(0),
        "{label}: traced run failed: {}",
        traced.stderr
    );
    assert!(
        traced.stdout == plain.stdout,
        "{label}: output differs when traced:\n--- untraced\n{}\n--- traced\n{}",
        plain.stdout,
        traced.stdout
    );
    let report: Value =
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).expect("report JSON");
    assert_eq!(report["lost_events"], 0, "{label}: lost events");
    assert_eq!(report["read_failures"], 0, "{label}: unreadable keys");
    (json_lines(&plain.stdout), report)
}

/// Runs `bin args...` to completion (killing it after `timeout`) and returns what it printed.
pub fn run_output(bin: &Path, args: &[&str], timeout: Duration) -> Output {
    run_command(Command::new(bin).args(args), timeout)
}

/// Runs `cmd` (stdin from /dev/null) to completion and returns what it printed. The watchdog:
/// if it has not exited within `timeout`, its whole process group (it leads one of its own, so
/// children it started die with it and release the pipes) is killed with SIGKILL and the test
/// fails, naming the command and its stderr so far.
pub fn run_command(cmd: &mut Command, timeout: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());
    let Some(status) = wait_timeout(&mut child, timeout) else {
        kill_group(&mut child);
        panic!(
            "{what} did not finish within {timeout:?} (killed); stderr:\n{}",
            stderr.join().unwrap_or_default()
        )
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// SIGKILLs the process group `child` leads (started with `process_group(0)`) and reaps it.
pub fn kill_group(child: &mut Child) {
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the group is our own child's.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// SIGKILLs process `pid` and every process it started (found through
/// `/proc/PID/task/*/children`, children first stopped, then killed, so none escapes by forking
/// meanwhile). For a child of the test that may have children of its own (a `run -- CMD`
/// tracer, a server): what a failed test must not leave running.
pub fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        // SAFETY: kill(2) has no memory-safety preconditions; these are our child's processes.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGSTOP) };
        let tasks = fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for t in tasks.flatten() {
            let children = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    for p in all {
        // SAFETY: as above.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
}

/// A child of the test that ends with the guard: dropped before it was reaped (a failed
/// assertion on the way), it is killed with every process it started ([`kill_tree`]) and
/// reaped. Use it as the `Child` it derefs to.
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            kill_tree(self.0.id());
            let _ = self.0.wait();
        }
    }
}

/// Fails unless a program that was expected to stop by itself stopped without crashing: not
/// killed by a signal (SIGSEGV, SIGABRT, ...) and not a Rust panic (exit status 101).
pub fn assert_no_crash(status: ExitStatus, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "{what}: killed by signal {:?} ({status})",
        status.signal()
    );
    assert_ne!(status.code(), Some(101), "{what}: panicked ({status})");
}

/// The whitespace-separated words of `text`, each stripped of surrounding quotes and
/// punctuation (`'"`,;:()[]{}<>`), for checks anchored to whole tokens: `has_token(s, "0")`
/// is met by `invalid value '0'` but not by `10` or `0.5`.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| "'\"`,;:()[]{}<>".contains(c)))
}

/// Whether `token` is one of [`tokens`] of `text`.
pub fn has_token(text: &str, token: &str) -> bool {
    tokens(text).any(|t| t == token)
}

/// Whether `words` occur in `text` as consecutive whole [`tokens`] (`&["2", "processes"]` is met
/// by `watching 2 processes` but not by `12 processes`).
pub fn has_words(text: &str, words: &[&str]) -> bool {
    let all: Vec<&str> = tokens(text).collect();
    all.windows(words.len()).any(|w| w == words)
}

/// The tracer's `--redact` form of a key, written out here from its definition (FNV-1a 64 of
/// the key as printed, `#` and 16 hex digits), so that tests do not take it from the tracer.
pub fn key_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("#{h:016x}")
}

/// The metric families `serve` exports, as README.md ("serve") documents them for users: name
/// and OpenMetrics type. Written out here, not taken from the exporter, so that a family the
/// exporter drops or renames fails the tests that scrape it.
pub const METRIC_FAMILIES: [(&str, &str); 13] = [
    ("gomap_writes_total", "counter"),
    ("gomap_deletes_total", "counter"),
    ("gomap_clears_total", "counter"),
    ("gomap_map_writes_per_second", "gauge"),
    ("gomap_hot_key_writes_per_second", "gauge"),
    ("gomap_key_writes_per_second", "histogram"),
    ("gomap_grows_total", "counter"),
    ("gomap_map_len", "gauge"),
    ("gomap_map_load", "gauge"),
    ("gomap_probe_coverage_ratio", "gauge"),
    ("gomap_lost_events_total", "counter"),
    ("gomap_estimated_overhead_percent", "gauge"),
    ("gomap_targets", "gauge"),
];

/// Whether `token` has the form of a redacted key: `#` and 16 lowercase hex digits.
pub fn is_key_hash(token: &str) -> bool {
    token.strip_prefix('#').is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The N of trace's closing line `ebpf-map-trace: N writes not shown (over --max-rate R/s); ...`
/// in `stderr`; fails the test if there is no such line.
pub fn writes_not_shown(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("ebpf-map-trace: ")?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("writes not shown ")
                .then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no `N writes not shown` line in: {stderr}"))
}

/// The peak RSS docs/reliability.md states for `command` (`run`, `top`, `trace`, `serve`)
/// tracing a binary of `binary_size` bytes: its "Peak memory" table row naming the command
/// (in backquotes) reads `N MiB + 3 × the binary`. Fails the test if the docs say otherwise.
pub fn stated_peak_rss(command: &str, binary_size: u64) -> u64 {
    let path = manifest_dir().join("docs/reliability.md");
    let docs = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = format!("`{command}`");
    let cells: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c.contains(&name)))
        .unwrap_or_else(|| panic!("{}: no table row for {name}", path.display()));
    let mib: u64 = cells
        .get(1)
        .and_then(|c| c.strip_suffix(" MiB + 3 × the binary"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: the row of {name} does not read `N MiB + 3 × the binary`: {cells:?}",
                path.display()
            )
        });
    (mib << 20) + 3 * binary_size
}

/// A process's peak RSS so far (`VmHWM`), in bytes; `None` once it is gone.
pub fn vm_hwm_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Prints why a part of a test does not run, in the one form the suite uses for it. Written to
/// the process's stderr directly, so the test harness shows it even for passing tests.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Runs `bin args...`, requires exit status 0, and returns its stdout as JSON values, one a line.
pub fn run(bin: &Path, args: &[&str]) -> Vec<Value> {
    let out = run_output(bin, args, RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}",
        bin.display(),
        args.join(" "),
        out.status,
        out.stderr
    );
    json_lines(&out.stdout)
}

/// Parses JSON lines; panics on a line that is not a JSON object.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}"));
            assert!(v.is_object(), "not a JSON object: {l:?}");
            v
        })
        .collect()
}

/// Reads a child's pipe to its end on a thread of its own (a full pipe would block the child).
pub fn read_all(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` to exit by itself within `timeout` and returns its status; if it has not,
/// SIGKILLs it (the watchdog: a hang fails the test instead of blocking it) and fails the test.
pub fn wait_or_kill(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    if let Some(status) = wait_timeout(child, timeout) {
        return status;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what}: still running after {timeout:?} (killed)");
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A running test program whose stdout is read line by line, e.g. one started with `-wait` so
/// that a tracer can attach to its pid before it writes anything:
///
/// ```ignore
/// let mut p = GoProcess::start_waiting(&bin, &["-n", "2000"]);
/// // ... attach to p.pid() ...
/// p.release();
/// let run = parse_keys(&p.finish());
/// ```
///
/// Dropping it kills the program (and what it started) if it is still running.
pub struct GoProcess {
    child: Child,
    exited: bool,
    what: String,
    lines: Receiver<String>,
    seen: Vec<Value>,
    stderr: Option<JoinHandle<String>>,
}

impl GoProcess {
    /// Starts `bin args...` with stdout piped.
    pub fn spawn(bin: &Path, args: &[&str]) -> GoProcess {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(read_all(child.stderr.take().unwrap()));
        GoProcess {
            child,
            exited: false,
            what: format!("{} {}", bin.display(), args.join(" ")),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Starts `bin args... -wait` and waits (up to [`RUN_TIMEOUT`]) for its
    /// `{"event":"ready","pid":P}` line, checking that P is its pid. It then writes nothing
    /// until [`GoProcess::release`].
    pub fn start_waiting(bin: &Path, args: &[&str]) -> GoProcess {
        let mut all: Vec<&str> = args.to_vec();
        all.push("-wait");
        let mut p = GoProcess::spawn(bin, &all);
        loop {
            let Some(line) = p.next_line(RUN_TIMEOUT) else {
                let stderr = p.stderr_now();
                panic!("{}: no ready line; stderr:\n{stderr}", p.what);
            };
            if line["event"] == "ready" {
                assert_eq!(
                    line["pid"].as_u64(),
                    Some(u64::from(p.pid())),
                    "{}: ready line with the wrong pid: {line}",
                    p.what
                );
                return p;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGUSR1: a program started with `-wait` starts writing.
    pub fn release(&self) {
        self.signal(libc::SIGUSR1);
    }

    /// Sends `sig` to the program.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child's.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next stdout line as JSON, or None if none came within `timeout` or stdout closed.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                let v = json_lines(&line).into_iter().next()?;
                self.seen.push(v.clone());
                Some(v)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// Whether the program has exited (without reaping it).
    pub fn has_exited(&mut self) -> bool {
        self.exited || self.child.try_wait().expect("waitpid").is_some()
    }

    /// Waits for the program to exit with status 0 (killing it after `timeout`) and returns all
    /// its stdout lines, including those already read.
    pub fn finish_within(mut self, timeout: Duration) -> Vec<Value> {
        let status = wait_timeout(&mut self.child, timeout);
        self.exited = status.is_some();
        let Some(status) = status else {
            panic!("{} did not finish within {timeout:?}", self.what);
        };
        while let Some(_line) = self.next_line(Duration::from_secs(10)) {}
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        assert!(
            status.success(),
            "{} failed ({status}):\n{stderr}",
            self.what
        );
        std::mem::take(&mut self.seen)
    }

    /// [`GoProcess::finish_within`] with [`RUN_TIMEOUT`].
    pub fn finish(self) -> Vec<Value> {
        self.finish_within(RUN_TIMEOUT)
    }

    fn stderr_now(&mut self) -> String {
        if !self.exited && wait_timeout(&mut self.child, Duration::from_secs(1)).is_none() {
            return String::from("(still running)");
        }
        self.exited = true;
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for GoProcess {
    /// A program still running (the test failed on the way) is killed with the processes it
    /// started (`lifecycle -mode fork` starts one).
    fn drop(&mut self) {
        if !self.exited && self.child.try_wait().ok().flatten().is_none() {
            kill_tree(self.child.id());
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output formats

/// One scenario of the `keys` program.
#[derive(Clone, Copy, Debug)]
pub struct KeysScenario {
    /// The "scenario" field.
    pub name: &'static str,
    /// `%T` of the map.
    pub type_name: &'static str,
    /// The functions that write it (names as in pclntab).
    pub funcs: &'static [&'static str],
    /// The runtime function those writes call on amd64.
    pub assign: &'static str,
}

const fn scenario(
    name: &'static str,
    type_name: &'static str,
    funcs: &'static [&'static str],
    assign: &'static str,
) -> KeysScenario {
    KeysScenario {
        name,
        type_name,
        funcs,
        assign,
    }
}

/// The scenarios of `keys`, in output order. Keys print as `fmt.Sprint` does (`user:17`,
/// `-10000000070`, `{3 user:3}`, `[3 9 -3]`, `k7` or `7`), pointers as `%p` (`0xc000012345`).
pub const KEYS_SCENARIOS: [KeysScenario; 12] = [
    scenario(
        "string",
        "map[string]int",
        &["main.writeString"],
        "runtime.mapassign_faststr",
    ),
    scenario(
        "int64",
        "map[int64]int",
        &["main.writeInt64"],
        "runtime.mapassign_fast64",
    ),
    scenario(
        "uint32",
        "map[uint32]int",
        &["main.writeUint32"],
        "runtime.mapassign_fast32",
    ),
    scenario(
        "pointer",
        "map[*main.T]int",
        &["main.writePointer"],
        "runtime.mapassign_fast64ptr",
    ),
    scenario(
        "struct",
        "map[main.Key]int",
        &["main.writeStruct"],
        "runtime.mapassign",
    ),
    scenario(
        "array",
        "map[[3]int]int",
        &["main.writeArray"],
        "runtime.mapassign",
    ),
    scenario(
        "iface",
        "map[interface {}]int",
        &["main.writeIface"],
        "runtime.mapassign",
    ),
    scenario(
        "twofuncs_a",
        "map[string]int",
        &["main.writeA"],
        "runtime.mapassign_faststr",
    ),
    scenario(
        "twofuncs_b",
        "map[string]int",
        &["main.writeB"],
        "runtime.mapassign_faststr",
    ),
    scenario(
        "shared",
        "map[string]int",
        &["main.writeA", "main.writeB"],
        "runtime.mapassign_faststr",
    ),
    scenario(
        "goroutines",
        "map[string]int",
        &["main.writeLocked"],
        "runtime.mapassign_faststr",
    ),
    scenario(
        "bigelem",
        "map[string][200]uint8",
        &["main.writeBig"],
        "runtime.mapassign",
    ),
];

/// `"0x..."` as a number.
pub fn parse_hex(s: &str) -> u64 {
    s.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("not a 0x-prefixed hex number: {s:?}"))
}

fn hex<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    s.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| D::Error::custom(format!("not a 0x-prefixed hex number: {s:?}")))
}

/// A key and how often it was written.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct KeyCount {
    pub key: String,
    pub writes: u64,
}

/// One map of the `keys` program's "types" line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MapInfo {
    pub scenario: String,
    /// `%T`, e.g. `map[string]int`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Address of the map's runtime type descriptor (RAX at a map-assign call).
    #[serde(deserialize_with = "hex")]
    pub type_addr: u64,
    /// `%p` of the map: its header address (RBX at a map-assign call).
    #[serde(deserialize_with = "hex")]
    pub id: u64,
    /// The key type's memory layout as Go's reflect reports it, e.g. `{0:i8,8:string}`.
    pub key_layout: String,
}

/// `{"event":"types",...}` of `keys`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Types {
    /// Run-time address of `main.main` (relocated, in a PIE).
    #[serde(deserialize_with = "hex")]
    pub main_main: u64,
    pub maps: Vec<MapInfo>,
}

/// `{"event":"counts",...}` of `keys`: the exact writes to one map.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub scenario: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(deserialize_with = "hex")]
    pub id: u64,
    pub total: u64,
    /// Writes per writing function (pclntab name).
    pub funcs: BTreeMap<String, u64>,
    /// Every key written, by writes descending, then key.
    pub keys: Vec<KeyCount>,
}

impl Counts {
    /// The `n` most written keys.
    pub fn top(&self, n: usize) -> &[KeyCount] {
        &self.keys[..n.min(self.keys.len())]
    }
}

/// Everything the `keys` program printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysRun {
    /// The pid of the ready line (runs with `-wait`).
    pub ready_pid: Option<u32>,
    pub types: Types,
    /// One per scenario, in [`KEYS_SCENARIOS`] order.
    pub counts: Vec<Counts>,
}

impl KeysRun {
    /// The counts of one scenario.
    pub fn counts(&self, scenario: &str) -> &Counts {
        self.counts
            .iter()
            .find(|c| c.scenario == scenario)
            .unwrap_or_else(|| panic!("no counts for scenario {scenario:?}"))
    }

    /// The "types" entry of one scenario.
    pub fn map(&self, scenario: &str) -> &MapInfo {
        self.types
            .maps
            .iter()
            .find(|m| m.scenario == scenario)
            .unwrap_or_else(|| panic!("no types entry for scenario {scenario:?}"))
    }
}

/// `{"event":"done",...}` of `growth`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrowthDone {
    #[serde(deserialize_with = "hex")]
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub len: u64,
    pub n: u64,
}

/// Everything the `growth` program printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrowthRun {
    pub ready_pid: Option<u32>,
    pub done: GrowthDone,
}

/// `{"event":"progress",...}` of `workload`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub writes: u64,
    pub elapsed_ns: u64,
}

/// `{"event":"done",...}` of `workload`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDone {
    pub writes: u64,
    pub elapsed_ns: u64,
    /// The program's own CPU time (user + system) spent during the writes.
    pub cpu_ns: u64,
    /// SHA-256 blocks of "other work" done between paced writes (0 without `-rate`).
    pub hashes: u64,
    /// The 50 most written keys, by writes descending, then key.
    pub keys: Vec<KeyCount>,
    /// The same per map written.
    pub maps: Vec<WorkloadMap>,
}

/// One map of `workload`'s done line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadMap {
    /// `%p` of the map (the tracer's map id).
    pub id: String,
    pub writes: u64,
    /// Keys written at least once.
    pub distinct: u64,
    /// Its 50 most written keys, by writes descending, then key.
    pub keys: Vec<KeyCount>,
}

/// Everything the `workload` program printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRun {
    pub ready_pid: Option<u32>,
    pub progress: Vec<Progress>,
    pub done: WorkloadDone,
}

/// The event name of a line.
pub fn event_name(line: &Value) -> &str {
    line["event"]
        .as_str()
        .unwrap_or_else(|| panic!("line without an \"event\" string: {line}"))
}

/// Deserializes a line (minus its "event" field) into `T`.
pub fn parse_event<T: DeserializeOwned>(line: &Value) -> T {
    let mut obj = line
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {line}"))
        .clone();
    obj.remove("event");
    serde_json::from_value(Value::Object(obj))
        .unwrap_or_else(|e| panic!("malformed {} line ({e}): {line}", event_name(line)))
}

fn parse_ready(line: &Value) -> u32 {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ready {
        pid: u32,
    }
    parse_event::<Ready>(line).pid
}

/// Parses the output of `keys`: a types line, a ready line if it ran with `-wait`, then one
/// counts line per scenario. Panics on anything else.
pub fn parse_keys(lines: &[Value]) -> KeysRun {
    let mut it = lines.iter().peekable();
    let first = it.next().expect("keys printed nothing");
    assert_eq!(event_name(first), "types", "first line of keys: {first}");
    let types = parse_event(first);
    let mut ready_pid = None;
    if let Some(line) = it.next_if(|l| event_name(l) == "ready") {
        ready_pid = Some(parse_ready(line));
    }
    let counts = it
        .map(|line| {
            assert_eq!(event_name(line), "counts", "unexpected line: {line}");
            parse_event(line)
        })
        .collect();
    KeysRun {
        ready_pid,
        types,
        counts,
    }
}

/// Parses the output of `growth`: a ready line if it ran with `-wait`, then the done line.
pub fn parse_growth(lines: &[Value]) -> GrowthRun {
    let (ready_pid, rest) = split_ready(lines);
    let [done] = rest else {
        panic!("growth: expected exactly one line after ready, got {rest:?}")
    };
    assert_eq!(event_name(done), "done", "unexpected line: {done}");
    GrowthRun {
        ready_pid,
        done: parse_event(done),
    }
}

/// Parses the output of `workload`: a ready line if it ran with `-wait`, progress lines, then
/// the done line.
pub fn parse_workload(lines: &[Value]) -> WorkloadRun {
    let (ready_pid, rest) = split_ready(lines);
    let Some((done, progress)) = rest.split_last() else {
        panic!("workload printed no done line")
    };
    assert_eq!(event_name(done), "done", "last line of workload: {done}");
    let progress = progress
        .iter()
        .map(|line| {
            assert_eq!(event_name(line), "progress", "unexpected line: {line}");
            parse_event(line)
        })
        .collect();
    WorkloadRun {
        ready_pid,
        progress,
        done: parse_event(done),
    }
}

fn split_ready(lines: &[Value]) -> (Option<u32>, &[Value]) {
    match lines.split_first() {
        Some((first, rest)) if event_name(first) == "ready" => (Some(parse_ready(first)), rest),
        _ => (None, lines),
    }
}

/// Polls `f` every 250 ms until it returns Some, for at most `secs` seconds.
pub fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
