//! The agent's own memory on a real server, against the bound the README states ("What it
//! costs"): `serve` in budget mode (the default) attached to caddy 2.11.7 — a real, stripped,
//! 52 MB Go binary (`./setup` installs it) — while four clients load it over loopback; the
//! agent's peak RSS (`VmHWM`, watched until it ends) stays under the README's number, and the
//! agent saw the requests (a tracer that traces nothing would pass on memory alone).
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/tracer.rs"]
mod tracer;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ChildGuard;
use tracer::Tracer;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "agent_cost needs root (CAP_BPF + CAP_PERFMON)"
    );
}

/// The peak RSS the README states for `serve`/`top` on one process of a 50 MB binary: its line
/// `peak RSS at most N MB`, in bytes (MB = 10^6 bytes).
fn stated_peak_rss() -> u64 {
    let readme = std::fs::read_to_string(common::manifest_dir().join("README.md")).unwrap();
    let words: Vec<&str> = readme.split_whitespace().collect();
    let at = words
        .windows(6)
        .find(|w| w[..4] == ["peak", "RSS", "at", "most"] && w[5].starts_with("MB"))
        .unwrap_or_else(|| panic!("README states no `peak RSS at most N MB`"));
    at[4].parse::<u64>().expect("a whole number of MB") * 1_000_000
}

/// One HTTP/1.0 request to `addr`; whether a whole response came back.
fn request(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).is_ok()
        && raw.starts_with(b"HTTP/1.")
        && raw.get(8..13) == Some(b" 200 ")
}

/// The sum of a metric family's samples in a Prometheus text exposition.
fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn serve_on_a_50_mb_server_stays_under_the_readme_peak_rss() {
    require_root();
    let caddy = common::manifest_dir().join(".cache/programs/caddy-2.11.7/bin/caddy");
    assert!(
        caddy.exists(),
        "{} is missing: ./setup installs caddy 2.11.7",
        caddy.display()
    );
    let size = std::fs::metadata(&caddy).unwrap().len();
    assert!(
        size > 45_000_000,
        "caddy is {size} bytes, not a 50 MB-class binary"
    );
    let dir = std::env::temp_dir().join(format!("agent-cost-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), "<h1>hello</h1>\n").unwrap();
    let addr = http::free_addr();
    let mut server = ChildGuard(
        Command::new(&caddy)
            .args(["file-server", "--listen", &addr, "--root"])
            .arg(dir.join("site"))
            .env("HOME", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start caddy"),
    );
    common::poll(20, "caddy to answer", || request(&addr).then_some(()));

    let listen = http::free_addr();
    let pid = server.id().to_string();
    let mut agent = Tracer::spawn(&["serve", "-p", &pid, "--listen", &listen]);
    agent.wait_attached();
    let agent_pid = agent.child.id();

    // Four clients for 12 s, each waiting for its answer (closed loop).
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, addr) = (stop.clone(), served.clone(), addr.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if request(&addr) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut peak = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(12) {
        peak = peak.max(common::vm_hwm_bytes(agent_pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (status, body) = http::get(&listen, "/metrics", None).expect("serve answers /metrics");
    peak = peak.max(common::vm_hwm_bytes(agent_pid).unwrap_or(0));
    let (st, _, stderr) = agent.terminate();
    common::assert_no_crash(st, "serve");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let requests = served.load(Ordering::Relaxed);
    let writes = metric_sum(&body, "gomap_writes_total");
    let bound = stated_peak_rss();
    eprintln!(
        "caddy ({size} bytes): {requests} requests, serve's estimated writes {writes:.0}, \
         peak RSS {:.1} MB (README: at most {} MB)",
        peak as f64 / 1e6,
        bound / 1_000_000
    );
    assert_eq!(status, 200, "/metrics: {body}");
    assert!(requests > 1000, "only {requests} requests were served");
    // Every request writes caddy's per-request variables map at least once (real_programs
    // counts them exactly): estimates are far from exact, but not a tenth of that.
    assert!(
        writes > requests as f64 / 10.0,
        "serve estimated {writes} writes for {requests} requests: {stderr}"
    );
    assert!(peak > 0, "the agent's VmHWM could not be read");
    assert!(
        peak <= bound,
        "serve's peak RSS {peak} bytes > the README's {bound} bytes"
    );
}
