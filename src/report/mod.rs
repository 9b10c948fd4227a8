//! The report: what was measured (`model`, the versioned JSON schema `ebpf-map-trace/report/v1`),
//! built from counts plus what the binary says about types and sites (`build`), merged across
//! processes (`merge`), refreshed live with rates and trends (`live`), and written as a table
//! for the terminal (`table`). Writes by goroutine stack go out as a pprof profile (`pprof`) and
//! as folded stacks (`folded`). Every address is named by the one symbolizer (`symbolize`).
pub mod build;
pub mod folded;
pub mod live;
pub mod merge;
pub mod model;
pub mod pprof;
pub mod symbolize;
pub mod table;

pub use build::{build, map_id, redact, Meta};
pub use model::*;
