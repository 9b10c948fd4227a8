//! Starting a command so that it is traced from its first instruction: fork, hold the child
//! before exec on a pipe, let the caller attach probes to its pid, then release it to exec.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A forked child waiting to exec its command.
pub struct HeldChild {
    pub pid: u32,
    pub exe: PathBuf,
    release: Option<OwnedFd>,
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

impl HeldChild {
    /// Forks; the child blocks until `release` and then execs `argv` (argv[0] resolved to `exe`).
    pub fn spawn(exe: &Path, argv: &[String]) -> Result<HeldChild> {
        let c_exe = CString::new(exe.as_os_str().as_encoded_bytes())
            .context("command path has a NUL byte")?;
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<std::result::Result<_, _>>()
            .context("argument has a NUL byte")?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe: {}", std::io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned here.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: after fork the child only calls async-signal-safe functions (close, read,
        // execv, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                libc::close(write_end.as_raw_fd());
                let mut b = 0u8;
                let n = libc::read(read_end.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n == 1 {
                    libc::execv(c_exe.as_ptr(), c_argv.as_ptr());
                    let msg = b"ebpf-map-trace: error: cannot execute the command\n";
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::_exit(127);
                }
                // The tracer went away or gave up: do not run untraced.
                libc::_exit(126);
            }
        }
        drop(read_end);
        Ok(HeldChild {
            pid: pid as u32,
            exe: exe.to_path_buf(),
            release: Some(write_end),
        })
    }

    /// Lets the child exec its command.
    pub fn release(&mut self) -> Result<()> {
        if let Some(fd) = self.release.take() {
            let b = [1u8];
            // SAFETY: writing one byte from a live buffer to an fd we own.
            let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 1) };
            if n != 1 {
                bail!(
                    "cannot release the child: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(())
    }

    /// Non-blocking: the exit status if the child has ended (128+signal for a signal).
    pub fn try_wait(&self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) };
        if r == self.pid as i32 {
            Some(decode_status(status))
        } else {
            None
        }
    }

    /// Blocks until the child ends.
    pub fn wait(&self) -> i32 {
        let mut status = 0;
        // SAFETY: as above.
        let r = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
        if r == self.pid as i32 {
            decode_status(status)
        } else {
            1
        }
    }
}

impl Drop for HeldChild {
    /// A child never released (attach failed) exits without running its command.
    fn drop(&mut self) {
        if self.release.take().is_some() {
            let _ = self.wait();
        }
    }
}

fn decode_status(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
