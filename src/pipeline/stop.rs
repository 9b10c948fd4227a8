//! When to stop: one flag that every tracing loop polls, so that it detaches its probes and
//! reports cleanly. Ctrl-C and SIGTERM raise it (through `signal-hook`, once
//! [`stop_on_signals`] ran), and so do the terminal UI when the user quits and a fleet's
//! `--duration`.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Makes SIGINT and SIGTERM raise the flag instead of killing the tracer. Call it before the
/// first probe exists.
pub fn stop_on_signals() {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Fails only for signals that cannot be caught (SIGKILL, SIGSTOP), not these.
        let _ = signal_hook::flag::register(signal, Arc::clone(&STOP));
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Asks every loop to stop (e.g. when the terminal UI quits).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
