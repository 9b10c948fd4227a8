//! No probe left behind (issue 7): the tracer is killed with SIGKILL, SIGTERM and SIGINT at
//! random moments (seeded; the seed is printed, `RELIAB_SEED=N` replays it) while it traces the
//! `stress` program, in every tracing command: `run -- CMD`, and `run`, `top --json`,
//! `top --once`, `trace` and `serve` each with `-p` and (where the command has it) `--binary`.
//! Afterwards no link of the tracer remains (libbpf's link list and `bpftool link show`), no
//! uprobe_multi or perf link names the target binary, `uprobe_events` has no entry for it, and
//! the target goes on and exits normally with the same output as untraced (its own counts).
//!
//! A target of `-p`/`--binary` lives through three tracers in turn, one killed by each signal;
//! `run -- CMD` starts a target per kill. Each command has a copy of the program of its own (so
//! the checks by path see only its tracers), and two commands run at a time.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::probes::{assert_nothing_left, links_of};
use common::{json_lines, GoProcess, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// How a tracing command finds its target.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// The tracer starts the target: the binary and its arguments follow the arguments.
    Command,
    /// The arguments hold `{pid}`: the test starts the target and the tracer attaches to it.
    Pid,
    /// The arguments hold `{bin}`: the tracer follows the processes of that executable.
    Binary,
}

/// The commands under test (`{listen}`: a free loopback address). Adding one is one line here.
const COMMANDS: &[(Target, &[&str])] = &[
    (Target::Command, &["run", "--"]),
    (Target::Pid, &["run", "-p", "{pid}"]),
    (Target::Pid, &["top", "--json", "-p", "{pid}"]),
    (Target::Binary, &["top", "--json", "--binary", "{bin}"]),
    (
        Target::Pid,
        &["top", "--once", "--duration", "600", "-p", "{pid}"],
    ),
    (
        Target::Binary,
        &["top", "--once", "--duration", "600", "--binary", "{bin}"],
    ),
    (Target::Pid, &["trace", "--json", "-p", "{pid}"]),
    (Target::Binary, &["trace", "--binary", "{bin}"]),
    (
        Target::Pid,
        &["serve", "--listen", "{listen}", "-p", "{pid}"],
    ),
    (
        Target::Binary,
        &["serve", "--listen", "{listen}", "--binary", "{bin}"],
    ),
];

const SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
];

/// Loops of `stress` for a `run -- CMD` target: long enough for a kill to land mid-trace.
const COMMAND_LOOPS: usize = 2;
/// Loops of `stress` for a `-p`/`--binary` target: it outlives the three tracers in turn.
const ATTACHED_LOOPS: usize = 4;
/// A kill lands this long after the tracer started, at most (so also during its start-up).
const MAX_DELAY_MS: u64 = 1200;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

/// splitmix64: small, seedable, and the same everywhere (no crate needed for one test's dice).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::env::var("RELIAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// The first child of `pid` (from /proc), waiting up to 10 s for it to appear.
fn child_of(pid: u32) -> Option<u32> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let path = format!("/proc/{pid}/task/{pid}/children");
        let text = std::fs::read_to_string(path).ok()?;
        if let Some(c) = text.split_whitespace().next() {
            return c.parse().ok();
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

/// waitpid for a process that became our child (we are a subreaper); its exit code.
fn reap(pid: u32, label: &str) -> i32 {
    let mut status = 0;
    let t0 = Instant::now();
    loop {
        // SAFETY: waitpid with a valid status pointer, on a pid reparented to this process.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        assert!(
            r == 0,
            "{label}: waitpid({pid}) failed: not our child any more"
        );
        assert!(
            t0.elapsed() < common::RUN_TIMEOUT,
            "{label}: target {pid} did not finish"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// What `stress -loops N` prints untraced: its counts lines N times, then `done` (it prints the
/// same lines every loop; one untraced loop gives them).
fn expected_output(one_loop: &[Value], loops: usize) -> Vec<Value> {
    let (done, counts) = one_loop.split_last().expect("stress printed nothing");
    assert_eq!(done["event"], "done", "stress's last line");
    let mut out: Vec<Value> = (0..loops).flat_map(|_| counts.iter().cloned()).collect();
    out.push(done.clone());
    out
}

fn without_ready(lines: Vec<Value>) -> Vec<Value> {
    lines
        .into_iter()
        .filter(|l| l["event"] != "ready")
        .collect()
}

/// One tracer, killed: its exit and its stdout.
struct Killed {
    status: ExitStatus,
    stdout: String,
}

/// Runs the tracer as `cmd`, sends `sig` after `delay`, and checks what must hold once it is
/// gone: no panic, a clean exit on SIGTERM/SIGINT (unless it came before the handlers, with no
/// probe yet), and nothing left probing `bin`. `started(tracer)` runs right after the spawn.
fn kill_after(
    mut cmd: Command,
    sig: (libc::c_int, &str),
    delay: Duration,
    bin: &Path,
    label: &str,
    started: impl FnOnce(&Child),
) -> Killed {
    // Guarded: a failed check before the kill leaves no tracer running (a `--binary` one would
    // follow the program's processes for good).
    let mut tracer = common::ChildGuard(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = common::read_all(tracer.stdout.take().unwrap());
    let err = common::read_all(tracer.stderr.take().unwrap());
    started(&tracer);
    // Links seen while the tracer runs (none if it is killed before attaching).
    let t0 = Instant::now();
    let mut links = Vec::new();
    while t0.elapsed() < delay {
        links.extend(links_of(tracer.id()));
        thread::sleep(Duration::from_millis(5));
    }
    links.extend(links_of(tracer.id()));
    links.sort_unstable();
    links.dedup();
    signal(tracer.id(), sig.0);
    let status = common::wait_or_kill(&mut tracer, Duration::from_secs(30), label);
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    eprintln!("{label}: tracer {status:?}, {} links seen", links.len());
    assert!(
        !stderr.contains("panicked"),
        "{label}: tracer panicked: {stderr}"
    );
    let by_signal = std::os::unix::process::ExitStatusExt::signal(&status);
    if sig.0 == libc::SIGKILL {
        assert_eq!(by_signal, Some(libc::SIGKILL), "{label}: {status:?}");
    } else if by_signal == Some(sig.0) {
        // Handlers are installed first thing in each tracing command, before any probe: only a
        // signal during process start-up kills it, when there was nothing to clean up.
        assert!(
            links.is_empty(),
            "{label}: killed by the signal with probes"
        );
    } else {
        assert!(status.success(), "{label}: tracer {status:?}: {stderr}");
    }
    assert_nothing_left(&links, bin, label);
    Killed { status, stdout }
}

/// `run -- stress`, killed by each signal in turn: each time the command runs on (or was never
/// started, when the kill came before the tracer released it) and prints its untraced output.
fn kill_run_command(args: &[&str], bin: &Path, one_loop: &[Value], rng: &mut Rng) {
    let expected = expected_output(one_loop, COMMAND_LOOPS);
    for sig in SIGNALS {
        let delay = Duration::from_millis(rng.next() % MAX_DELAY_MS);
        let label = format!("`{}` {} after {delay:?}", args.join(" "), sig.1);
        let mut cmd = Command::new(TRACER);
        cmd.args(args)
            .arg(bin)
            .args(["-loops", &COMMAND_LOOPS.to_string()]);
        let mut launched = None;
        let killed = kill_after(cmd, sig, delay, bin, &label, |t| {
            launched = child_of(t.id());
        });
        let child = launched.unwrap_or_else(|| panic!("{label}: the tracer started no command"));
        // Alive and still ours? (the tracer reaps it when it exits cleanly).
        let code = match killed.status.code() {
            Some(code) if sig.0 != libc::SIGKILL => code,
            _ => reap(child, &label),
        };
        if code == 126 && killed.stdout.is_empty() {
            // Killed before it released the command: it never ran, untraced or not.
            eprintln!("{label}: the command was never started");
            continue;
        }
        assert_eq!(code, 0, "{label}: target exit code");
        assert_eq!(
            json_lines(&killed.stdout),
            expected,
            "{label}: target output differs"
        );
    }
}

/// One target, three tracers in turn attached to it with `args` (`{pid}`, `{bin}`, `{listen}`
/// filled in), killed by each signal; then the target finishes with its untraced output.
fn kill_attached(args: &[&str], bin: &Path, one_loop: &[Value], rng: &mut Rng) {
    let mut p = GoProcess::start_waiting(bin, &["-loops", &ATTACHED_LOOPS.to_string()]);
    let mut released = false;
    for sig in SIGNALS {
        let delay = Duration::from_millis(rng.next() % MAX_DELAY_MS);
        let label = format!("`{}` {} after {delay:?}", args.join(" "), sig.1);
        let listen = common_listen();
        let mut cmd = Command::new(TRACER);
        cmd.args(args.iter().map(|a| {
            a.replace("{pid}", &p.pid().to_string())
                .replace("{bin}", bin.to_str().unwrap())
                .replace("{listen}", &listen)
        }));
        kill_after(cmd, sig, delay, bin, &label, |_| {
            if !released {
                p.release();
                released = true;
            }
        });
        assert!(
            !p.has_exited(),
            "{label}: the target ended before its third tracer: raise ATTACHED_LOOPS"
        );
    }
    let label = format!("`{}`", args.join(" "));
    assert_eq!(
        without_ready(p.finish()),
        expected_output(one_loop, ATTACHED_LOOPS),
        "{label}: target output differs"
    );
}

/// A loopback address free now (for `serve --listen`).
fn common_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").to_string()
}

/// The stress program copied for command `i` (see the module doc).
fn stress_copy(built: &Path, i: usize) -> PathBuf {
    common::private_copy(built, &format!("kill-tracer-{i}"))
}

#[test]
fn killing_the_tracer_at_random_moments_leaves_no_probe_and_an_unharmed_target() {
    require_root();
    // Orphans of a SIGKILLed `run -- CMD` tracer become our children, so we can reap them.
    // SAFETY: prctl with integer arguments only.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let seed = seed();
    eprintln!("kill_tracer seed: {seed} (replay with RELIAB_SEED={seed})");
    let built = common::build("stress", &common::newest_toolchain(), Variant::Pie);
    let untraced = common::run_output(&built, &["-loops", "1"], common::RUN_TIMEOUT);
    assert!(untraced.status.success(), "untraced stress failed");
    let one_loop = json_lines(&untraced.stdout);

    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((target, args)) = COMMANDS.get(i) else {
                        break;
                    };
                    // Each command's own dice: the same seed replays it whatever ran alongside.
                    let mut rng = Rng(seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                    let bin = stress_copy(&built, i);
                    match target {
                        Target::Command => kill_run_command(args, &bin, &one_loop, &mut rng),
                        Target::Pid | Target::Binary => {
                            kill_attached(args, &bin, &one_loop, &mut rng)
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

#[test]
fn the_probe_checks_see_a_live_tracer() {
    // The checks above must be able to fail: while a tracer runs, its links are found by id
    // (libbpf and bpftool), by the target's path, and (after it is gone) nothing is.
    require_root();
    let bin = common::build("stress", &common::newest_toolchain(), Variant::Plain);
    let p = GoProcess::start_waiting(&bin, &["-loops", "1"]);
    let mut tracer = common::ChildGuard(
        Command::new(TRACER)
            .args(["run", "-p", &p.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let links = common::probes::wait_attached(tracer.id(), "live");
    let listed = common::probes::bpftool_link_ids();
    assert!(
        links.iter().all(|l| listed.contains(l)),
        "bpftool does not list the live tracer's links {links:?}"
    );
    assert!(
        !common::probes::links_naming(&bin).is_empty(),
        "a live tracer's uprobe_multi link does not name {}",
        bin.display()
    );
    signal(tracer.id(), libc::SIGINT);
    assert!(common::wait_or_kill(&mut tracer, Duration::from_secs(30), "live").success());
    assert_nothing_left(&links, &bin, "live");
    p.release();
    assert!(p.finish().iter().any(|l| l["event"] == "done"));
}
