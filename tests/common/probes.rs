//! Probe bookkeeping for the tracing tests: which BPF links a tracer holds (from
//! `/proc/PID/fdinfo`), which the kernel still has (`bpftool link show`), and whether anything
//! still probes a given binary (uprobe_multi/perf links naming its path, `uprobe_events` lines).
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Ids of the BPF links process `pid` holds, from its fdinfo.
pub fn links_of(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("link_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// Every BPF link the kernel has, as `bpftool -j link show` describes it.
pub fn kernel_links() -> Vec<Value> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool (apt package bpftool) is needed");
    assert!(
        out.status.success(),
        "bpftool link show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bpftool -j prints JSON")
}

/// Ids of the links the kernel still has.
pub fn kernel_link_ids() -> Vec<u64> {
    kernel_links()
        .iter()
        .filter_map(|l| l["id"].as_u64())
        .collect()
}

/// Waits (up to 20 s) for process `tracer` to hold links the kernel knows; returns their ids.
pub fn wait_attached(tracer: u32, label: &str) -> Vec<u64> {
    let t0 = Instant::now();
    loop {
        let links = links_of(tracer);
        if !links.is_empty() && kernel_link_ids().iter().any(|id| links.contains(id)) {
            return links;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{label}: tracer never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Links (as bpftool prints them) that still name `binary`: uprobe_multi links carry the path,
/// perf-event uprobe links a `file`.
pub fn links_naming(binary: &Path) -> Vec<Value> {
    let path = binary.to_string_lossy();
    kernel_links()
        .into_iter()
        .filter(|l| {
            ["path", "file", "filename"]
                .iter()
                .any(|f| l[f].as_str() == Some(&path))
        })
        .collect()
}

/// Lines of `/sys/kernel/tracing/uprobe_events` (or the debugfs copy) that name `binary`.
pub fn uprobe_events_naming(binary: &Path) -> Vec<String> {
    let path = binary.to_string_lossy();
    let text = [
        "/sys/kernel/tracing/uprobe_events",
        "/sys/kernel/debug/tracing/uprobe_events",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .expect("tracefs is not mounted: /sys/kernel/tracing/uprobe_events is missing");
    text.lines()
        .filter(|l| l.contains(path.as_ref()))
        .map(str::to_string)
        .collect()
}

/// After a tracer is gone: none of `links` remains, no link names `binary`, and no
/// `uprobe_events` entry does.
pub fn assert_nothing_left(links: &[u64], binary: &Path, label: &str) {
    let left: Vec<u64> = kernel_link_ids()
        .into_iter()
        .filter(|id| links.contains(id))
        .collect();
    assert!(
        left.is_empty(),
        "{label}: probes left behind: links {left:?}"
    );
    let naming = links_naming(binary);
    assert!(
        naming.is_empty(),
        "{label}: links still probe {}: {naming:?}",
        binary.display()
    );
    let events = uprobe_events_naming(binary);
    assert!(
        events.is_empty(),
        "{label}: uprobe_events entries left: {events:?}"
    );
}
