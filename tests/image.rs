//! The agent image, for real: `deploy/build-image` builds `deploy/Dockerfile` (FROM scratch)
//! with podman; the image is exported and unpacked, and its entrypoint is run the way the
//! DaemonSet runs it — chrooted into the image's root (mounted read-only), the host's `/proc`
//! and `/sys` bound in, no new privileges, exactly the DaemonSet's capabilities, its arguments —
//! against a Go program on this machine; `/metrics` shows the program's hot key. (`podman run`
//! itself cannot run on this VM: crun refuses its hybrid cgroups.)
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/tracer.rs"]
mod tracer;

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{GoProcess, Variant};
use serde_json::Value;

/// podman, installed from Debian if missing (as CI can); the test fails, saying so, if that
/// fails (a missing tool is no reason to pass).
fn podman() -> &'static str {
    let p = "/usr/bin/podman";
    if !Path::new(p).exists() {
        eprintln!("image test: installing podman with apt-get");
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                   apt-get install -y -qq --no-install-recommends podman >/dev/null",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && Path::new(p).exists(),
            "podman is needed for the image test and `apt-get install podman` failed"
        );
    }
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image built, exported and unpacked: its root directory and its config.
struct Unpacked {
    root: PathBuf,
    config: Value,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.root.parent().unwrap());
    }
}

fn build_and_unpack(podman: &str) -> Unpacked {
    let tag = format!("localhost/ebpf-map-trace:test-{}", std::process::id());
    let script = common::manifest_dir().join("deploy/build-image");
    let t0 = Instant::now();
    run(Command::new(&script).args(["--binary", tracer::TRACER, "--tag", &tag]));
    eprintln!("image built in {:.1} s", t0.elapsed().as_secs_f64());
    let config: Value = serde_json::from_str(&run(Command::new(podman).args([
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &tag,
    ])))
    .expect("image config JSON");
    let dir = std::env::temp_dir().join(format!("emt-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    // `podman create` only writes the container's config (nothing runs); export flattens it.
    let ctr = run(Command::new(podman).args(["create", &tag]));
    let tar = dir.join("image.tar");
    run(Command::new(podman).args(["export", "-o", tar.to_str().unwrap(), &ctr]));
    run(Command::new(podman).args(["rm", &ctr]));
    run(Command::new(podman).args(["rmi", &tag]));
    run(Command::new("tar").args(["-xf", tar.to_str().unwrap(), "-C", root.to_str().unwrap()]));
    Unpacked { root, config }
}

/// Capability numbers (linux/capability.h) of the names the DaemonSet uses.
fn cap_number(name: &str) -> u32 {
    match name {
        "DAC_READ_SEARCH" => 2,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other}: add its number"),
    }
}

/// What a container runtime does between fork and exec for the DaemonSet's pod: a private
/// mount namespace; the image root bound on itself read-only (readOnlyRootFilesystem); the
/// host's /proc (hostPID) and /sys bound in; chroot; no_new_privs (allowPrivilegeEscalation:
/// false); every capability but `keep` dropped from the bounding set and the inheritable set
/// emptied, so the root exec'd program holds exactly `keep`.
fn contain(cmd: &mut Command, root: &Path, keep: u64) {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let (root_c, proc_c, sys_c) = (c(root), c(&root.join("proc")), c(&root.join("sys")));
    let (host_proc, host_sys, slash) = (
        c(Path::new("/proc")),
        c(Path::new("/sys")),
        c(Path::new("/")),
    );
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: between fork and exec only async-signal-safe system calls run, on CStrings made
    // before the fork; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let none = std::ptr::null::<libc::c_char>();
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                none,
                slash.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                root_c.as_ptr(),
                root_c.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                host_proc.as_ptr(),
                proc_c.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                host_sys.as_ptr(),
                sys_c.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            check(libc::mount(
                none,
                root_c.as_ptr(),
                none,
                ro,
                std::ptr::null(),
            ))?;
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(slash.as_ptr()))?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            for cap in 0..=last_cap {
                if keep & (1 << cap) == 0 {
                    check(libc::prctl(
                        libc::PR_CAPBSET_DROP,
                        cap as libc::c_ulong,
                        0,
                        0,
                        0,
                    ))?;
                }
            }
            // capset(2): keep effective and permitted (this process's, for the exec), no
            // inheritable ones (else root's exec would add them back).
            let mut head = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this process
            let mut data = [0u32; 6];
            check(
                libc::syscall(libc::SYS_capget, head.as_mut_ptr(), data.as_mut_ptr())
                    as libc::c_int,
            )?;
            data[2] = 0;
            data[5] = 0;
            check(
                libc::syscall(libc::SYS_capset, head.as_mut_ptr(), data.as_ptr()) as libc::c_int,
            )?;
            Ok(())
        });
    }
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(common::manifest_dir().join("deploy").join(name)).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The effective capabilities of a running process (CapEff of /proc/PID/status).
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_image_runs_as_the_daemonset_runs_it_and_finds_the_hot_key() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let image = build_and_unpack(podman());
    let entrypoint = strings(&image.config["Entrypoint"]);
    assert_eq!(
        entrypoint,
        ["/usr/local/bin/ebpf-map-trace"],
        "{}",
        image.config
    );
    // Nothing but the binary, its libraries and the mount points.
    let du = run(Command::new("du").args(["-sm", image.root.to_str().unwrap()]));
    let mb: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    assert!(mb < 64, "image root is {mb} MB");

    let ds = yaml("daemonset.yaml");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let caps = strings(&c["securityContext"]["capabilities"]["add"]);
    let keep = caps.iter().fold(0u64, |m, name| m | 1 << cap_number(name));
    let bin = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let target = GoProcess::start_waiting(
        &bin,
        &["-rate", "20000", "-duration", "60", "-hot-after", "0"],
    );

    // The DaemonSet's arguments, its target and port pointed at this test's; its web config
    // (a Secret the cluster mounts) left out: TLS has its own test.
    let mut args = strings(&c["args"]);
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).map(|i| i + 1);
    let i = at(&args, "--binary").expect("--binary in the DaemonSet's args");
    args[i] = bin.to_str().unwrap().into();
    let port = http::free_addr().rsplit(':').next().unwrap().to_string();
    let i = at(&args, "--listen").expect("--listen");
    assert!(args[i].starts_with("0.0.0.0:"), "{}", args[i]);
    args[i] = format!("0.0.0.0:{port}");
    if let Some(i) = at(&args, "--web.config.file") {
        args.drain(i - 1..=i);
    }
    // The path is the image's: exec happens after the chroot.
    let mut cmd = Command::new(&entrypoint[0]);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    contain(&mut cmd, &image.root, keep);
    let child = cmd.spawn().expect("run the image's entrypoint");
    let mut serve = tracer::Tracer::adopt(child);
    serve.wait_attached();
    assert_eq!(
        effective_caps(serve.child.id()),
        keep,
        "the agent's capabilities"
    );
    target.release();

    // The hot key in /metrics, as its hash (keys stay in on 0.0.0.0).
    let want = format!(
        "key_hash=\"{}\"",
        common::key_hash("hot:1").trim_start_matches('#')
    );
    let local = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    loop {
        let body = http::get(&local, "/metrics", None)
            .map(|(_, b)| b)
            .unwrap_or_default();
        let top = body.lines().find(|l| {
            l.starts_with("gomap_hot_key_writes_per_second{")
                && l.contains("rank=\"1\"")
                && l.contains("map=\"map[string]int\"")
        });
        if top.is_some_and(|l| l.contains(&want)) {
            assert!(!body.contains("hot:1"), "a key value served on 0.0.0.0");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no hot key from the image: {top:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(target);
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve from the image: {st}: {err}");
}
