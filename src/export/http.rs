//! The agent's HTTP endpoints (`tiny_http`, on their own thread while the live loops run):
//! `/metrics` (OpenMetrics text), `/hotkeys` (JSON report), `/healthz`.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Response, Server};

use super::hotkeys::Snapshots;
use super::metrics::Exporter;

/// What the endpoints serve, shared with the live loops that update it.
pub struct Agent {
    pub metrics: Exporter,
    pub hotkeys: Snapshots,
}

pub type Shared = Arc<Mutex<Agent>>;

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` (an error if it cannot) and serves on a new thread.
    pub fn start(listen: &str, agent: Shared) -> Result<Self> {
        let server = Server::http(listen).map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(req)) => {
                        let openmetrics = req.headers().iter().any(|h| {
                            h.field.equiv("Accept")
                                && h.value.as_str().contains("application/openmetrics-text")
                        });
                        let response = answer(req.url(), openmetrics, &agent);
                        let _ = req.respond(response);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(HttpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(url: &str, openmetrics: bool, agent: &Shared) -> Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let agent = agent.lock().unwrap_or_else(|e| e.into_inner());
    let (body, content_type, code) = match path {
        "/metrics" if openmetrics => (agent.metrics.render(true), OPENMETRICS, 200),
        "/metrics" => (agent.metrics.render(false), PROMETHEUS_TEXT, 200),
        "/hotkeys" => (
            agent.hotkeys.merged().to_string() + "\n",
            "application/json",
            200,
        ),
        "/healthz" => ("ok\n".to_string(), "text/plain", 200),
        _ => (
            "not found: try /metrics, /hotkeys or /healthz\n".to_string(),
            "text/plain",
            404,
        ),
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    Response::from_string(body)
        .with_header(header)
        .with_status_code(code)
}
