//! A tracer process under test: its output drained on threads (a full pipe would block it), a
//! wait for its probes to be attached, and a clean end with SIGTERM.
#![allow(dead_code)] // each test file uses part of it
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");

pub struct Tracer {
    pub child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Tracer {
    pub fn spawn(args: &[&str]) -> Tracer {
        Tracer::spawn_program(std::path::Path::new(TRACER), args)
    }

    /// Runs `program args...` that execs the tracer (e.g. `setpriv ... -- TRACER ...`).
    pub fn spawn_program<S: AsRef<std::ffi::OsStr>>(
        program: &std::path::Path,
        args: &[S],
    ) -> Tracer {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the tracer");
        Tracer::adopt(child)
    }

    /// A tracer started by the caller (its stdout and stderr piped, or null).
    pub fn adopt(mut child: Child) -> Tracer {
        let out = Some(drain(child.stdout.take()));
        let err = Some(drain(child.stderr.take()));
        Tracer { child, out, err }
    }

    /// Waits until the tracer holds a BPF link on a target (its probes are attached).
    pub fn wait_attached(&mut self) {
        let t0 = Instant::now();
        loop {
            if holds_target_link(self.child.id()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tracer exited ({st}) before attaching: {}", self.stderr());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "tracer never attached"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit; its status, stdout and stderr.
    pub fn terminate(mut self) -> (ExitStatus, String, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("waitpid") {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("tracer did not end within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self.out.take().unwrap().join().unwrap_or_default();
        (status, out, self.stderr())
    }

    fn stderr(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(_)) => self
                .err
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default(),
            _ => "(still running)".into(),
        }
    }
}

/// Reads a pipe to its end on a thread (nothing to read without one).
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> JoinHandle<String> {
    match pipe {
        Some(p) => crate::common::read_all(p),
        None => std::thread::spawn(String::new),
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `tracer` holds a BPF link whose probes are filtered to process `target`.
pub fn holds_link_on(tracer: u32, target: u32) -> bool {
    let want = format!("pid:\t{target}\n");
    link_infos(tracer).iter().any(|s| s.contains(&want))
}

/// The fdinfo text of every BPF link `tracer` holds.
fn link_infos(tracer: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{tracer}/fdinfo"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|s| s.contains("link_id:"))
        .collect()
}

/// Whether the tracer holds a BPF link on a target process. Budget mode first calibrates on
/// probes in the tracer's own binary (links naming its path or its pid): those do not count.
pub fn holds_target_link(tracer: u32) -> bool {
    let own_exe = std::fs::read_link(format!("/proc/{tracer}/exe")).unwrap_or_default();
    let own_name = format!("name:\t{}\n", own_exe.display());
    let own_pid = format!("pid:\t{tracer}\n");
    link_infos(tracer)
        .iter()
        .any(|s| !s.contains(&own_name) && !s.contains(&own_pid))
}
