//! `serve` safe on a shared network: a real Prometheus scrapes it over TLS with basic auth (the
//! exporter-toolkit web config) and gets the hot key, with or without a client certificate its
//! CA signed, while a wrong password gets 401, a certificate from another CA fails the
//! handshake and plain HTTP to the TLS port is refused; a broken web config is one error line at start. On a
//! non-loopback `--listen`, no key value of the traced program appears anywhere in `/hotkeys`
//! or `/metrics` (only hashes), unless `--expose-keys`.
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/tracer.rs"]
mod tracer;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{GoProcess, Variant};
use prometheus::Prometheus;
use serde_json::Value;
use tracer::Tracer;

const MAP: &str = "map[string]int";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "serve tests need root");
}

/// The workload writing "key:N" keys and, from its start, the hot key "hot:1".
fn start_workload() -> GoProcess {
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    GoProcess::start_waiting(
        &bin,
        &["-rate", "20000", "-duration", "60", "-hot-after", "0"],
    )
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("emt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is missing: install the Debian package openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca` (`ca.crt`, `ca.key`) made now in `dir`.
fn make_ca(dir: &Path, ca: &str) {
    let (crt, key) = (format!("{ca}.crt"), format!("{ca}.key"));
    let subject = format!("/CN=emt-test-{ca}");
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", &subject];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &crt]);
    openssl(dir, &args);
}

/// A key pair `name.key`, `name.crt` for `subject_alt_name` (e.g. `IP:127.0.0.1`), signed by
/// the CA `ca` of `dir`.
fn make_leaf(dir: &Path, name: &str, ca: &str, subject_alt_name: &str) {
    let (crt, key, csr, ext) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-subj", &subject];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={subject_alt_name}\n"),
    )
    .unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A Prometheus job scraping `target`, YAML under `scrape_configs:`.
fn job(name: &str, target: &str, extra: &str) -> String {
    format!("  - job_name: {name}\n{extra}    static_configs:\n      - targets: ['{target}']\n")
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_the_rest_is_refused() {
    require_root();
    let dir = tempdir("tls");
    // The agent's CA signs its certificate and one client's; another CA signs a stranger's.
    make_ca(&dir, "ca");
    make_leaf(&dir, "server", "ca", "IP:127.0.0.1");
    make_leaf(&dir, "client", "ca", "DNS:prometheus");
    make_ca(&dir, "other-ca");
    make_leaf(&dir, "stranger", "other-ca", "DNS:prometheus");
    let hash = bcrypt::hash("s3cret", 8).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let target = start_workload();
    let listen = http::free_addr();
    let pid = target.pid().to_string();
    let mut serve = Tracer::spawn(&[
        "serve",
        "-p",
        &pid,
        "--listen",
        &listen,
        "--refresh",
        "0.5",
        "--metrics-key-label",
        "value",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    serve.wait_attached();
    target.release();

    let ca = dir.join("ca.crt");
    let tls = |password: &str, client: Option<&str>| {
        let cert = client
            .map(|c| {
                let (crt, key) = (dir.join(format!("{c}.crt")), dir.join(format!("{c}.key")));
                format!(
                    "      cert_file: {}\n      key_file: {}\n",
                    crt.display(),
                    key.display()
                )
            })
            .unwrap_or_default();
        format!(
            "    scheme: https\n    tls_config:\n      ca_file: {}\n{cert}    \
             basic_auth:\n      username: prometheus\n      password: {password}\n",
            ca.display()
        )
    };
    let jobs = job("good", &listen, &tls("s3cret", None))
        + &job("client-cert", &listen, &tls("s3cret", Some("client")))
        + &job("stranger-cert", &listen, &tls("s3cret", Some("stranger")))
        + &job("wrong", &listen, &tls("guess", None))
        + &job("plain", &listen, "");
    let prom = Prometheus::with_jobs(&jobs);

    // With the CA and the right password: the hot key, at rank 1.
    // So with a client certificate the agent's CA signed.
    for job in ["good", "client-cert"] {
        let q =
            format!("gomap_hot_key_writes_per_second{{job=\"{job}\",map=\"{MAP}\",rank=\"1\"}}");
        common::poll(
            40,
            &format!("the hot key scraped over TLS by {job}"),
            || {
                prom.query(&q)?
                    .into_iter()
                    .find(|s| s["metric"]["key"] == "hot:1")
            },
        );
    }
    // The wrong password and plain HTTP are refused, and Prometheus says why.
    let down = |job: &str, why: &str| {
        common::poll(20, &format!("job {job} down with {why}"), || {
            prom.targets()?.into_iter().find(|t| {
                t["labels"]["job"] == job
                    && t["health"] == "down"
                    && t["lastError"].as_str().unwrap_or("").contains(why)
            })
        })
    };
    down("wrong", "401 Unauthorized");
    down("plain", "400 Bad Request");
    // A client certificate from another CA fails the handshake, right password or not.
    down("stranger-cert", "tls: ");
    for job in ["wrong", "plain", "stranger-cert"] {
        let stored = prom
            .query(&format!("gomap_hot_key_writes_per_second{{job=\"{job}\"}}"))
            .unwrap_or_default();
        assert!(stored.is_empty(), "job {job} got metrics: {stored:?}");
    }
    // Plain HTTP to the TLS port: a 400 that explains, and no metric in it.
    let (status, body) = http::get(&listen, "/metrics", None).expect("an answer");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("HTTPS server") && !body.contains("gomap_"),
        "{body}"
    );
    // The same with the request in two segments: the whole head is read before the answer (a
    // socket closed with unread input resets the connection before the client reads it).
    let mut s = std::net::TcpStream::connect(&listen).expect("connect to the TLS port");
    s.write_all(b"GET /metrics HTTP/1.0\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let early = s.read(&mut [0u8; 1]);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "answered (or closed) before the request's head was whole: {early:?}"
    );
    s.write_all(b"Host: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .expect("the answer to a request sent in two segments");
    assert!(
        answer.starts_with("HTTP/1.0 400") && answer.contains("HTTPS server"),
        "{answer}"
    );

    drop(target);
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");
    assert!(
        err.contains(&format!("serving https://{listen}/metrics")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve ARGS` that must fail at start: its one stderr line.
/// (Watchdog: a serve that starts instead is killed after 30 s and fails the test.)
fn refused(args: &[&str]) -> String {
    let out = common::run_command(
        Command::new(tracer::TRACER).arg("serve").args(args),
        Duration::from_secs(30),
    );
    let err = out.stderr;
    common::assert_no_crash(out.status, &format!("serve {args:?}"));
    assert!(!out.status.success(), "serve {args:?} must fail: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("ebpf-map-trace: error: "), "{err}");
    err
}

#[test]
fn a_broken_web_config_or_a_key_label_that_would_leak_is_one_line_at_start() {
    let dir = tempdir("webcfg");
    let cases = [
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: x.key\n",
            "cert_file /nonexistent.crt",
        ),
        (
            "tls_server_config:\n  cert_file: /dev/null\n",
            "needs key_file",
        ),
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "alice: not a bcrypt hash",
        ),
        ("tls_server_confg: {}\n", "unknown field `tls_server_confg`"),
        (
            "tls_server_config:\n  client_auth_type: RequireAnyClientCert\n",
            "not supported",
        ),
    ];
    for (i, (text, why)) in cases.iter().enumerate() {
        let f = dir.join(format!("web{i}.yml"));
        std::fs::write(&f, text).unwrap();
        let err = refused(&["-p", "1", "--web.config.file", f.to_str().unwrap()]);
        assert!(
            err.contains(&format!("web config {}", f.display())),
            "{err}"
        );
        assert!(err.contains(why), "{text}: {err}");
    }
    let err = refused(&[
        "-p",
        "1",
        "--listen",
        "0.0.0.0:0",
        "--metrics-key-label",
        "value",
    ]);
    assert!(err.contains("--expose-keys"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Both answers of a scrape: `/hotkeys` and `/metrics` (Prometheus text and OpenMetrics).
fn bodies(addr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (path, accept) in [
        ("/hotkeys", None),
        ("/metrics", None),
        (
            "/metrics",
            Some("application/openmetrics-text; version=1.0.0"),
        ),
    ] {
        let (status, body) = http::get(addr, path, accept).expect("an answer");
        assert_eq!(status, 200, "{path}: {body}");
        out.push(body);
    }
    out
}

fn top_key(addr: &str) -> Option<String> {
    let (_, body) = http::get(addr, "/hotkeys", None)?;
    let r: Value = serde_json::from_str(&body).ok()?;
    r["maps"].as_array()?.iter().find(|m| m["type"] == MAP)?["top_keys"][0]["key"]
        .as_str()
        .map(String::from)
}

#[test]
fn non_loopback_listen_serves_no_key_value_unless_expose_keys() {
    require_root();
    let target = start_workload();
    let pid = target.pid().to_string();
    // Listening on every address (what the DaemonSet does); scraped here through loopback,
    // which is the same socket: the decision follows --listen, not who asks.
    let port = http::free_addr().rsplit(':').next().unwrap().to_string();
    let listen = format!("0.0.0.0:{port}");
    let local = format!("127.0.0.1:{port}");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["serve", "-p", &pid, "--listen", &listen, "--refresh", "0.5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut serve = Tracer::spawn_program(Path::new(tracer::TRACER), &args(&[]));
    serve.wait_attached();
    target.release();
    // The hot key is there, as its hash.
    let hashed = common::key_hash("hot:1");
    common::poll(20, "the hot key's hash on top", || {
        (top_key(&local)? == hashed).then_some(())
    });
    let all = bodies(&local);
    assert!(
        all[1].contains(hashed.trim_start_matches('#')),
        "{}",
        all[1]
    );
    for body in &all {
        for value in ["hot:1", "key:"] {
            assert!(!body.contains(value), "key value {value:?} served:\n{body}");
        }
    }
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");

    // --expose-keys: the values, in /hotkeys and (asked for) as metric labels.
    let mut serve = Tracer::spawn_program(
        Path::new(tracer::TRACER),
        &args(&["--expose-keys", "--metrics-key-label", "value"]),
    );
    serve.wait_attached();
    common::poll(20, "hot:1 on top", || {
        (top_key(&local)? == "hot:1").then_some(())
    });
    common::poll(10, "key=\"hot:1\" in /metrics", || {
        bodies(&local)[1].contains("key=\"hot:1\"").then_some(())
    });
    drop(target);
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");
}
