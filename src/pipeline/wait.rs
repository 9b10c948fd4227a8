//! How a live loop waits when nothing is due before its next refresh: asleep in poll(2) on the
//! ring's epoll fd and the target's pidfd, so that an idle target costs no wake-ups; woken by a
//! record, the target's exit, a signal, or the time given.
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::probe::process::ExitWatch;

/// Sleeps until a record is ready in the ring whose epoll fd is `ring_fd`, the target exits
/// (`exit`), a signal arrives, or `timeout` passes; returns whether an fd woke it.
pub fn wait(ring_fd: RawFd, exit: Option<&ExitWatch>, timeout: Duration) -> bool {
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = vec![pollfd(ring_fd)];
    fds.extend(exit.map(|w| pollfd(w.fd().as_raw_fd())));
    // Rounded up: a timeout rounded down to 0 ms would spin until the deadline.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a live array of `fds.len()` pollfds for the whole call; the ring's fd
    // stays open while the caller holds its ring, the pidfd while `exit` is borrowed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    n > 0
}
