//! The traced process as the OS sees it: its executable, liveness (and its exit as a pidfd a
//! loop can wait on), the processes running an executable, and an exec that replaces its
//! program — from /proc.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use procfs::process::Process;

/// The executable of a running process, resolved through its own root (works across containers).
pub fn exe_of(pid: u32) -> Result<PathBuf> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        bail!("no such process: {pid}");
    }
    if !process_alive(pid) {
        bail!("process exited: {pid} has ended (a zombie its parent has not reaped)");
    }
    let link = match std::fs::read_link(proc_dir.join("exe")) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "missing privileges: process {pid} belongs to another user; reading its executable \
             needs root or CAP_SYS_PTRACE"
        ),
        r => r.with_context(|| format!("cannot read the executable of process {pid}"))?,
    };
    // /proc/PID/exe opens the file even when it lives in another mount namespace.
    let exe = proc_dir.join("exe");
    if let Err(e) = std::fs::File::open(&exe) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            bail!(
                "missing privileges: the executable of process {pid} ({}) is not readable; \
                 reading it needs root or CAP_DAC_READ_SEARCH",
                link.display()
            );
        }
    }
    Ok(exe)
}

/// What process `pid` has done so far, read from procfs at no cost to it: the clocks budget mode
/// measures the target's progress by (see `sampling::estimate`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activity {
    /// CPU time of its live threads, seconds, to the nanosecond: each thread's
    /// `/proc/PID/task/TID/schedstat` (its runtime, with the slice it is running now: the process
    /// CPU clock instead lags up to a tick, 4 ms at HZ=250, per running thread, which is most of
    /// a short window's CPU time). A thread that exits takes its time with it (Go programs rarely
    /// end threads).
    pub cpu_s: f64,
    /// Read- and write-family system calls of the whole process (`/proc/PID/io` syscr + syscw):
    /// a server's reads and writes of its connections, a fixed number per request however much
    /// the probes slow it.
    pub syscalls: u64,
    /// Bytes those calls read and wrote (`rchar` + `wchar`): a server's requests and answers,
    /// however many calls they took (a slowed server finds more waiting per read).
    pub io_bytes: u64,
    /// Voluntary context switches of its live threads (`voluntary_ctxt_switches`): how often it
    /// went to sleep, i.e. woke up, e.g. a loop paced by a timer.
    pub wakeups: u64,
}

/// `pid`'s activity so far; `None` once the process is gone.
pub fn activity(pid: u32) -> Option<Activity> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut a = Activity::default();
    let (mut ns, mut any) = (0u64, false);
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        if let Some(run) = first_number(&stat) {
            ns += run;
            any = true;
        }
        if let Ok(status) = std::fs::read_to_string(t.path().join("status")) {
            a.wakeups += field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        }
    }
    if let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) {
        a.syscalls = field(&io, "syscr:").unwrap_or(0) + field(&io, "syscw:").unwrap_or(0);
        a.io_bytes = field(&io, "rchar:").unwrap_or(0) + field(&io, "wchar:").unwrap_or(0);
    }
    a.cpu_s = ns as f64 * 1e-9;
    any.then_some(a)
}

fn first_number(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// The number after `name` on the line that starts with it (procfs `key: value` files).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(first_number)
}

/// How many processes run an executable this tracer may not look at (another user's, without
/// CAP_SYS_PTRACE): `--binary` cannot tell whether they run the traced program.
pub fn uninspectable_processes() -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() != me))
        .filter(|e| {
            matches!(std::fs::metadata(e.path().join("exe")),
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied)
        })
        .count()
}

/// Why `--binary` may miss processes: "" when every process can be looked at, else a clause
/// naming the privilege that is missing.
pub fn uninspectable_note() -> String {
    match uninspectable_processes() {
        0 => String::new(),
        n => format!(
            "; {n} processes of other users cannot be inspected: that needs root or CAP_SYS_PTRACE"
        ),
    }
}

/// Whether the process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state != 'Z')
}

/// Whether the process has ended for good: not alive now, nor over the next 100 ms. (While a
/// multi-threaded process execs from a thread other than its leader, the leader shows as a
/// zombie for a moment; that is not an exit.)
pub fn process_ended(pid: u32) -> bool {
    for _ in 0..5 {
        if process_alive(pid) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    !process_alive(pid)
}

/// A process's exit as a file descriptor (a pidfd): readable once the process has ended, so a
/// loop can wait on it next to its ring, and ask whether it ended without reading /proc.
pub struct ExitWatch(std::os::fd::OwnedFd);

impl ExitWatch {
    pub fn new(pid: u32) -> std::io::Result<ExitWatch> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; nothing is
        // borrowed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us by the kernel and is owned by nothing else.
        Ok(ExitWatch(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    /// Whether the process may have ended (its pidfd is readable).
    pub fn fired(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that lives on this stack frame, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }
}

/// Running processes whose executable is `binary`, compared by device and inode through
/// `/proc/PID/exe`: the file at `binary` here, or the file at `binary` inside the process's own
/// root (`/proc/PID/root/...`), so `--binary /app/server` also finds containers running their
/// `/app/server` even where that path does not exist in the tracer's mount namespace.
pub fn processes_of(binary: &std::path::Path) -> anyhow::Result<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata(binary).ok().map(|m| (m.dev(), m.ino()));
    if here.is_none() && !binary.is_absolute() {
        bail!("cannot read {}", binary.display());
    }
    let inside = binary.strip_prefix("/").unwrap_or(binary);
    let mut pids = Vec::new();
    for p in procfs::process::all_processes()?.flatten() {
        let pid = p.pid() as u32;
        let Ok(m) = std::fs::metadata(format!("/proc/{pid}/exe")) else {
            continue;
        };
        let exe = Some((m.dev(), m.ino()));
        let matches = exe == here
            || exe
                == std::fs::metadata(PathBuf::from(format!("/proc/{pid}/root")).join(inside))
                    .ok()
                    .map(|m| (m.dev(), m.ino()));
        if matches && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Notices when a traced process replaces its program (execve): its `/proc/PID/exe` stops
/// being the traced binary (compared by device and inode, checked at most every 50 ms).
pub struct ExecWatch {
    pid: u32,
    want: (u64, u64),
    /// What a held child runs before it execs the binary (the tracer itself): not an exec.
    before: Option<(u64, u64)>,
    last: std::cell::Cell<Option<std::time::Instant>>,
}

impl ExecWatch {
    /// Watches `pid`, which runs `binary` (or, for a child held by this tracer before its
    /// exec, is about to: `held`).
    pub fn new(pid: u32, binary: &std::path::Path, held: bool) -> Result<ExecWatch> {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &std::path::Path| -> Result<(u64, u64)> {
            let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((m.dev(), m.ino()))
        };
        Ok(ExecWatch {
            pid,
            want: id(binary)?,
            before: if held {
                Some(id(std::path::Path::new("/proc/self/exe"))?)
            } else {
                None
            },
            last: std::cell::Cell::new(None),
        })
    }

    /// The program the process now runs, once it ran the traced binary and then exec'd another.
    pub fn exec_target(&self) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let now = std::time::Instant::now();
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_millis(50))
        {
            return None;
        }
        self.last.set(Some(now));
        let exe = format!("/proc/{}/exe", self.pid);
        let m = std::fs::metadata(&exe).ok()?;
        let now_runs = Some((m.dev(), m.ino()));
        if now_runs == Some(self.want) || now_runs == self.before {
            return None;
        }
        Some(std::fs::read_link(&exe).unwrap_or_else(|_| PathBuf::from(exe)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_counts_this_process_system_calls() {
        let me = std::process::id();
        let before = activity(me).expect("this process is alive");
        for _ in 0..10 {
            std::fs::read_to_string("/proc/self/stat").unwrap();
        }
        let after = activity(me).unwrap();
        // Each read_to_string makes at least one read(2).
        assert!(
            after.syscalls >= before.syscalls + 10,
            "{before:?} {after:?}"
        );
        assert!(after.io_bytes > before.io_bytes, "{before:?} {after:?}");
        assert!(after.cpu_s > 0.0);
        assert_eq!(activity(u32::MAX), None);
    }

    #[test]
    fn procfs_fields_are_read_by_name() {
        let io = "rchar: 10\nsyscr: 7\nsyscw: 3\n";
        assert_eq!(
            (field(io, "syscr:"), field(io, "syscw:")),
            (Some(7), Some(3))
        );
        assert_eq!(field(io, "syscx:"), None);
    }
}
