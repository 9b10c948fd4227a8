//! ebpf-map-trace: which keys of a running Go program's maps are written most, by which code
//! and goroutine, and when maps grow. `gobin` knows Go binaries; `cli` is the command line.
pub mod cli;
pub mod export;
pub mod gobin;
pub mod hotkeys;
pub mod internals;
pub mod keys;
pub mod probe;
pub mod report;
pub mod target;
