#!/usr/bin/env python3
"""The agent on an HTTP server (root): tests/go/kvserver on loopback under a closed-loop client
(`hey -c CONC`, each client waits for its answer) for SECONDS, untraced and under
`serve -p PID` (budget mode, --overhead 1), in PAIRS interleaved pairs (the order alternates;
both phases of a pair on one server, warmed up by 2 s of load). Per pair: the server's throughput traced / untraced, its own CPU time per request traced /
untraced (the slowdown the budget bounds), and the agent's CPU (% of one core, from its
threads' schedstat) and peak RSS while busy, with the write rate it estimated. Then the agent
on the idle server (CPU over SECONDS, RSS). Prints a table: median and min-max over the pairs.

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


def hey(addr, seconds, conc):
    """Requests/s and requests answered."""
    out = subprocess.run(["hey", "-z", f"{seconds}s", "-c", str(conc), f"http://{addr}/"],
                         capture_output=True, text=True, check=True).stdout
    rps = answered = None
    for l in out.splitlines():
        if "Requests/sec:" in l:
            rps = float(l.split()[1])
        if l.strip().startswith("[200]"):
            answered = int(l.split()[1])
    if rps is None or not answered:
        raise SystemExit(f"hey printed no Requests/sec or [200] count:\n{out}")
    return rps, answered


# The agent's budget (--overhead, %).
OVERHEAD = os.environ.get("OVERHEAD", "1")


def phase(tracer, server, addr, seconds, conc, traced):
    """One load phase on a running server, with `serve -p` attached (traced) or not: the server's
    own CPU time (its threads' schedstat) per request answered, and the agent's costs."""
    agent = None
    row = {}
    try:
        if traced:
            port = free_port()
            agent = subprocess.Popen([tracer, "serve", "-p", str(server.pid), "--overhead", OVERHEAD,
                                      "--listen", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(4)  # calibration, attach
            c0, w0, t0 = threads_cpu_ns(agent.pid), writes_total(port), time.monotonic()
        s0 = threads_cpu_ns(server.pid)
        row["rps"], answered = hey(addr, seconds, conc)
        row["cpu_per_req"] = (threads_cpu_ns(server.pid) - s0) / answered
        if traced:
            c1, w1, t1 = threads_cpu_ns(agent.pid), writes_total(port), time.monotonic()
            row["agent_cpu"] = 100.0 * (c1 - c0) / 1e9 / (t1 - t0)
            row["writes_s"] = (w1 - w0) / (t1 - t0)
            row["hwm"] = status_kb(agent.pid, "VmHWM") / 1024
    finally:
        if agent:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=30)
    return row


def pair(tracer, kvserver, seconds, conc, order):
    """Both phases of a pair on one server (warmed up first): the server's own run-to-run
    spread (heap sizes, GC pacing, where its threads land) does not enter the ratio."""
    server, addr = start_server(kvserver)
    try:
        hey(addr, 2, conc)
        return {t: phase(tracer, server, addr, seconds, conc, t) for t in order}
    finally:
        stop_server(server)


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
    for i in range(pairs):
        order = [False, True] if i % 2 == 0 else [True, False]
        r = pair(tracer, kvserver, seconds, conc, order)
        ratio.append(100.0 * r[True]["rps"] / r[False]["rps"])
        slow.append(100.0 * (r[True]["cpu_per_req"] / r[False]["cpu_per_req"] - 1.0))
        cpu.append(r[True]["agent_cpu"])
        wps.append(r[True]["writes_s"])
        hwm.append(r[True]["hwm"])
        print(f"pair {i}: untraced {r[False]['rps']:.0f} req/s, traced {r[True]['rps']:.0f} "
              f"({ratio[-1]:.1f} %), CPU/request {slow[-1]:+.2f} %, agent {cpu[-1]:.2f} % "
              f"at {wps[-1]:.0f} writes/s, peak RSS {hwm[-1]:.1f} MiB", file=sys.stderr, flush=True)
    icpu, irss, ihwm = idle(tracer, kvserver, seconds)
    load = os.getloadavg()
    print(f"kvserver, hey -c {conc} for {seconds} s, {pairs} interleaved pairs; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| measure | median (min–max) |")
    print("|---|---|")
    print(f"| throughput under serve, % of untraced | {med(ratio)} |")
    print(f"| server CPU per request, traced vs untraced, % | {med(slow)} |")
    print(f"| agent CPU, % of a core, busy | {med(cpu)} |")
    print(f"| writes/s the agent estimated | {med(wps)} |")
    print(f"| agent peak RSS busy, MiB | {med(hwm)} |")
    print(f"| agent CPU, % of a core, idle server | {icpu:.2f} |")
    print(f"| agent RSS / peak, idle server, MiB | {irss:.1f} / {ihwm:.1f} |")


if __name__ == "__main__":
    main()
