#!/usr/bin/env python3
"""The agent on an HTTP server (root): tests/go/kvserver on loopback under one closed-loop
client (`hey -c CONC`, each client waits for its answer) running throughout, while `serve -p
PID` (budget mode, --overhead OVERHEAD) is started and stopped: PAIRS interleaved pairs of
SECONDS-long segments with and without the agent (the order alternates; the agent gets 4 s to
calibrate and attach before its segment). One server and one client for all pairs keep their
own run-to-run spread (heap sizes, GC pacing, a new client's connections) out of the ratios.
Per pair: the server's throughput (bytes it moved per second) with / without, its own CPU time
per byte with / without (the slowdown the budget bounds; the server's bytes per request are
fixed), and the agent's CPU (% of one core, from its threads' schedstat) and peak RSS, with
the write rate it estimated. Then the agent on the idle server (CPU over SECONDS, RSS). Prints
a table: median and min-max over the pairs.

Usage: [OVERHEAD=1] bench/agent_cost.py TRACER KVSERVER [PAIRS] [SECONDS] [CONC]
"""
import json, os, signal, statistics, subprocess, sys, time, urllib.request

from serve_cost import free_port, status_kb


def threads_cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        except OSError:
            pass
    return total


def writes_total(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("gomap_writes_total{"))


def start_server(kvserver):
    p = subprocess.Popen([kvserver, "-addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(p.stdout.readline())
    return p, ready["addr"]


def stop_server(p):
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    done = [json.loads(l) for l in out.splitlines() if '"done"' in l][-1]
    return done


def io_bytes(pid):
    io = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().splitlines())
    return int(io["rchar"]) + int(io["wchar"])


# The agent's budget (--overhead, %).
OVERHEAD = os.environ.get("OVERHEAD", "1")


def segment(tracer, server, seconds, traced):
    """One segment of the running load, with `serve -p` attached (traced) or not: the server's
    CPU per byte and bytes per second, and the agent's costs."""
    agent = None
    row = {}
    try:
        if traced:
            port = free_port()
            agent = subprocess.Popen([tracer, "serve", "-p", str(server.pid), "--overhead", OVERHEAD,
                                      "--listen", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(4)  # calibration, attach
            c0, w0 = threads_cpu_ns(agent.pid), writes_total(port)
        else:
            time.sleep(0.5)
        s0, b0, t0 = threads_cpu_ns(server.pid), io_bytes(server.pid), time.monotonic()
        time.sleep(seconds)
        s1, b1, t1 = threads_cpu_ns(server.pid), io_bytes(server.pid), time.monotonic()
        row["bytes_s"] = (b1 - b0) / (t1 - t0)
        row["cpu_per_byte"] = (s1 - s0) / max(b1 - b0, 1)
        if traced:
            c1, w1 = threads_cpu_ns(agent.pid), writes_total(port)
            row["agent_cpu"] = 100.0 * (c1 - c0) / 1e9 / (t1 - t0)
            row["writes_s"] = (w1 - w0) / (t1 - t0)
            row["hwm"] = status_kb(agent.pid, "VmHWM") / 1024
    finally:
        if agent:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
    return row


def idle(tracer, kvserver, seconds):
    server, _ = start_server(kvserver)
    port = free_port()
    agent = subprocess.Popen([tracer, "serve", "-p", str(server.pid), "--listen",
                              f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        c0, t0 = threads_cpu_ns(agent.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = threads_cpu_ns(agent.pid), time.monotonic()
        return (100.0 * (c1 - c0) / 1e9 / (t1 - t0), status_kb(agent.pid, "VmRSS") / 1024,
                status_kb(agent.pid, "VmHWM") / 1024)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        stop_server(server)


def med(v):
    return f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    tracer, kvserver = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    conc = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    ratio, slow, cpu, wps, hwm = [], [], [], [], []
    server, addr = start_server(kvserver)
    load = subprocess.Popen(["hey", "-z", f"{pairs * (2 * seconds + 6) + 30}s", "-c", str(conc),
                             f"http://{addr}/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # connections up, server warm
        for i in range(pairs):
            order = [False, True] if i % 2 == 0 else [True, False]
            r = {t: segment(tracer, server, seconds, t) for t in order}
            ratio.append(100.0 * r[True]["bytes_s"] / r[False]["bytes_s"])
            slow.append(100.0 * (r[True]["cpu_per_byte"] / r[False]["cpu_per_byte"] - 1.0))
            cpu.append(r[True]["agent_cpu"])
            wps.append(r[True]["writes_s"])
            hwm.append(r[True]["hwm"])
            print(f"pair {i}: throughput with the agent {ratio[-1]:.1f} % of without, server CPU "
                  f"per byte {slow[-1]:+.2f} %, agent {cpu[-1]:.2f} % at {wps[-1]:.0f} writes/s, "
                  f"peak RSS {hwm[-1]:.1f} MiB", file=sys.stderr, flush=True)
    finally:
        load.kill()
        load.wait()
        stop_server(server)
    icpu, irss, ihwm = idle(tracer, kvserver, seconds)
    load = os.getloadavg()
    print(f"kvserver under one hey -c {conc}, segments of {seconds} s with and without serve "
          f"--overhead {OVERHEAD}, {pairs} interleaved pairs; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| measure | median (min–max) |")
    print("|---|---|")
    print(f"| throughput under serve, % of without | {med(ratio)} |")
    print(f"| server CPU per byte (per request), with vs without, % | {med(slow)} |")
    print(f"| agent CPU, % of a core, busy | {med(cpu)} |")
    print(f"| writes/s the agent estimated | {med(wps)} |")
    print(f"| agent peak RSS busy, MiB | {med(hwm)} |")
    print(f"| agent CPU, % of a core, idle server | {icpu:.2f} |")
    print(f"| agent RSS / peak, idle server, MiB | {irss:.1f} / {ihwm:.1f} |")


if __name__ == "__main__":
    main()
