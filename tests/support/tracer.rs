//! A tracer process under test: its output drained on threads (a full pipe would block it), a
//! wait for its probes to be attached, and a clean end with SIGTERM.
#![allow(dead_code)] // each test file uses part of it
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::common::probes::{holds_link_on, holds_target_link, settled_links};

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
        self.wait_for(holds_target_link, "a target");
    }

    /// Waits until the tracer holds a BPF link filtered to process `target`.
    pub fn wait_attached_to(&mut self, target: u32) {
        self.wait_for(|t| holds_link_on(t, target), &format!("process {target}"));
    }

    fn wait_for(&mut self, attached: impl Fn(u32) -> bool, what: &str) {
        let t0 = Instant::now();
        loop {
            if attached(self.child.id()) {
                settled_links(self.child.id());
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "tracer exited ({st}) before attaching to {what}: {}",
                    self.stderr()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "tracer never attached to {what} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for the tracer to end by itself; its status, stdout and stderr.
    /// The watchdog kills it and fails the test if it does not.
    pub fn finish_within(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let status = crate::common::wait_or_kill(&mut self.child, timeout, "tracer");
        let out = self.out.take().unwrap().join().unwrap_or_default();
        (status, out, self.stderr())
    }

    /// Sends `sig` to the tracer.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Sends SIGTERM and waits (at most 20 s) for the exit; its status, stdout and stderr.
    pub fn terminate(mut self) -> (ExitStatus, String, String) {
        self.signal(libc::SIGTERM);
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
    /// A tracer still running when the test ends (it failed on the way) is killed with what it
    /// started (a `run -- CMD` target).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            crate::common::kill_tree(self.child.id());
            let _ = self.child.wait();
        }
    }
}
