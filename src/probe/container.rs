//! Which container, and which Kubernetes pod, a process runs in, and its executable's path as
//! the container sees it: read from `/proc/PID/cgroup` and `/proc/PID/exe`, so that every series
//! and report entry of a process can say where it comes from (a pid means nothing in a cluster).
//!
//! Container runtimes and the kubelet name cgroups after the container id and the pod UID, and
//! that is all this relies on. Shapes understood, on cgroup v1 (every hierarchy line) and v2
//! (the `0::` line), also below a cgroup namespace (`/../..` prefixes) or nested (kind):
//! - systemd driver: `kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`,
//!   `…/docker-<id>.scope`, `…/crio-<id>.scope`, `libpod-<id>.scope` (podman);
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>`,
//!   `/docker/<id>`;
//!
//! where `<id>` is 64 hex digits (12 or more after a runtime prefix). The runtimes' monitor
//! processes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are not the container.
use std::path::Path;

use serde::Serialize;

/// Where a process comes from. Every field is optional: a process on the host has none of the
/// first two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The executable's path inside the process's own root (its container's file system).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

/// The origin of a running process (fields it cannot read are left out).
pub fn origin_of(pid: u32) -> Origin {
    let proc_dir = format!("/proc/{pid}");
    let (container_id, pod_uid) = std::fs::read_to_string(format!("{proc_dir}/cgroup"))
        .map(|text| parse_cgroup(&text))
        .unwrap_or_default();
    let exe = std::fs::read_link(format!("{proc_dir}/exe")).ok();
    let root = std::fs::read_link(format!("{proc_dir}/root")).ok();
    Origin {
        container_id,
        pod_uid,
        exe: exe.map(|e| inside_root(&e, root.as_deref())),
    }
}

/// `exe` as seen from inside `root`. A process in another mount namespace already shows paths
/// relative to its own root; one chrooted in ours shows the full path, which loses its prefix.
fn inside_root(exe: &Path, root: Option<&Path>) -> String {
    match root.filter(|r| *r != Path::new("/")) {
        Some(r) => match exe.strip_prefix(r) {
            Ok(rest) => Path::new("/").join(rest).display().to_string(),
            Err(_) => exe.display().to_string(),
        },
        None => exe.display().to_string(),
    }
}

/// The container id and pod UID named by `/proc/PID/cgroup` text. The v2 line is read first,
/// then the v1 lines in order; the first line naming a container gives both (the pod from the
/// same path); without any container, the first pod found.
pub fn parse_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let mut paths: Vec<&str> = Vec::new();
    let lines = text.lines().filter_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, _controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        Some((id == "0", path))
    });
    let (v2, v1): (Vec<_>, Vec<_>) = lines.partition(|(is_v2, _)| *is_v2);
    paths.extend(v2.iter().chain(&v1).map(|(_, p)| *p));
    let mut pod_only = None;
    for path in paths {
        let (container, pod) = parse_path(path);
        if container.is_some() {
            return (container, pod);
        }
        pod_only = pod_only.or(pod);
    }
    (None, pod_only)
}

/// The innermost container id and pod UID in one cgroup path.
fn parse_path(path: &str) -> (Option<String>, Option<String>) {
    let (mut container, mut pod) = (None, None);
    for part in path.split('/') {
        if let Some(uid) = pod_uid(part) {
            pod = Some(uid);
        } else if let Some(id) = container_id(part) {
            container = Some(id);
        }
    }
    (container, pod)
}

/// `pod<uid>` (cgroupfs) or `…-pod<uid with _ for ->.slice` (systemd).
fn pod_uid(part: &str) -> Option<String> {
    let uid = match part.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        None => part.strip_prefix("pod")?.to_string(),
    };
    // A UUID (36), or a static pod's config hash (32 hex digits).
    let ok = matches!(uid.len(), 32 | 36) && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then(|| uid.to_ascii_lowercase())
}

/// Runtime prefixes of systemd scopes (`<prefix><id>.scope`).
const RUNTIME_PREFIXES: &[&str] = &["cri-containerd-", "docker-", "crio-", "libpod-", "cri-o-"];

/// `<prefix><id>.scope` (systemd) or a bare 64-hex-digit `<id>` (cgroupfs).
fn container_id(part: &str) -> Option<String> {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(scope) = part.strip_suffix(".scope") {
        if scope.contains("-conmon-") {
            return None;
        }
        let id = RUNTIME_PREFIXES
            .iter()
            .find_map(|p| scope.strip_prefix(p))?;
        return (id.len() >= 12 && hex(id)).then(|| id.to_ascii_lowercase());
    }
    (part.len() == 64 && hex(part)).then(|| part.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c0a9e8b7d6c5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877";
    const UID: &str = "7b9a2c3e-1f2d-4c5b-8a9e-0123456789ab";

    fn uid_(u: &str) -> String {
        u.replace('-', "_")
    }

    fn check(text: &str, container: Option<&str>, pod: Option<&str>) {
        let (c, p) = parse_cgroup(text);
        assert_eq!(
            (c.as_deref(), p.as_deref()),
            (container, pod),
            "cgroup text:\n{text}"
        );
    }

    #[test]
    fn systemd_driver_kubernetes_on_cgroup_v2() {
        let u = uid_(UID);
        for (qos, runtime) in [
            ("burstable", "cri-containerd"),
            ("besteffort", "crio"),
            ("burstable", "docker"),
        ] {
            let text = format!(
                "0::/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{u}.slice/{runtime}-{ID}.scope\n"
            );
            check(&text, Some(ID), Some(UID));
        }
        // Guaranteed QoS has no QoS slice.
        let text = format!("0::/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope\n");
        check(&text, Some(ID), Some(UID));
    }

    #[test]
    fn cgroupfs_driver_kubernetes_on_cgroup_v1_every_hierarchy() {
        let mut text = String::new();
        for (i, c) in ["cpu,cpuacct", "memory", "pids", "name=systemd"]
            .iter()
            .enumerate()
        {
            text += &format!("{}:{c}:/kubepods/burstable/pod{UID}/{ID}\n", 12 - i);
        }
        check(&text, Some(ID), Some(UID));
        check(
            &format!("4:memory:/kubepods/pod{UID}/{ID}\n"),
            Some(ID),
            Some(UID),
        );
        check(
            &format!("0::/kubepods/besteffort/pod{UID}/{ID}\n"),
            Some(ID),
            Some(UID),
        );
    }

    #[test]
    fn hybrid_reads_v2_first_then_the_v1_line_that_names_a_container() {
        // systemd hybrid: v2 holds only the session, v1 hierarchies hold the container.
        let u = uid_(UID);
        let text = format!(
            "12:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope\n\
             4:memory:/process_api/baff191aa07818ab558a8352cea22c08\n\
             1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope\n\
             0::/\n"
        );
        check(&text, Some(ID), Some(UID));
        // The v2 line wins when it names a container.
        let other = "a".repeat(64);
        let text = format!("3:pids:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n");
        check(&text, Some(ID), None);
    }

    #[test]
    fn inside_a_cgroup_namespace_or_nested_in_kind() {
        let u = uid_(UID);
        check(
            &format!("0::/../../kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope\n"),
            Some(ID),
            Some(UID),
        );
        // kind: a node is a docker container; the pod's container is the innermost.
        let node = "b".repeat(64);
        check(
            &format!(
                "0::/system.slice/docker-{node}.scope/kubelet.slice/kubelet-kubepods.slice/\
                 kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{u}.slice/\
                 cri-containerd-{ID}.scope\n"
            ),
            Some(ID),
            Some(UID),
        );
    }

    #[test]
    fn containers_without_pods() {
        check(
            &format!("0::/system.slice/docker-{ID}.scope\n"),
            Some(ID),
            None,
        );
        check(&format!("11:devices:/docker/{ID}\n"), Some(ID), None);
        check(
            &format!("0::/machine.slice/libpod-{ID}.scope\n"),
            Some(ID),
            None,
        );
        // rootless podman puts the container's processes one level down.
        check(
            &format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
            ),
            Some(ID),
            None,
        );
        check(
            &format!("0::/system.slice/crio-{ID}.scope\n"),
            Some(ID),
            None,
        );
    }

    #[test]
    fn hosts_monitors_and_pod_sandboxes_are_not_containers() {
        for text in [
            "0::/\n",
            "0::/init.scope\n",
            "0::/user.slice/user-0.slice/session-3.scope\n",
            "0::/system.slice/containerd.service\n",
            "12:memory:/process_api/baff191aa07818ab558a8352cea22c08\n0::/\n",
            "",
            "garbage without colons\n",
        ] {
            check(text, None, None);
        }
        check(
            &format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            None,
            None,
        );
        check(
            &format!("0::/system.slice/crio-conmon-{ID}.scope\n"),
            None,
            None,
        );
        // A pod-level cgroup (no container of its own): the pod alone.
        let u = uid_(UID);
        check(
            &format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice\n"
            ),
            None,
            Some(UID),
        );
    }

    #[test]
    fn ids_that_only_look_close_are_refused() {
        // Too short, not hex; but a static pod's 32-digit config hash is a pod UID.
        check("0::/docker/abc123\n", None, None);
        check(&format!("0::/docker/{}\n", "g".repeat(64)), None, None);
        check(
            &format!("0::/system.slice/docker-{}.scope\n", "z".repeat(64)),
            None,
            None,
        );
        let hash = "6d1e0d7e1bb8c4c1b7a1f6f3a0e2b3c4";
        check(
            &format!("0::/kubepods/burstable/pod{hash}/{ID}\n"),
            Some(ID),
            Some(hash),
        );
        // Upper-case ids are reported lower-case, as runtimes print them.
        check(
            &format!("0::/docker/{}\n", ID.to_uppercase()),
            Some(ID),
            None,
        );
    }

    #[test]
    fn exe_inside_a_chroot_loses_the_root_prefix() {
        let p = |s: &str| std::path::PathBuf::from(s);
        assert_eq!(
            inside_root(&p("/srv/root/app/server"), Some(&p("/srv/root"))),
            "/app/server"
        );
        assert_eq!(inside_root(&p("/app/server"), Some(&p("/"))), "/app/server");
        assert_eq!(inside_root(&p("/app/server"), None), "/app/server");
        assert_eq!(
            inside_root(&p("/elsewhere/x"), Some(&p("/srv/root"))),
            "/elsewhere/x"
        );
    }

    #[test]
    fn origin_of_this_process_has_its_exe() {
        let o = origin_of(std::process::id());
        let me = std::env::current_exe().unwrap();
        assert_eq!(o.exe.as_deref(), Some(me.to_str().unwrap()));
    }
}
