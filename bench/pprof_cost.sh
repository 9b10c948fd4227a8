#!/usr/bin/env bash
# What stack capture (--pprof/--folded) costs: the same workload (WRITES string-key writes in a
# tight loop, tests/go/workload) traced by `run` without and with `--pprof --folded`, best of 3
# each; added ns per write over the untraced run, BPF run time per event (kernel BPF stats), and
# the profile's size and writing time. Usage: bench/pprof_cost.sh [WRITES] [GO_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${1:-1000000}
V=${2:-1.26.6}
./setup >/dev/null
cargo build --release --quiet
TRACER=target/release/ebpf-map-trace
OUT=target/bench; mkdir -p "$OUT"
sysctl -q kernel.bpf_stats_enabled=1
go=.cache/go/$V/bin/go; [[ $V == 1.19 ]] && go=/usr/lib/go-1.19/bin/go
bin=$OUT/workload-$V
(cd tests/go/workload && GO111MODULE=off GOTOOLCHAIN=local GOFLAGS= "$OLDPWD/$go" build -o "$OLDPWD/$bin" .)

elapsed_ns() { grep '"event":"done"' "$1" | sed -E 's/.*"elapsed_ns":([0-9]+).*/\1/'; }

best_untraced=999999999999
for _ in 1 2 3; do "$bin" -writes "$WRITES" >"$OUT/base.out"; t=$(elapsed_ns "$OUT/base.out"); ((t < best_untraced)) && best_untraced=$t; done

# traced LABEL ARGS...: best elapsed_ns of the target, and the BPF ns/event of that run.
traced() {
  local label=$1; shift
  local best=999999999999 best_bpf=0
  for _ in 1 2 3; do
    local t0 t1 stats=""
    t0=$(date +%s%N)
    "$TRACER" run "$@" -- "$bin" -writes "$WRITES" >"$OUT/$label.out" 2>"$OUT/$label.err" &
    local tp=$!
    while kill -0 $tp 2>/dev/null; do
      s=$(bpftool prog show 2>/dev/null | sed -nE '/on_mapassign/s/.*run_time_ns ([0-9]+) run_cnt ([0-9]+).*/\1 \2/p' | head -1 || true)
      [[ -n $s ]] && stats=$s
      sleep 0.05
    done
    wait $tp
    t1=$(date +%s%N)
    local t; t=$(elapsed_ns "$OUT/$label.out")
    read -r rt cnt <<<"${stats:-0 1}"
    if ((t < best)); then best=$t; best_bpf=$((rt / cnt)); best_wall=$(((t1 - t0) / 1000000)); fi
  done
  awk -v l="$label" -v n="$WRITES" -v b="$best_untraced" -v o="$best" -v bpf="$best_bpf" -v w="$best_wall" \
    'BEGIN { printf "%-14s %12.1f %14.1f %14d %12d\n", l, b / n, (o - b) / n, bpf, w }'
}

printf '%-14s %12s %14s %14s %12s\n' run untraced_ns/w added_ns/w bpf_ns/event tracer_ms
traced plain
traced pprof --pprof "$OUT/cost.pb.gz" --folded "$OUT/cost.folded"
printf 'profile %s bytes, folded %s bytes\n' "$(stat -c %s "$OUT/cost.pb.gz")" "$(stat -c %s "$OUT/cost.folded")"
