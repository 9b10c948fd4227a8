#!/bin/bash
# Budget-mode estimates of a light sync.Map target against its own counts (root): tests/go/syncmap's
# paced scenario (a Store and a LoadAndDelete per round, 20k rounds/s for 5 s, ~4 % of a core)
# under `top -p PID --once --json --overhead 1 --duration 6`, N times. Prints per run the clock,
# coverage, observed writes, the map's estimate ± bound against the truth, and whether each
# ranked key's estimate lies within its bound.
# Usage: N=10 GO=1.27.3 bench/sync_estimates.sh   (needs `cargo test --test syncmap` run once
# to build the program, and a release build of the tracer)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-1.27.3}
PROG=$(ls "$ROOT"/target/gotest/syncmap/*/syncmap-go"$GO"-plain | head -1)
TRACER="$ROOT/target/release/ebpf-map-trace"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for _ in $(seq 1 "${N:-10}"); do
	"$PROG" -wait -rate 20000 -duration 5 > "$TMP/prog.out" &
	PID=$!
	sleep 0.3
	"$TRACER" top -p "$PID" --once --json --overhead 1 --duration 6 --top 5 > "$TMP/report.json" 2> "$TMP/err" &
	T=$!
	sleep 2.5
	kill -USR1 "$PID"
	wait "$PID"
	wait "$T"
	python3 - "$TMP" <<'PY'
import json, sys
d = sys.argv[1]
prog = [json.loads(l) for l in open(f"{d}/prog.out") if '"counts"' in l][-1]
r = json.load(open(f"{d}/report.json"))
m = [m for m in r["maps"] if m["type"] == "sync.Map"][0]
keys = {k["key"]: k for k in prog["keys"]}
inside = [abs(k["writes_estimated"] - keys.get(k["key"], {}).get("writes", 0)) <= k["error_bound"]
          for k in m.get("top_keys", [])]
e, b, t = m["writes_estimated"], m["error_bound"], prog["writes"]
print(f"{r['estimated_by']:12s} coverage {r['coverage']:.2e} observed {m['writes']:5d} "
      f"estimate {e} ± {b} truth {t} inside {abs(e - t) <= b} keys inside {sum(inside)}/{len(inside)}")
PY
done
