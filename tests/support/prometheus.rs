//! A real Prometheus server for tests (Debian's /usr/bin/prometheus), its storage in a temp dir,
//! scraping every second; PromQL queries and scrape-target states through its HTTP API. Needs
//! the test crate's `http` support module.
#![allow(dead_code)] // each test file uses part of it
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::http;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    /// Scrapes `target` (`host:port`, plain HTTP) as job `ebpf-map-trace`.
    pub fn start(target: &str) -> Prometheus {
        Prometheus::with_jobs(&format!(
            "  - job_name: ebpf-map-trace\n    static_configs:\n      - targets: ['{target}']\n"
        ))
    }

    /// Runs with `jobs`, the YAML list under `scrape_configs:` (indented by two spaces).
    pub fn with_jobs(jobs: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install the Debian package prometheus (./setup does)"
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("emt-prometheus-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let addr = http::free_addr();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run /usr/bin/prometheus");
        Prometheus { child, dir, addr }
    }

    /// The result vector of an instant query.
    pub fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", http::encode(promql));
        self.api(&path)?["result"].as_array().cloned()
    }

    /// The active scrape targets (`/api/v1/targets`): job, health, lastError…
    pub fn targets(&self) -> Option<Vec<Value>> {
        self.api("/api/v1/targets")?["activeTargets"]
            .as_array()
            .cloned()
    }

    fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = http::get(&self.addr, path, None)?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
