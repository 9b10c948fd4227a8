//! Probe bookkeeping for the tracing tests: which BPF links a tracer holds and on which target
//! (from `/proc/PID/fdinfo`: the one fdinfo scanner of the tests), which the kernel still has (libbpf-rs's link iterator), and whether anything
//! still probes a given binary (uprobe_multi/perf links naming its path, `uprobe_events` lines).
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use libbpf_rs::query::{LinkInfo, LinkInfoIter, LinkTypeInfo, PerfEventType};

/// The fdinfo text of every BPF link process `pid` holds (`link_id:`, `link_type:`, and for
/// uprobe_multi links the probed `name:` and `pid:` filter). Empty once the process is gone.
pub fn link_fdinfos(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l.starts_with("link_id:")))
        .collect()
}

/// Sizes (`max_entries`) of the BPF ring buffers process `pid` holds (each once, however many
/// of its fds name it), from its fdinfo.
pub fn ring_buffer_sizes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let field = |info: &str, name: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let rings: std::collections::BTreeMap<u64, u64> = dir
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l == "map_type:\t27")) // BPF_MAP_TYPE_RINGBUF
        .filter_map(|info| Some((field(&info, "map_id:")?, field(&info, "max_entries:")?)))
        .collect();
    rings.into_values().collect()
}

/// Ids of the BPF links process `pid` holds, from its fdinfo.
pub fn links_of(pid: u32) -> Vec<u64> {
    link_fdinfos(pid)
        .iter()
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("link_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect()
}

/// Whether `tracer` holds a BPF link whose probes are filtered to process `target`.
pub fn holds_link_on(tracer: u32, target: u32) -> bool {
    let want = format!("pid:\t{target}\n");
    link_fdinfos(tracer).iter().any(|s| s.contains(&want))
}

/// Whether `tracer` holds a BPF link on a target process. Budget mode first calibrates on
/// probes in the tracer's own binary (links naming its path or its pid): those do not count.
pub fn holds_target_link(tracer: u32) -> bool {
    let own_exe = std::fs::read_link(format!("/proc/{tracer}/exe")).unwrap_or_default();
    let own_name = format!("name:\t{}\n", own_exe.display());
    let own_pid = format!("pid:\t{tracer}\n");
    link_fdinfos(tracer)
        .iter()
        .any(|s| !s.contains(&own_name) && !s.contains(&own_pid))
}

/// Waits (up to `timeout`) until `f()` holds, failing the test with `what` otherwise; polls every
/// 20 ms. For waits on the tracer's probes (`|| holds_link_on(t, p)`) instead of fixed sleeps.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every BPF link the kernel has (libbpf-rs walks the link ids; bpftool 7.1 here does not
/// decode uprobe_multi links).
pub fn kernel_links() -> Vec<LinkInfo> {
    LinkInfoIter::default().collect()
}

/// Ids of the links the kernel still has.
pub fn kernel_link_ids() -> Vec<u64> {
    kernel_links().iter().map(|l| u64::from(l.id)).collect()
}

/// The links of process `tracer` once their count has held for 150 ms (at most 3 s: budget
/// mode's windows attach and detach). The tracer makes one link per probe point, one after
/// another (~10 ms for 30): its first link on a target is not its last. A target released at the
/// first link wrote before its string-key probe was on (1,910 of 2,000 writes counted, once in
/// CI).
pub fn settled_links(tracer: u32) -> Vec<u64> {
    let t0 = Instant::now();
    let mut links = links_of(tracer);
    while t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(150));
        let now = links_of(tracer);
        if now.len() == links.len() {
            return now;
        }
        links = now;
    }
    links
}

/// Waits (up to 20 s) for process `tracer` to hold links the kernel knows; returns their ids,
/// all of them made ([`settled_links`]).
pub fn wait_attached(tracer: u32, label: &str) -> Vec<u64> {
    let t0 = Instant::now();
    loop {
        let links = links_of(tracer);
        if !links.is_empty() && kernel_link_ids().iter().any(|id| links.contains(id)) {
            return settled_links(tracer);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{label}: tracer never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ids of links that still probe `binary`: uprobe_multi links by their path, perf-event
/// uprobe links by their file name.
pub fn links_naming(binary: &Path) -> Vec<u32> {
    let canon = binary
        .canonicalize()
        .unwrap_or_else(|_| binary.to_path_buf());
    kernel_links()
        .into_iter()
        .filter(|l| match &l.info {
            LinkTypeInfo::UprobeMulti(u) => u.path.as_deref() == Some(canon.as_path()),
            LinkTypeInfo::PerfEvent(p) => matches!(
                &p.event_type,
                PerfEventType::Uprobe { file_name: Some(f), .. } if Path::new(f) == canon
            ),
            _ => false,
        })
        .map(|l| l.id)
        .collect()
}

/// The tracefs `uprobe_events` file, mounting tracefs at /sys/kernel/tracing if it is not.
fn uprobe_events_file() -> String {
    const FILE: &str = "/sys/kernel/tracing/uprobe_events";
    if let Ok(text) = std::fs::read_to_string(FILE) {
        return text;
    }
    let st = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "tracefs is not mounted and cannot be (mount -t tracefs tracefs /sys/kernel/tracing)"
    );
    std::fs::read_to_string(FILE).unwrap_or_else(|e| panic!("{FILE}: {e}"))
}

/// Lines of `/sys/kernel/tracing/uprobe_events` that probe `binary` (`p:GROUP/NAME PATH:OFFSET`,
/// PATH exactly `binary`, not a longer path that starts with it).
pub fn uprobe_events_naming(binary: &Path) -> Vec<String> {
    let path = binary.to_string_lossy();
    uprobe_events_file()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|t| t.rsplit_once(':'))
                .is_some_and(|(p, _)| p == path)
        })
        .map(str::to_string)
        .collect()
}

/// Ids of the links `bpftool link show` lists (a second reader of the kernel's link table).
pub fn bpftool_link_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool is missing: apt package bpftool (./setup installs it)");
    assert!(
        out.status.success(),
        "bpftool link show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bpftool -j link show prints JSON");
    links
        .as_array()
        .expect("a list of links")
        .iter()
        .filter_map(|l| l["id"].as_u64())
        .collect()
}

/// After a tracer is gone: none of its `links` remains in the kernel, by libbpf's link
/// iterator and by `bpftool link show`.
pub fn assert_links_gone(links: &[u64], label: &str) {
    for (who, ids) in [
        ("libbpf", kernel_link_ids()),
        ("bpftool", bpftool_link_ids()),
    ] {
        let left: Vec<u64> = ids.into_iter().filter(|id| links.contains(id)).collect();
        assert!(
            left.is_empty(),
            "{label}: probes left behind: links {left:?} (listed by {who})"
        );
    }
}

/// After a tracer is gone: none of `links` remains, no link names `binary`, and no
/// `uprobe_events` entry does.
pub fn assert_nothing_left(links: &[u64], binary: &Path, label: &str) {
    assert_links_gone(links, label);
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
