//! ebpf-map-trace: which keys of a running Go program's maps are written most.
pub mod gobin;
