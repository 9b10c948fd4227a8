#!/usr/bin/env python3
"""sync.Map budget benchmark (root): the slowdown `top --overhead 1` costs a program whose
sync.Map operations are decided at a single-stepped RET probe (LoadAndDelete), side by side with
the same program untraced. tests/go/syncmap's paced scenario (-rate 20000 -duration 5: a Store
and a LoadAndDelete per round) runs PAIRS times untraced and traced, interleaved; the slowdown
is the traced run's CPU time (its rusage) over its untraced pair's. Prints the median and the
range. Usage: PAIRS=10 bench/sync_budget.py [GO_VERSION]  (builds with cargo and the suite's Go
toolchains first: run `./setup` once)."""
import glob, os, signal, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = int(os.environ.get("PAIRS", "10"))
GO = sys.argv[1] if len(sys.argv) > 1 else "1.27.3"


def program():
    found = glob.glob(f"{ROOT}/target/gotest/syncmap/*/syncmap-go{GO}-plain")
    if not found:
        sys.exit(f"no syncmap build for Go {GO}: run `cargo test --test syncmap` once (it builds it)")
    return found[0]


def cpu_of_run(prog, tracer):
    """CPU seconds of one paced run, traced by `tracer` (None: untraced)."""
    p = subprocess.Popen([prog, "-wait", "-rate", "20000", "-duration", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.readline()  # ready
    t = None
    if tracer:
        t = subprocess.Popen([tracer, "top", "-p", str(p.pid), "--json", "--overhead", "1",
                              "--duration", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)  # attached (calibration and the first probes take ~1 s)
    os.kill(p.pid, signal.SIGUSR1)
    p.stdout.read()
    _, _, ru = os.wait4(p.pid, 0)
    if t:
        t.send_signal(signal.SIGINT)
        t.wait()
    return ru.ru_utime + ru.ru_stime


def main():
    subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT, check=True)
    tracer = f"{ROOT}/target/release/ebpf-map-trace"
    prog = program()
    slowdowns = []
    for i in range(PAIRS):
        base = cpu_of_run(prog, None)
        traced = cpu_of_run(prog, tracer)
        slowdowns.append(100 * (traced / base - 1))
        print(f"pair {i + 1}: untraced {base:.3f} s, traced {traced:.3f} s CPU", file=sys.stderr)
    print(f"| Go {GO} sync.Map paced (Store + LoadAndDelete, 20k rounds/s, 5 s) | pairs | "
          f"slowdown median | range |")
    print("|---|---|---|---|")
    print(f"| top --overhead 1 | {PAIRS} | {statistics.median(slowdowns):+.1f} % | "
          f"{min(slowdowns):+.1f} … {max(slowdowns):+.1f} % |")


if __name__ == "__main__":
    main()
