#!/usr/bin/env python3
"""Budget-mode accuracy benchmark (root): how often the truth lies inside the error bound that
`top --once --json --overhead 1` states for its estimates, and how wide those bounds are, under
three kinds of load:

(a) closed loop: tests/go/kvserver (an HTTP server on loopback that counts its own per-key
    writes exactly) driven by `ab -c 4 -n REQUESTS` (each client waits for its answer);
(b) open loop: the same server driven by `hey -q RATE -c 4 -z SECONDS` (a fixed request rate,
    far below the server's capacity, so arrivals do not wait for the server);
(c) tight loop: tests/go/workload writing WRITES string keys as fast as it can;
(d) paced loop: tests/go/deletes -rate PACED_RATE -duration SECONDS (string keys written and
    deleted at a fixed rate, the loop sleeping 200 µs between its rounds).

Each run attaches the tracer first (waits for its BPF links on the target), then starts the load,
stops the tracer (SIGINT) once the load is over, and compares every estimate it reports against
the program's own counts: (a, b) the key "GET /" (one write per request, main.countRequest), the
five hottest keys of the sessions map (main.touch) and both maps' totals; (c, d) the five hottest
keys and the map's total (d: writes). Prints one line per run, then per load: estimates inside their bound
(share; goal >= 95 %), median relative error, median relative width of the bound (bound / truth),
median coverage.

Usage: bench/budget_accuracy.py [RUNS=10] [GO_VERSION=1.26.6]
Env: LOADS=closed,open,tight,paced  REQUESTS=30000  RATE=300 (per client)  SECONDS=8
     WRITES=200000000  PACED_RATE=10000
"""
import json, os, signal, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
GO = sys.argv[2] if len(sys.argv) > 2 else "1.26.6"
LOADS = os.environ.get("LOADS", "closed,open,tight,paced").split(",")
REQUESTS = os.environ.get("REQUESTS", "30000")
RATE = os.environ.get("RATE", "300")
SECONDS = os.environ.get("SECONDS", "8")
WRITES = os.environ.get("WRITES", "200000000")
PACED_RATE = os.environ.get("PACED_RATE", "10000")
TRACER = os.path.join(ROOT, "target/release/ebpf-map-trace")
OUT = os.path.join(ROOT, "target/bench")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def go_build(prog):
    go = "/usr/lib/go-1.19/bin/go" if GO == "1.19" else os.path.join(ROOT, ".cache/go", GO, "bin/go")
    binp = os.path.join(OUT, f"{prog}-{GO}")
    env = dict(os.environ, GO111MODULE="off", GOTOOLCHAIN="local", GOFLAGS="")
    sh(go, "build", "-o", binp, ".", cwd=os.path.join(ROOT, "tests/go", prog), env=env)
    return binp


def build():
    for tool in ("ab", "hey"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            raise SystemExit(f"budget_accuracy: {tool} is not installed (apt-get install apache2-utils hey)")
    sh(os.path.join(ROOT, "setup"))
    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    return go_build("kvserver"), go_build("workload"), go_build("deletes")


def holds_target_link(tracer_pid):
    """Whether the tracer holds a BPF link that is not on itself (its calibration probes are)."""
    own_exe = os.readlink(f"/proc/{tracer_pid}/exe")
    try:
        fds = os.listdir(f"/proc/{tracer_pid}/fdinfo")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            info = open(f"/proc/{tracer_pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        if "link_type:" in info and f"name:\t{own_exe}\n" not in info and f"pid:\t{tracer_pid}\n" not in info:
            return True
    return False


def start_tracer(pid):
    t = subprocess.Popen([TRACER, "top", "-p", str(pid), "--once", "--json", "--duration", "600",
                          "--overhead", "1", "--top", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not holds_target_link(t.pid):
        if t.poll() is not None or time.time() - t0 > 60:
            raise SystemExit(f"tracer never attached: {t.stderr.read()}")
        time.sleep(0.02)
    return t


def stop_tracer(t):
    t.send_signal(signal.SIGINT)
    out, err = t.communicate(timeout=60)
    if t.returncode != 0:
        raise SystemExit(f"tracer failed ({t.returncode}): {err}")
    return json.loads(out.strip().splitlines()[-1])


def done_line(text):
    for l in text.splitlines():
        if '"done"' in l:
            return json.loads(l)
    raise SystemExit("the program printed no done line")


def map_by_site(report, function):
    for m in report["maps"]:
        if any(s["function"] == function for s in m["sites"]):
            return m
    raise SystemExit(f"no map written from {function}")


def key_rows(m, truth_keys, label):
    rows = []
    for k in m["top_keys"]:
        if k["key"] in truth_keys:
            rows.append((f"{label}[{k['key']}]", k["writes_estimated"], k["error_bound"], truth_keys[k["key"]]))
    return rows


def server_run(kvserver, load):
    p = subprocess.Popen([kvserver], stdout=subprocess.PIPE, text=True)
    ready = json.loads(p.stdout.readline())
    t = start_tracer(p.pid)
    url = f"http://{ready['addr']}/"
    if load == "closed":
        sh("ab", "-q", "-c", "4", "-n", REQUESTS, url, stdout=subprocess.DEVNULL)
    else:
        sh("hey", "-q", RATE, "-c", "4", "-z", SECONDS + "s", url, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    report = stop_tracer(t)
    p.send_signal(signal.SIGTERM)
    truth = done_line(p.stdout.read())
    p.wait()
    n = truth["requests"]
    keys = {k["key"]: k["writes"] for k in truth["keys"]}
    req, ses = map_by_site(report, "main.countRequest"), map_by_site(report, "main.touch")
    rows = key_rows(req, {"GET /": n}, "requests")
    rows.append(("requests map", req["writes_estimated"], req["error_bound"], n))
    rows.append(("sessions map", ses["writes_estimated"], ses["error_bound"], n))
    rows += key_rows(ses, keys, "sessions")
    return report, rows


def tight_run(workload):
    p = subprocess.Popen([workload, "-wait", "-writes", WRITES], stdout=subprocess.PIPE, text=True)
    assert '"ready"' in p.stdout.readline()
    t = start_tracer(p.pid)
    p.send_signal(signal.SIGUSR1)
    truth = done_line(p.stdout.read())
    p.wait()
    report = stop_tracer(t)
    m = map_by_site(report, "main.writeKey")
    rows = [("map", m["writes_estimated"], m["error_bound"], truth["writes"])]
    rows += key_rows(m, {k["key"]: k["writes"] for k in truth["keys"]}, "key")
    return report, rows


def paced_run(deletes):
    p = subprocess.Popen([deletes, "-wait", "-rate", PACED_RATE, "-duration", SECONDS],
                         stdout=subprocess.PIPE, text=True)
    assert '"ready"' in p.stdout.readline()
    t = start_tracer(p.pid)
    p.send_signal(signal.SIGUSR1)
    out = p.stdout.read()
    p.wait()
    report = stop_tracer(t)
    truth = next(json.loads(l) for l in out.splitlines() if '"counts"' in l)
    m = map_by_site(report, "main.writeString")
    rows = [("map", m["writes_estimated"], m["error_bound"], truth["writes"])]
    rows += key_rows(m, {k["key"]: k["writes"] for k in truth["keys"]}, "key")
    return report, rows


def main():
    kvserver, workload, deletes = build()
    load_avg = os.getloadavg()
    results = {load: [] for load in LOADS}
    for i in range(RUNS):
        for load in LOADS:  # interleaved: noise hits every load alike
            if load == "tight":
                report, rows = tight_run(workload)
            elif load == "paced":
                report, rows = paced_run(deletes)
            else:
                report, rows = server_run(kvserver, load)
            results[load].append((report["coverage"], rows, report.get("estimated_by", "?")))
            inside = sum(abs(e - t) <= b for _, e, b, t in rows)
            first = rows[0]
            print(f"{load:<6} run {i + 1:>2}: coverage {report['coverage'] * 100:6.2f}%  "
                  f"{first[0]} {first[1]} ± {first[2]} (truth {first[3]})  inside {inside}/{len(rows)}",
                  flush=True)
    print(f"\nGo {GO}, {RUNS} runs per load, budget 1 %, load average at start "
          f"{load_avg[0]:.1f} / {load_avg[1]:.1f} / {load_avg[2]:.1f} (1/5/15 min), {os.cpu_count()} CPUs")
    print(f"{'load':<8} {'estimates':>9} {'inside':>8} {'med |err|':>10} {'med width':>10} "
          f"{'p90 width':>10} {'coverage':>9}  clock")
    for load, runs in results.items():
        rows = [r for _, rr, _ in runs for r in rr]
        clocks = sorted({c for _, _, c in runs})
        inside = sum(abs(e - t) <= b for _, e, b, t in rows) / len(rows)
        err = sorted(abs(e - t) / t for _, e, b, t in rows)
        width = sorted(b / t for _, e, b, t in rows)
        cov = statistics.median(c for c, _, _ in runs)
        print(f"{load:<8} {len(rows):>9} {inside * 100:>7.1f}% {statistics.median(err) * 100:>9.1f}% "
              f"{statistics.median(width) * 100:>9.1f}% {width[int(0.9 * (len(width) - 1))] * 100:>9.1f}% "
              f"{cov * 100:>8.2f}%  {','.join(clocks)}")


main()
