#!/usr/bin/env python3
"""What one traced process costs in memory (root): `serve -p PID` on tests/go/workload at a given
write rate, per mode. After SETTLE s it reads the agent's RSS and peak RSS, the part of its RSS
that is mmapped BPF maps (the ring buffer: `anon_inode:bpf-map` in /proc/PID/smaps), the
kernel's memlock accounting of each BPF map the agent holds (its fds' fdinfo), and the
events lost (ring full). Prints a table.

Usage: bench/serve_memory.py AGENT WORKLOAD [SETTLE] [RATE...]   (RATE 0: an idle target;
  "tight": writes in a tight loop)
"""
import json, os, re, signal, subprocess, sys, time, urllib.request

from serve_cost import free_port, status_kb


def status_mib(pid, field):
    return status_kb(pid, field) / 1024


def bpf_map_rss_mib(pid):
    """Rss of the agent's mmapped BPF maps (ring buffers), from smaps."""
    total, in_map = 0, False
    for line in open(f"/proc/{pid}/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            in_map = "anon_inode:bpf-map" in line
        elif in_map and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total / 1024


def bpf_maps(pid):
    """The BPF maps the agent holds (its fds' fdinfo), by name: (memlock bytes, max_entries)."""
    fds = f"/proc/{pid}/fdinfo"
    ids = {}
    for fd in os.listdir(fds):
        try:
            info = dict(l.split(":", 1) for l in open(f"{fds}/{fd}") if ":" in l)
        except OSError:
            continue
        if "map_id" in info:
            ids[int(info["map_id"])] = (int(info.get("memlock", "0")), int(info["max_entries"]))
    out = {}
    for map_id, (memlock, entries) in ids.items():
        show = subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                              capture_output=True, text=True).stdout
        name = json.loads(show).get("name", str(map_id)) if show else str(map_id)
        out[name] = (memlock, entries)
    return out


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith(name))


def measure(agent, workload, mode, rate, settle):
    args = ["-duration", str(settle + 30), "-hot-after", "0"]
    if rate == "tight":
        args = ["-writes", "2000000000"]
    elif rate != "0":
        args += ["-rate", rate]
    else:
        args = ["-wait"]  # held before its first write: idle
    target = subprocess.Popen([workload, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    if rate == "0":
        target.stdout.readline()
    port = free_port()
    serve = subprocess.Popen([agent, "serve", "-p", str(target.pid), "--mode", mode,
                              "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        row = {
            "rss": status_mib(serve.pid, "VmRSS"),
            "hwm": status_mib(serve.pid, "VmHWM"),
            "ring_rss": bpf_map_rss_mib(serve.pid),
            "maps": bpf_maps(serve.pid),
            "lost": metric(port, "gomap_lost_events_total"),
            "writes": metric(port, "gomap_writes_total"),
        }
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        target.kill()
        target.wait()
    return row


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    agent, workload = sys.argv[1], sys.argv[2]
    settle = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    rates = sys.argv[4:] or ["0", "20000", "tight"]
    print(f"serve -p PID, one process, after {settle:.0f} s (MiB)")
    print(f"{'mode':<7} {'writes/s':>9} {'RSS':>7} {'peak':>7} {'ring RSS':>9} {'user RSS':>9}"
          f" {'memlock':>8} {'lost':>10} {'writes':>12}  memlock by map")
    for mode in ["exact", "budget"]:
        for rate in rates:
            r = measure(agent, workload, mode, rate, settle)
            memlock = sum(b for b, _ in r["maps"].values()) / 2**20
            by_map = ", ".join(f"{n} {b / 2**20:.2f}" for n, (b, _) in sorted(r["maps"].items())
                               if b >= 2**16)
            print(f"{mode:<7} {rate:>9} {r['rss']:>7.1f} {r['hwm']:>7.1f} {r['ring_rss']:>9.1f}"
                  f" {r['rss'] - r['ring_rss']:>9.1f} {memlock:>8.1f} {r['lost']:>10.0f}"
                  f" {r['writes']:>12.0f}  {by_map}", flush=True)


if __name__ == "__main__":
    main()
