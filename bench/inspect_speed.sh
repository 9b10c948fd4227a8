#!/usr/bin/env bash
# Time of `inspect` (ELF, build info, pclntab, module data, probe sites, goid) on a large real Go
# binary: Debian's prometheus (about 50 MB, stripped, Go 1.19). Prints best and median of 7 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./setup
cargo build --release --quiet
BIN=${1:-/usr/bin/prometheus}
times=()
for _ in 1 2 3 4 5 6 7; do
  s=$(date +%s%N); target/release/ebpf-map-trace inspect "$BIN" --json >/dev/null; e=$(date +%s%N)
  times+=($(( (e - s) / 1000000 )))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
printf 'binary %s (%d MB): inspect best %d ms, median %d ms\n' "$BIN" $(( $(stat -c %s "$BIN") / 1000000 )) "${sorted[0]}" "${sorted[3]}"
