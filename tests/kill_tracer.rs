//! No probe left behind (issue 7): the tracer is killed with SIGKILL, SIGTERM and SIGINT at
//! random moments (seeded; the seed is printed, `RELIAB_SEED=N` replays it) while it traces the
//! `stress` program, in every tracing command. Afterwards no link of the tracer remains, no
//! uprobe_multi or perf link names the target binary, `uprobe_events` has no entry for it, and
//! the target goes on and exits normally with the same output as untraced.
mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::probes::{assert_nothing_left, links_of};
use common::{json_lines, GoProcess, Variant};
use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

/// How a tracing command finds its target.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// The arguments hold `{pid}`: the test starts the target and the tracer attaches to it.
    Pid,
    /// The tracer starts the target: the binary and its arguments follow the arguments.
    Command,
}

/// The commands under test. Adding one (e.g. `serve`) is one line here.
const COMMANDS: &[(Target, &[&str])] = &[
    (Target::Pid, &["run", "-p", "{pid}"]),
    (Target::Pid, &["top", "--json", "-p", "{pid}"]),
    (Target::Command, &["run", "--"]),
];

const SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
];

/// Arguments of `stress` in these tests: long enough for a kill to land mid-trace.
const STRESS_ARGS: [&str; 2] = ["-loops", "2"];

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

/// Waits for `child` to exit within `timeout`; kills it and fails otherwise.
fn wait_within(child: &mut Child, timeout: Duration, label: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label}: tracer still running {timeout:?} after the signal");
        }
        thread::sleep(Duration::from_millis(10));
    }
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

fn without_ready(lines: Vec<Value>) -> Vec<Value> {
    lines
        .into_iter()
        .filter(|l| l["event"] != "ready")
        .collect()
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
    let mut rng = Rng(seed);
    let bin = common::build("stress", &common::newest_toolchain(), Variant::Pie);
    let untraced = common::run_output(&bin, &STRESS_ARGS, common::RUN_TIMEOUT);
    assert!(untraced.status.success(), "untraced stress failed");
    let expected = json_lines(&untraced.stdout);

    for (target, args) in COMMANDS {
        for (sig, sig_name) in SIGNALS {
            let delay = Duration::from_millis(rng.next() % 1500);
            let label = format!("`{}` {sig_name} after {delay:?}", args.join(" "));
            let mut target_proc = None;
            let mut cmd = Command::new(TRACER);
            match target {
                Target::Pid => {
                    let p = GoProcess::start_waiting(&bin, &STRESS_ARGS);
                    let pid = p.pid().to_string();
                    cmd.args(args.iter().map(|a| a.replace("{pid}", &pid)));
                    target_proc = Some(p);
                }
                Target::Command => {
                    cmd.args(*args).arg(&bin).args(STRESS_ARGS);
                }
            }
            let mut tracer = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = common::read_all(tracer.stdout.take().unwrap());
            let err = common::read_all(tracer.stderr.take().unwrap());
            let launched = match target {
                Target::Pid => None,
                Target::Command => child_of(tracer.id()),
            };
            if let Some(p) = &target_proc {
                p.release();
            }
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
            signal(tracer.id(), sig);
            let st = wait_within(&mut tracer, Duration::from_secs(30), &label);
            let tracer_out = out.join().unwrap();
            let tracer_err = err.join().unwrap();
            eprintln!("{label}: tracer {st:?}, {} links seen", links.len());
            assert!(
                !tracer_err.contains("panicked"),
                "{label}: tracer panicked: {tracer_err}"
            );
            if sig != libc::SIGKILL {
                // Handlers are installed first thing in each tracing command, before any probe:
                // a clean exit, unless the signal came before them (process start-up), when
                // there was nothing to clean up.
                let early = std::os::unix::process::ExitStatusExt::signal(&st) == Some(sig);
                if early {
                    assert!(
                        links.is_empty(),
                        "{label}: killed by the signal with probes"
                    );
                } else {
                    assert!(st.success(), "{label}: tracer {st:?}: {tracer_err}");
                }
            }
            assert_nothing_left(&links, &bin, &label);

            let got = match (target_proc, launched) {
                (Some(p), _) => without_ready(p.finish()),
                (None, Some(child)) => {
                    // Alive and still ours? (the tracer reaps it when it exits cleanly).
                    let code = if st.code().is_some() && sig != libc::SIGKILL {
                        st.code().unwrap()
                    } else {
                        reap(child, &label)
                    };
                    if code == 126 && tracer_out.is_empty() {
                        // Killed before it released the command: it never ran, untraced or not.
                        eprintln!("{label}: the command was never started");
                        continue;
                    }
                    assert_eq!(code, 0, "{label}: target exit code; tracer: {tracer_err}");
                    json_lines(&tracer_out)
                }
                (None, None) => panic!("{label}: the tracer started no command"),
            };
            assert_eq!(got, expected, "{label}: target output differs");
        }
    }
}

#[test]
fn the_probe_checks_see_a_live_tracer() {
    // The checks above must be able to fail: while a tracer runs, its links are found by id,
    // by the target's path, and (after it is gone) nothing is.
    require_root();
    let bin = common::build("stress", &common::newest_toolchain(), Variant::Plain);
    let p = GoProcess::start_waiting(&bin, &STRESS_ARGS);
    let mut tracer = Command::new(TRACER)
        .args(["run", "-p", &p.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let links = common::probes::wait_attached(tracer.id(), "live");
    assert!(
        !common::probes::links_naming(&bin).is_empty(),
        "a live tracer's uprobe_multi link does not name {}",
        bin.display()
    );
    signal(tracer.id(), libc::SIGINT);
    assert!(wait_within(&mut tracer, Duration::from_secs(30), "live").success());
    assert_nothing_left(&links, &bin, "live");
    p.release();
    assert!(p.finish().iter().any(|l| l["event"] == "done"));
}
