//! The agent's HTTP(S) endpoints: `/metrics` (OpenMetrics or Prometheus text), `/hotkeys`
//! (JSON report), `/healthz`. Served by hyper (HTTP/1.1) on a one-thread tokio runtime of its
//! own thread while the live loops run; TLS by rustls and basic authentication as the web config
//! (`web_config`) says. `/healthz` answers without credentials (it tells nothing but "ok"), so
//! kubelet probes need none.
use std::convert::Infallible;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use parking_lot::Mutex;

use super::metrics::Exporter;
use super::web_config::{basic_credentials, BasicAuth, WebConfig};
use crate::report::merge::Latest;

/// What the endpoints serve, shared with the live loops that update it.
pub struct Agent {
    pub metrics: Exporter,
    /// Every process's latest report, merged for `/hotkeys`.
    pub reports: Latest,
}

pub type Shared = Arc<Mutex<Agent>>;

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A client that connects and sends nothing is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` (an error if it cannot) and serves on a new thread; `web` is the web
    /// config now, `reload` re-reads it when its files change.
    pub fn start(
        listen: &str,
        web: WebConfig,
        reload: Option<super::web_config::Watch>,
        agent: Shared,
    ) -> Result<Self> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            // The blocking pool only checks passwords with bcrypt: one thread, so that a flood
            // of wrong passwords costs at most one core, queued, never hundreds of threads.
            .max_blocking_threads(1)
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, web, reload, agent) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(HttpServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    mut web: WebConfig,
    mut reload: Option<super::web_config::Watch>,
    agent: Shared,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or the like: do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Some(new) = reload.as_mut().and_then(|w| w.changed()) {
            match new {
                Ok(w) => {
                    eprintln!("ebpf-map-trace: web config reloaded");
                    web = w;
                }
                Err(e) => eprintln!("ebpf-map-trace: {e:#}; keeping the previous one"),
            }
        }
        let web = web.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, web, agent).await;
        });
    }
}

async fn serve_connection(stream: TcpStream, web: WebConfig, agent: Shared) -> Result<()> {
    let headers = Arc::new(web.headers.clone());
    let auth = web.auth.clone();
    let service = hyper::service::service_fn(move |req| {
        handle(req, agent.clone(), auth.clone(), headers.clone())
    });
    let http = {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT);
        b
    };
    match web.tls {
        None => http.serve_connection(TokioIo::new(stream), service).await?,
        Some(tls) => {
            if plain_http_on_tls_port(&stream).await {
                refuse_plain_http(stream).await?;
                return Ok(());
            }
            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
            let tls_stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await??;
            http.serve_connection(TokioIo::new(tls_stream), service)
                .await?
        }
    }
    Ok(())
}

/// Whether the client opened with plain text (an HTTP request line) rather than a TLS record
/// (whose first byte is 0x16, a handshake).
async fn plain_http_on_tls_port(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0].is_ascii_uppercase(),
        _ => false,
    }
}

/// Answers a plain-HTTP request on the TLS port as Go's servers do: a 400 that says why, rather
/// than a TLS alert the client cannot read. The request's head is read first, to its blank line
/// however many segments it came in (closing a socket with unread input would reset the
/// connection before the client reads the answer).
async fn refuse_plain_http(mut stream: TcpStream) -> Result<()> {
    let read_head = async {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head).await;
    stream
        .write_all(
            b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
              Client sent an HTTP request to an HTTPS server.\n",
        )
        .await?;
    stream.shutdown().await?;
    Ok(())
}

type Body = Full<Bytes>;

async fn handle(
    req: Request<Incoming>,
    agent: Shared,
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<Vec<(String, String)>>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut response = if path != "/healthz" && !authorized(&req, auth).await {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "Unauthorized\n".into(),
            "text/plain",
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ebpf-map-trace\""),
        );
        r
    } else {
        let openmetrics = req.headers().get_all(ACCEPT).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .contains("application/openmetrics-text")
        });
        answer(&path, openmetrics, &agent)
    };
    for (name, value) in headers.iter() {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    Ok(response)
}

/// Whether the request carries the credentials of a configured user (always, without users).
async fn authorized(req: &Request<Incoming>, auth: Option<Arc<BasicAuth>>) -> bool {
    let Some(auth) = auth else {
        return true;
    };
    let Some((user, password)) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials)
    else {
        return false;
    };
    if auth.cached(&user, &password) {
        return true;
    }
    // bcrypt takes tens of milliseconds on purpose: not on the thread serving other scrapes.
    tokio::task::spawn_blocking(move || auth.verify(&user, &password))
        .await
        .unwrap_or(false)
}

fn text(code: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer(path: &str, openmetrics: bool, agent: &Shared) -> Response<Body> {
    let agent = agent.lock();
    let (body, content_type, code) = match path {
        "/metrics" if openmetrics => (agent.metrics.render(true), OPENMETRICS, StatusCode::OK),
        "/metrics" => (agent.metrics.render(false), PROMETHEUS_TEXT, StatusCode::OK),
        "/hotkeys" => (
            serde_json::to_string(&agent.reports.merged()).unwrap_or_default() + "\n",
            "application/json",
            StatusCode::OK,
        ),
        "/healthz" => ("ok\n".to_string(), "text/plain", StatusCode::OK),
        _ => (
            "not found: try /metrics, /hotkeys or /healthz\n".to_string(),
            "text/plain",
            StatusCode::NOT_FOUND,
        ),
    };
    text(code, body, content_type)
}
