//! A terminal UI under test in tmux: one command in a session on a tmux server of its own
//! (`tmux -S SOCKET`), read by screen captures and driven by keys. The [`Session`] is the guard:
//! dropping it — on every exit path of the test, a failed assertion included — ends the command
//! (SIGTERM to its process group, SIGKILL if it lingers) and the tmux server, so no session
//! outlives its test still running a tracer.
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How the command in a session ended: its exit code, or the signal that killed it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// One command running in a tmux session, `cols` × `rows` wide (see the module doc).
pub struct Session {
    socket: PathBuf,
    name: String,
    /// The pane's process: the shell that runs the command and then writes its exit status to
    /// `status` (tmux's own `pane_dead_status` was seen empty for a pane already dead, in CI),
    /// leading its own process group.
    pid: libc::pid_t,
    status: PathBuf,
}

fn tmux_status(socket: &PathBuf, args: &[&str]) -> ExitStatus {
    Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("tmux is needed (apt package tmux; ./setup installs it): {e}"))
}

impl Session {
    /// Starts `command` (a shell command line) in a new session named `name`. The pane stays
    /// after the command exits (its last screen can be read); [`Session::wait_ended`] reads how
    /// it ended from the status file the shell writes.
    pub fn start(name: &str, command: &str, cols: u16, rows: u16) -> Session {
        let dir = super::manifest_dir().join("target/tmp/tmux");
        std::fs::create_dir_all(&dir).expect("create target/tmp/tmux");
        let socket = dir.join(name);
        let status = dir.join(format!("{name}.status"));
        let _ = std::fs::remove_file(&status);
        let exec = format!(
            "{command}; echo $? > {0}.tmp && mv {0}.tmp {0}",
            status.display()
        );
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let started = tmux_status(
            &socket,
            &[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                &cols,
                "-y",
                &rows,
                &exec,
                ";",
                "set-option",
                "-t",
                name,
                "remain-on-exit",
                "on",
            ],
        );
        assert!(started.success(), "tmux new-session {name}: {started}");
        let mut session = Session {
            socket,
            name: name.to_string(),
            pid: 0,
            status,
        };
        let pid = session.format("#{pane_pid}");
        session.pid = pid
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("tmux pane pid of {name}: {pid:?}"));
        session
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// A tmux format (`#{...}`) expanded for the session's pane.
    fn format(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", &self.name, format]);
        assert!(
            out.status.success(),
            "tmux display-message on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", &self.name]);
        assert!(out.status.success(), "tmux capture-pane on {}", self.name);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Captures the screen every 200 ms until `f` accepts it (within `timeout`), and returns it;
    /// fails naming `what` and showing the last screen otherwise.
    pub fn wait_screen(&self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                t0.elapsed() < timeout,
                "the UI never showed {what} within {timeout:?}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Types `keys` (tmux key names, e.g. `q`) into the pane.
    pub fn send_keys(&self, keys: &str) {
        let out = self.tmux(&["send-keys", "-t", &self.name, keys]);
        assert!(
            out.status.success(),
            "tmux send-keys {keys} to {}",
            self.name
        );
    }

    /// Waits (at most `timeout`) for the command to exit and returns how it ended (the shell's
    /// `$?`: 128 + N for signal N); fails naming `what` (e.g. "quit on q") if it is still
    /// running.
    pub fn wait_ended(&self, what: &str, timeout: Duration) -> Ended {
        let t0 = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.status) {
                let code: i32 = text
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("exit status of {}: {text:?}", self.name));
                return if code > 128 {
                    Ended::Signal(code - 128)
                } else {
                    Ended::Code(code)
                };
            }
            assert!(
                t0.elapsed() < timeout,
                "the UI did not {what} within {timeout:?}:\n{}",
                self.screen()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether process `pid` still exists (tmux reaps its panes' processes).
fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.pid > 0 && alive(self.pid) {
            // The pane's process leads its own group (tmux starts it in a new session).
            // SAFETY: kill(2) on the process group of the command this guard started.
            unsafe { libc::kill(-self.pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while alive(self.pid) && t0.elapsed() < Duration::from_secs(5) {
                thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; whatever of the group is left.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        let _ = self.tmux(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.status);
    }
}
