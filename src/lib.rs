//! ebpf-map-trace: which keys of a running Go program's maps are written most, by which code
//! and goroutine, and when maps grow.
//!
//! The modules are layers that data flows through one way, each importing only from the layers
//! before it in [`LAYERS`] (a test enforces it):
//! binary knowledge (`gobin`) → the kernel side (`bpf`: the C/Rust contract; `probe`: load,
//! attach, launch, calibrate) → decoding (`decode`: records, keys, map internals) → `sampling`
//! (duty cycle, windows, estimates) → counting (`hotkeys`) → `report` (model, JSON, table,
//! pprof, folded) → the intake `pipeline` (ring → counts, run live) → `export` (Prometheus,
//! HTTP) → `cli`.
pub mod bpf;
pub mod cli;
pub mod decode;
pub mod export;
pub mod gobin;
pub mod hotkeys;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod sampling;

#[cfg(test)]
mod layers;

/// The layers, lowest first: a module may import from its own layer and the ones before it.
pub const LAYERS: &[&str] = &[
    "gobin", "bpf", "probe", "decode", "sampling", "hotkeys", "report", "pipeline", "export", "cli",
];
