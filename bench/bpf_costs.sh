#!/usr/bin/env bash
# What a probed map write costs, side by side in one run (root needed): bench/bpf_costs.rs on the
# tests/go/workload program (string keys, tight loops), every variant once per round, interleaved
# over ROUNDS rounds; medians with min..max, and per-round ratios (added ÷ the empty program's,
# BPF time ÷ bpftrace's). Workloads: Zipf keys (1000; a short run with bpftrace, a run 8x longer
# for the tracer's own CPU), all-distinct keys, and 4 goroutines writing their own maps in parallel.
# Usage: bench/bpf_costs.sh [ROUNDS] [WRITES] [GO_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
WRITES=${2:-300000}
GO=${3:-1.26.6}
./setup >/dev/null
cargo build --release --quiet
OUT=target/bench; mkdir -p "$OUT"
bin=$OUT/workload-$GO
(cd tests/go/workload && GO111MODULE=off GOTOOLCHAIN=local GOFLAGS= "$OLDPWD/.cache/go/$GO/bin/go" build -o "$OLDPWD/$bin" .)
run() { cargo bench --quiet --bench bpf_costs -- "$bin" target/release/ebpf-map-trace "$ROUNDS" "$@"; }
echo "== Zipf keys (1000), $WRITES writes, go$GO: BPF time against bpftrace's"
run "$WRITES" none v0_empty kernel records tracer bpftrace
echo "== Zipf keys (1000), $((WRITES * 8)) writes: the tracer's own CPU over a longer run"
run "$((WRITES * 8))" none v0_empty kernel tracer
echo "== all-distinct keys, $WRITES writes"
run "$WRITES" --args '-distinct' none v0_empty kernel tracer bpftrace
echo "== 4 goroutines, a map each, Zipf keys, $WRITES writes each"
run "$WRITES" --args '-goroutines 4' none v0_empty kernel tracer
