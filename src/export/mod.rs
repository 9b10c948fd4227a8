//! What the `serve` agent exports: Prometheus metrics (`metrics`), the hot-key report of every
//! watched process merged into one (`hotkeys`), and the HTTP endpoints serving them (`http`).
pub mod hotkeys;
pub mod http;
pub mod metrics;
