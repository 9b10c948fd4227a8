//! The `ebpf-map-trace` binary: all logic lives in the library; see `cli`.
fn main() -> std::process::ExitCode {
    ebpf_map_trace::cli::main()
}
