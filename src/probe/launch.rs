//! Starting a command so that it is traced from its first instruction: `std::process::Command`
//! with a `pre_exec` hook that holds the child before its exec — it reports its pid on one pipe
//! and waits for a byte on another — so the caller can attach probes to the pid, then release
//! it to exec. `Command::spawn` only returns once the child has exec'd, so it runs on a thread
//! of its own while the caller attaches.
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};

/// Exit status of a held child whose tracer went away (or gave up) before releasing it: it
/// never runs its command untraced.
const NEVER_RELEASED: i32 = 126;

/// A child waiting to exec its command.
pub struct HeldChild {
    pub pid: u32,
    pub exe: PathBuf,
    /// Writing a byte here releases the child; closing it unwritten makes it exit.
    release: Option<File>,
    /// The thread inside `Command::spawn`, which returns once the child exec'd (or failed to).
    spawning: Option<JoinHandle<std::io::Result<Child>>>,
    child: Option<Child>,
}

/// Resolves a command name like the shell does (a path, or a name searched in PATH).
pub fn resolve_command(cmd: &str) -> Result<PathBuf> {
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        if !p.is_file() {
            bail!("command not found: {cmd}");
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .with_context(|| format!("command not found in PATH: {cmd}"))
}

/// A pipe whose ends are closed on exec: (read, write).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl HeldChild {
    /// Starts `argv` (argv[0] resolved to `exe`) held before its exec until [`release`].
    ///
    /// [`release`]: HeldChild::release
    pub fn spawn(exe: &Path, argv: &[String]) -> Result<HeldChild> {
        let (ready_r, ready_w) = pipe()?;
        let (release_r, release_w) = pipe()?;
        let release_w_fd = release_w.as_raw_fd();
        let mut cmd = Command::new(exe);
        if let Some((arg0, args)) = argv.split_first() {
            cmd.arg0(arg0).args(args);
        }
        let hold = move || {
            let pid = std::process::id().to_ne_bytes();
            let mut b = 0u8;
            // SAFETY: only async-signal-safe calls (close, write, read, _exit) on fds the
            // closure owns or that the fork copied; the buffers live on this stack.
            unsafe {
                // Our copy of the release pipe's write end: only the tracer's may hold it open.
                libc::close(release_w_fd);
                libc::write(ready_w.as_raw_fd(), pid.as_ptr().cast(), pid.len());
                if libc::read(release_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
                    libc::_exit(NEVER_RELEASED);
                }
            }
            Ok(())
        };
        // SAFETY: `hold` only makes async-signal-safe calls (see above).
        unsafe { cmd.pre_exec(hold) };
        let spawning = std::thread::spawn(move || cmd.spawn());
        // The pid, once the child runs `hold`; end of file if it never got there.
        let mut pid = [0u8; 4];
        if File::from(ready_r).read_exact(&mut pid).is_err() {
            let err = spawning
                .join()
                .map_err(|_| anyhow!("the thread starting the command panicked"))?
                .err();
            bail!(
                "cannot start {}: {}",
                exe.display(),
                err.map_or_else(|| "it exited at once".to_string(), |e| e.to_string())
            );
        }
        Ok(HeldChild {
            pid: u32::from_ne_bytes(pid),
            exe: exe.to_path_buf(),
            release: Some(File::from(release_w)),
            spawning: Some(spawning),
            child: None,
        })
    }

    /// Lets the child exec its command; an error if the exec failed.
    pub fn release(&mut self) -> Result<()> {
        use std::io::Write;
        if let Some(mut fd) = self.release.take() {
            fd.write_all(&[1]).context("cannot release the child")?;
        }
        self.join()
            .with_context(|| format!("cannot execute {}", self.exe.display()))
    }

    /// Takes the `Child` from the spawning thread (once it returned).
    fn join(&mut self) -> std::io::Result<()> {
        if let Some(t) = self.spawning.take() {
            let child = t
                .join()
                .map_err(|_| std::io::Error::other("the thread starting the command panicked"))??;
            self.child = Some(child);
        }
        Ok(())
    }

    /// Non-blocking: the exit status if the child has ended (128+signal for a signal).
    pub fn try_wait(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(code(status))
    }

    /// Blocks until the child ends.
    pub fn wait(&mut self) -> i32 {
        match self.child.as_mut().map(Child::wait) {
            Some(Ok(status)) => code(status),
            _ => 1,
        }
    }
}

impl Drop for HeldChild {
    /// A child never released (attach failed) exits without running its command.
    fn drop(&mut self) {
        if self.release.take().is_some() && self.join().is_ok() {
            let _ = self.wait();
        }
    }
}

/// The shell's view of an exit status: the code, or 128 + the signal.
fn code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    }
}
