//! What the `serve` agent exports: Prometheus metrics (`metrics`), the hot-key report of every
//! watched process merged into one (`report::merge`), and the HTTP(S) endpoints serving them
//! (`http`, secured as `web_config` says).
pub mod http;
pub mod metrics;
pub mod web_config;
