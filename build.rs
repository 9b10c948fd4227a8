//! Compiles the BPF programs with clang-19 and generates their libbpf-rs skeletons: the tracer's
//! (`src/bpf/`) and the cost breakdown's (`bench/bpf_costs.bpf.c`, used by `cargo bench`).
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// (source, skeleton name).
const PROGRAMS: &[(&str, &str)] = &[
    ("src/bpf/mapwrite.bpf.c", "mapwrite"),
    ("bench/bpf_costs.bpf.c", "bpf_costs"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang-19".to_string());
    for (src, name) in PROGRAMS {
        SkeletonBuilder::new()
            .source(src)
            .clang(&clang)
            .clang_args([
                "-Wall",
                "-Wno-unused-function",
                "-I/usr/include/x86_64-linux-gnu",
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| {
                panic!(
                    "compiling {src} with {clang} failed (run ./setup to install clang-19): {e:#}"
                )
            });
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/maptrace.h");
    println!("cargo:rerun-if-changed=src/bpf/aggregate.bpf.h");
    println!("cargo:rerun-if-changed=src/bpf/syncmap.bpf.h");
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
}
