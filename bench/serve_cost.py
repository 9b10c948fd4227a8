#!/usr/bin/env python3
"""The agent's own cost (root): CPU and memory of `serve -p PID` watching an idle Go program
(tests/go/workload held before its first write), for several agent builds or configurations
side by side, in interleaved rounds so that machine noise hits each equally. Prints a table:
median and min-max over the rounds of the agent's CPU (percent of one core over WINDOW s after a
WARMUP s start), its RSS at the end of the window and its peak RSS (VmHWM).

Usage: bench/serve_cost.py WORKLOAD ROUNDS WINDOW NAME=BINARY[,ARG...] ...
  e.g. bench/serve_cost.py target/gotest/workload/*/workload-go1.27.3-plain 10 20 \\
         before=/tmp/emt-before after=target/release/ebpf-map-trace \\
         after-tls=target/release/ebpf-map-trace,--web.config.file,/tmp/web.yml
"""
import os, signal, socket, statistics, subprocess, sys, time

WARMUP = 5.0
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICK  # utime + stime


def status_kb(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def one_run(workload, binary, extra, window):
    target = subprocess.Popen([workload, "-wait", "-rate", "1000", "-duration", "600"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    target.stdout.readline()  # {"event":"ready"}: blocked until SIGUSR1, never sent: idle
    serve = subprocess.Popen([binary, "serve", "-p", str(target.pid),
                              "--listen", f"127.0.0.1:{free_port()}", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(WARMUP)
        c0, t0 = cpu_seconds(serve.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(serve.pid), time.monotonic()
        rss, hwm = status_kb(serve.pid, "VmRSS"), status_kb(serve.pid, "VmHWM")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        target.kill()
        target.wait()
    return 100.0 * (c1 - c0) / (t1 - t0), rss / 1024, hwm / 1024


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    workload, rounds, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    configs = []
    for spec in sys.argv[4:]:
        name, rest = spec.split("=", 1)
        binary, *extra = rest.split(",")
        configs.append((name, binary, extra))
    results = {name: [] for name, _, _ in configs}
    for r in range(rounds):
        for name, binary, extra in configs:
            results[name].append(one_run(workload, binary, extra, window))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    print(f"serve -p PID, idle Go target, {rounds} interleaved rounds, CPU over {window:.0f} s")
    print(f"{'agent':<12} {'CPU % median':>12} {'(min-max)':>14} {'RSS MiB':>8} {'(min-max)':>14}"
          f" {'peak RSS MiB':>12}")
    for name, rows in results.items():
        cpu = [c for c, _, _ in rows]
        rss = [m for _, m, _ in rows]
        hwm = [h for _, _, h in rows]
        print(f"{name:<12} {statistics.median(cpu):>12.2f} {f'({min(cpu):.2f}-{max(cpu):.2f})':>14}"
              f" {statistics.median(rss):>8.1f} {f'({min(rss):.1f}-{max(rss):.1f})':>14}"
              f" {statistics.median(hwm):>12.1f}")


if __name__ == "__main__":
    main()
