#!/usr/bin/env python3
"""Budget-mode benchmark (root): the slowdown `top --overhead 1` costs a Go program, side by side
with the untraced run, plus hot-key recall and time-to-rank-first. Prints a table.

(a) paced: ~50k string-key writes/s (Zipf keys) with SHA-256 work between writes for DURATION s;
    slowdown = 1 - (work done traced / work done untraced). After HOT_AFTER s the key "hot:1"
    takes one write in four; we record when it first ranks first in `top --json`.
    Recall: top-10 keys of the last snapshot vs the program's exact top-10.
(b) tight: N writes in a tight loop (long enough, ~6 s, for the duty cycle to amortize a
    window); slowdown = traced time / untraced time - 1, best of TIGHT_RUNS (env, default 5)
    interleaved runs of each, and the median over the interleaved pairs (this VM's run-to-run
    spread for a 6 s loop is several %, more than the goal).
Slowdowns are given twice: by the target's own CPU time (user + system, from wait4: CPU per unit
of work, robust to other load on this 2-core machine) and by wall time / work done in the
duration (what a user sees; noisy when other processes compete for the cores).
Usage: bench/budget.py [DURATION] [GO_VERSION] [TIGHT_WRITES]
"""
import json, os, signal, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
GO = sys.argv[2] if len(sys.argv) > 2 else "1.26.6"
TIGHT_WRITES = sys.argv[3] if len(sys.argv) > 3 else "300000000"
TIGHT_RUNS = int(os.environ.get("TIGHT_RUNS", "5"))
HOT_AFTER = DURATION / 3
TRACER = os.path.join(ROOT, "target/release/ebpf-map-trace")
OUT = os.path.join(ROOT, "target/bench")

def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)

def build():
    sh(os.path.join(ROOT, "setup"))
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    go = "/usr/lib/go-1.19/bin/go" if GO == "1.19" else os.path.join(ROOT, ".cache/go", GO, "bin/go")
    binp = os.path.join(OUT, "workload-" + GO)
    env = dict(os.environ, GO111MODULE="off", GOTOOLCHAIN="local", GOFLAGS="")
    sh(go, "build", "-o", binp, ".", cwd=os.path.join(ROOT, "tests/go/workload"), env=env)
    return binp

def done_line(text):
    for l in text.splitlines():
        if '"done"' in l:
            return json.loads(l)
    raise SystemExit("workload printed no done line")

def cpu_ns(p):
    """Waits for the process; its user + system CPU time in ns."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return (ru.ru_utime + ru.ru_stime) * 1e9

def run_plain(binp, args):
    p = subprocess.Popen([binp] + args, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    return done_line(out), cpu_ns(p)

def run_traced(binp, args, watch_hot=False):
    """Starts the workload waiting, attaches `top --json`, releases it; returns (done, snapshots, t_hot_first)."""
    p = subprocess.Popen([binp, "-wait"] + args, stdout=subprocess.PIPE, text=True)
    assert '"ready"' in p.stdout.readline()
    top = subprocess.Popen([TRACER, "top", "-p", str(p.pid), "--json", "--overhead", "1", "--refresh", "0.5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    snaps = []
    def reader():
        for line in top.stdout:
            snaps.append((time.time(), json.loads(line)))
    t = threading.Thread(target=reader); t.start()
    time.sleep(2.0)  # attach and calibrate
    t0 = time.time()
    p.send_signal(signal.SIGUSR1)
    out = p.stdout.read(); cpu = cpu_ns(p)
    top.send_signal(signal.SIGINT); top.wait(); t.join()
    first = None
    if watch_hot:
        for ts, s in snaps:
            maps = [m for m in s["maps"] if m["type"] == "map[string]int" and m["top_keys"]]
            if ts > t0 + HOT_AFTER and maps and maps[0]["top_keys"][0]["key"] == "hot:1":
                first = ts - (t0 + HOT_AFTER); break
    return done_line(out), cpu, snaps, first

def main():
    binp = build()
    rate_args = ["-rate", "50000", "-duration", str(DURATION), "-hot-after", str(HOT_AFTER)]
    base_a, cpu_base_a = run_plain(binp, rate_args)
    traced_a, cpu_traced_a, snaps, first = run_traced(binp, rate_args, watch_hot=True)
    tight_args = ["-writes", TIGHT_WRITES]
    # The tight loop's run-to-run spread here (several %) is larger than the goal: best of
    # TIGHT_RUNS interleaved runs each.
    plain_runs, traced_runs = [], []
    for _ in range(TIGHT_RUNS):
        plain_runs.append(run_plain(binp, tight_args))
        traced_runs.append(run_traced(binp, tight_args))
    base_b = min((d for d, _ in plain_runs), key=lambda d: d["elapsed_ns"])
    cpu_base_b = min(c for _, c in plain_runs)
    traced_b = min((r[0] for r in traced_runs), key=lambda d: d["elapsed_ns"])
    cpu_traced_b = min(r[1] for r in traced_runs)
    snaps_b = traced_runs[-1][2]
    pair = sorted(t[1] / p[1] - 1 for p, t in zip(plain_runs, traced_runs))
    slow_a = 1 - traced_a["hashes"] / base_a["hashes"]
    cpu_slow_a = (cpu_traced_a / traced_a["hashes"]) / (cpu_base_a / base_a["hashes"]) - 1
    slow_b = traced_b["elapsed_ns"] / base_b["elapsed_ns"] - 1
    cpu_slow_b = cpu_traced_b / cpu_base_b - 1
    last = snaps[-1][1] if snaps else {"maps": [], "coverage": 0}
    m = [m for m in last["maps"] if m["type"] == "map[string]int"]
    ours = [k["key"] for k in (m[0]["top_keys"][:10] if m else [])]
    truth = [k["key"] for k in traced_a["keys"][:10]]
    recall = len(set(ours) & set(truth)) / 10
    cov_b = snaps_b[-1][1]["coverage"] if snaps_b else 0
    print(f"Go {GO}, duration {DURATION:.0f} s, budget 1 %")
    print(f"{'workload':<32} {'untraced':>14} {'traced':>14} {'slow(cpu)':>9} {'slow(wall)':>10} {'coverage':>9}")
    print(f"{'(a) ~50k writes/s + work (hashes)':<32} {base_a['hashes']:>14} {traced_a['hashes']:>14} {cpu_slow_a*100:>8.2f}% {slow_a*100:>9.2f}% {last['coverage']*100:>8.2f}%")
    print(f"{'(b) tight loop (ms)':<32} {base_b['elapsed_ns']/1e6:>14.1f} {traced_b['elapsed_ns']/1e6:>14.1f} {cpu_slow_b*100:>8.2f}% {slow_b*100:>9.2f}% {cov_b*100:>8.2f}%")
    print(f"(b) per interleaved pair, CPU: median {pair[len(pair) // 2]*100:.2f}%, range {pair[0]*100:.2f}% .. {pair[-1]*100:.2f}% over {len(pair)} pairs")
    print(f"top-10 recall after {DURATION:.0f} s: {recall:.1f}   hot key ranked first after: {('%.2f s' % first) if first is not None else 'never'}")

main()
