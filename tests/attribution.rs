//! Container attribution with real processes: three processes of one Go program are placed in
//! cgroups named the way the kubelet and container runtimes name them — systemd driver with
//! containerd on cgroup v2, cgroupfs driver on a cgroup v1 hierarchy, a plain Docker scope with
//! no pod — and `serve --binary` reports each one's container id and pod UID (and its
//! executable) in `/hotkeys` and on its metric series. The cgroups are created under the
//! machine's existing hierarchies (its mounts are left as they are) and removed afterwards.
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/tracer.rs"]
mod tracer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{GoProcess, Variant};
use serde_json::Value;
use tracer::Tracer;

/// A cgroup made for the test (with the parents it had to make), removed innermost first when
/// dropped (its processes must have ended by then).
struct Cgroup {
    made: Vec<PathBuf>,
    path: PathBuf,
}

impl Cgroup {
    fn create(root: &Path, rel: &str) -> Cgroup {
        let mut made = Vec::new();
        let mut p = root.to_path_buf();
        for part in rel.split('/') {
            p.push(part);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
                made.push(p.clone());
            }
        }
        Cgroup { made, path: p }
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    fn enter(&self, pid: u32) {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", procs.display()));
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for p in self.made.iter().rev() {
            // A process that just exited leaves its cgroup a moment later.
            for _ in 0..50 {
                if std::fs::remove_dir(p).is_ok() || !p.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Where a cgroup hierarchy of `kind` is mounted (`cgroup2`, or a v1 hierarchy with `option`).
fn mount_point(kind: &str, option: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[2] == kind && (option.is_empty() || f[3].split(',').any(|o| o == option)))
            .then(|| PathBuf::from(f[1]))
    })
}

struct Case {
    cgroup: Cgroup,
    container_id: String,
    pod_uid: Option<String>,
}

fn hex_id(seed: u8) -> String {
    (0..32u8)
        .map(|i| {
            format!(
                "{:02x}",
                seed.wrapping_mul(37).wrapping_add(i.wrapping_mul(11))
            )
        })
        .collect()
}

/// The three placements, on the hierarchies this machine has (v2 needs a cgroup2 mount, the
/// v1 ones a `pids` and a `name=systemd` hierarchy; a pure-v2 machine uses v2 for all three).
fn cases() -> Vec<Case> {
    let v2 = mount_point("cgroup2", "");
    let pids = mount_point("cgroup", "pids").or_else(|| v2.clone());
    let systemd = mount_point("cgroup", "name=systemd").or_else(|| v2.clone());
    let (Some(v2), Some(pids), Some(systemd)) = (v2, pids, systemd) else {
        panic!(
            "no cgroup hierarchy mounted: {:?}",
            std::fs::read_to_string("/proc/self/mounts")
        );
    };
    let uid1 = "0f6c2d1e-4b3a-4c5d-9e8f-a1b2c3d4e5f6";
    let uid2 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    let (id1, id2, id3) = (hex_id(1), hex_id(2), hex_id(3));
    let u1 = uid1.replace('-', "_");
    vec![
        Case {
            cgroup: Cgroup::create(
                &v2,
                &format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u1}.slice/\
                     cri-containerd-{id1}.scope"
                ),
            ),
            container_id: id1,
            pod_uid: Some(uid1.into()),
        },
        Case {
            cgroup: Cgroup::create(&pids, &format!("kubepods/besteffort/pod{uid2}/{id2}")),
            container_id: id2,
            pod_uid: Some(uid2.into()),
        },
        Case {
            cgroup: Cgroup::create(&systemd, &format!("system.slice/docker-{id3}.scope")),
            container_id: id3,
            pod_uid: None,
        },
    ]
}

fn hotkeys(addr: &str) -> Option<Value> {
    let (status, body) = http::get(addr, "/hotkeys", None)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[test]
fn serve_reports_each_process_container_and_pod() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let cases = cases();
    let targets: Vec<GoProcess> = cases
        .iter()
        .map(|c| {
            let p = GoProcess::start_waiting(&bin, &["-rate", "2000", "-duration", "60"]);
            c.cgroup.enter(p.pid());
            p
        })
        .collect();
    for (c, t) in cases.iter().zip(&targets) {
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", t.pid())).unwrap();
        assert!(cg.contains(&c.container_id), "not placed: {cg}");
    }
    let listen = http::free_addr();
    let mut serve = Tracer::spawn(&[
        "serve",
        "--binary",
        bin.to_str().unwrap(),
        "--listen",
        &listen,
        "--refresh",
        "0.5",
        "--mode",
        "exact",
    ]);
    serve.wait_attached();
    for t in &targets {
        t.release();
    }

    // Every process's maps carry its own container id and pod UID, and its executable.
    let t0 = Instant::now();
    let report = loop {
        let r = hotkeys(&listen);
        let complete = r.as_ref().is_some_and(|r| {
            targets.iter().all(|t| {
                r["maps"]
                    .as_array()
                    .is_some_and(|maps| maps.iter().any(|m| m["pid"] == t.pid()))
            })
        });
        if complete {
            break r.unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "not every process in /hotkeys: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for (c, t) in cases.iter().zip(&targets) {
        for m in report["maps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["pid"] == t.pid())
        {
            assert_eq!(m["container_id"], c.container_id.as_str(), "{m}");
            assert_eq!(m["pod_uid"].as_str(), c.pod_uid.as_deref(), "{m}");
            assert_eq!(m["exe"], bin.to_str().unwrap(), "{m}");
        }
    }
    // So does every series of the process.
    let (_, metrics) = http::get(&listen, "/metrics", None).expect("/metrics");
    for (c, t) in cases.iter().zip(&targets) {
        let pid = format!("pid=\"{}\"", t.pid());
        let series: Vec<&str> = metrics.lines().filter(|l| l.contains(&pid)).collect();
        assert!(series.len() > 3, "few series of {pid}:\n{metrics}");
        for s in series {
            assert!(
                s.contains(&format!("container_id=\"{}\"", c.container_id)),
                "{s}"
            );
            match &c.pod_uid {
                Some(u) => assert!(s.contains(&format!("pod_uid=\"{u}\"")), "{s}"),
                None => assert!(!s.contains("pod_uid="), "{s}"),
            }
            assert!(s.contains(&format!("exe=\"{}\"", bin.display())), "{s}");
        }
    }
    drop(targets);
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");
    drop(cases);
}
