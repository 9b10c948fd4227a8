//! The fleet files in `deploy/`: the DaemonSet is a well-formed Kubernetes object whose
//! privileges really suffice for `serve` (run here with exactly those capabilities and its own
//! arguments, against another user's program that is not world-readable) and are each needed
//! (without any one, serve names it); the scrape config passes `promtool check
//! config`; the Grafana dashboard queries only metrics `serve` exports, in valid PromQL.
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/tracer.rs"]
mod tracer;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{GoProcess, Variant};
use serde_json::Value;

fn deploy(name: &str) -> PathBuf {
    common::manifest_dir().join("deploy").join(name)
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(deploy(name)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

fn promtool() -> &'static str {
    let p = "/usr/bin/promtool";
    assert!(
        Path::new(p).exists(),
        "{p} is missing: install the Debian package prometheus (./setup does)"
    );
    p
}

/// `promtool check WHAT` on `contents` (written to a temp file); fails the test with its output.
fn promtool_check(what: &str, contents: &str) {
    let dir = std::env::temp_dir().join(format!("emt-deploy-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{what}.yml"));
    std::fs::write(&file, contents).unwrap();
    let out = Command::new(promtool())
        .args(["check", what])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check {what}:\n{contents}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The agent container of the DaemonSet.
fn agent(ds: &Value) -> &Value {
    &ds["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn daemonset_is_a_valid_kubernetes_object() {
    let ds = yaml("daemonset.yaml");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["kind"], "DaemonSet");
    assert!(ds["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let selector = ds["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let labels = ds["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    assert_eq!(
        selector, labels,
        "selector.matchLabels must equal the template's labels"
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "the agent must see the targets' processes"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert!(!containers.is_empty());
    for c in containers {
        assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()), "{c}");
        assert!(c["image"].as_str().is_some_and(|n| !n.is_empty()), "{c}");
    }
    let c = agent(&ds);
    let sc = &c["securityContext"];
    let add = str_list(&sc["capabilities"]["add"]);
    for cap in ["BPF", "PERFMON", "SYS_PTRACE"] {
        assert!(
            add.iter().any(|a| a == cap),
            "capability {cap} missing: {add:?}"
        );
    }
    assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"]);
    // No CAP_SYS_ADMIN: uprobes attach as uprobe_multi links, which BPF + PERFMON allow.
    assert!(!add.iter().any(|c| c == "SYS_ADMIN"), "{add:?}");
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    // The agent serves on the port the pod declares, and its probes ask /healthz there.
    let args = str_list(&c["args"]);
    assert_eq!(args[0], "serve");
    let listen = &args[args.iter().position(|a| a == "--listen").unwrap() + 1];
    let port = &c["ports"][0];
    assert_eq!(
        listen.rsplit(':').next().unwrap(),
        port["containerPort"].to_string()
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], port["name"], "{probe}");
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    // The web config (TLS, auth) is read from a mounted Secret.
    let web = &args[args.iter().position(|a| a == "--web.config.file").unwrap() + 1];
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(web).starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("no volume mounted at {web}"));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(volume["secret"]["secretName"].is_string(), "{volume}");
}

#[test]
fn scrape_config_passes_promtool() {
    let cfg = yaml("prometheus-scrape.yaml");
    let jobs = cfg["scrape_configs"].as_array().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == "ebpf-map-trace")
        .expect("an ebpf-map-trace job");
    assert_eq!(job["metrics_path"], "/metrics");
    let ds = yaml("daemonset.yaml");
    let relabels = job["relabel_configs"].as_array().unwrap();
    let keeps_agent = relabels.iter().any(|r| {
        r["action"] == "keep"
            && r["regex"] == ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    });
    assert!(keeps_agent, "the job must keep the DaemonSet's pods: {job}");
    assert!(
        relabels
            .iter()
            .any(|r| r["regex"] == agent(&ds)["ports"][0]["name"]),
        "the job must keep the DaemonSet's metrics port: {job}"
    );
    // Debian's promtool is built without Kubernetes service discovery: check everything else
    // (relabelling, intervals, paths) with a static target in its place.
    let mut checked = cfg.clone();
    for j in checked["scrape_configs"].as_array_mut().unwrap() {
        let j = j.as_object_mut().unwrap();
        assert!(j.remove("kubernetes_sd_configs").is_some(), "{j:?}");
        j.insert(
            "static_configs".into(),
            serde_json::json!([{"targets": ["127.0.0.1:9464"]}]),
        );
    }
    promtool_check("config", &serde_norway::to_string(&checked).unwrap());
}

/// Every PromQL expression of the dashboard (panel targets and variable queries).
fn dashboard_queries(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]
            .as_str()
            .and_then(|q| q.strip_prefix("label_values("))
        {
            // label_values(EXPR, label) is Grafana's, not PromQL: keep EXPR.
            out.push(q.rsplit_once(',').unwrap().0.to_string());
        }
    }
    out
}

/// Identifiers starting with `gomap_` in an expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("gomap_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_queries_only_exported_metrics_in_valid_promql() {
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // The documented families (README "serve"), histograms with their sample names.
    let exported: BTreeSet<String> = common::METRIC_FAMILIES
        .iter()
        .flat_map(|(name, kind)| match *kind {
            "histogram" => ["bucket", "sum", "count"]
                .iter()
                .map(|s| format!("{name}_{s}"))
                .collect::<Vec<_>>(),
            _ => vec![name.to_string()],
        })
        .collect();
    let queries = dashboard_queries(&d);
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "a query of no gomap_ metric: {q}");
        for n in names {
            assert!(
                exported.contains(&n),
                "{n} (in {q}) is not exported: {exported:?}"
            );
            used.insert(n);
        }
    }
    // The panels the fleet needs: hot keys, write rates, grows, coverage, overhead.
    for need in [
        "gomap_hot_key_writes_per_second",
        "gomap_writes_total",
        "gomap_map_writes_per_second",
        "gomap_grows_total",
        "gomap_probe_coverage_ratio",
        "gomap_estimated_overhead_percent",
    ] {
        assert!(used.contains(need), "no panel shows {need}");
    }
    // Valid PromQL: promtool parses each as a recording rule, Grafana's variables filled in.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$node", ".*")
            .replace("$map", ".*");
        rules += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        );
    }
    promtool_check("rules", &rules);
}

/// `setpriv` arguments that run a command as root with only `caps` (as in a container).
fn with_caps(caps: &[String]) -> Vec<String> {
    let set: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    vec![
        format!("--bounding-set=-all,{}", set.join(",")),
        "--inh-caps=-all".into(),
        "--".into(),
        tracer::TRACER.into(),
    ]
}

/// The DaemonSet's agent arguments with its --binary and --listen pointed at this test's target
/// and port (its web config is a Secret of the cluster: TLS and auth are tests/agent_security.rs).
fn agent_args(c: &Value, bin: &Path, listen: &str) -> Vec<String> {
    let mut args = str_list(&c["args"]);
    let at = |args: &[String], flag: &str| args.iter().position(|a| a == flag).unwrap() + 1;
    let i = at(&args, "--binary");
    args[i] = bin.to_str().unwrap().to_string();
    let i = at(&args, "--listen");
    args[i] = listen.to_string();
    let i = at(&args, "--web.config.file");
    args.drain(i - 1..=i);
    args
}

/// The workload, as another user's program that is not world-readable (owner nobody, mode
/// 0500): what the agent meets on a node, where SYS_PTRACE and DAC_READ_SEARCH matter.
fn foreign_workload() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let built = common::build("workload", &common::newest_toolchain(), Variant::Plain);
    let bin = common::private_copy(&built, "deploy-foreign");
    std::os::unix::fs::chown(&bin, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o500)).unwrap();
    bin
}

/// Starts `bin args... -wait` as user nobody.
fn start_as_nobody(bin: &Path, args: &[&str]) -> GoProcess {
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        bin.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    GoProcess::start_waiting(Path::new("/usr/bin/setpriv"), &all)
}

#[test]
fn daemonset_privileges_suffice_and_each_one_is_needed() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let setpriv = "/usr/bin/setpriv";
    assert!(
        Path::new(setpriv).exists(),
        "{setpriv} is missing (util-linux)"
    );
    let ds = yaml("daemonset.yaml");
    let c = agent(&ds);
    let caps = str_list(&c["securityContext"]["capabilities"]["add"]);
    let bin = foreign_workload();

    // With exactly the DaemonSet's capabilities and arguments, serve finds the hot key.
    let target = start_as_nobody(
        &bin,
        &["-rate", "20000", "-duration", "60", "-hot-after", "0"],
    );
    let listen = http::free_addr();
    let mut all = with_caps(&caps);
    all.extend(agent_args(c, &bin, &listen));
    let mut serve = tracer::Tracer::spawn_program(Path::new(setpriv), &all);
    serve.wait_attached_to(target.pid());
    target.release();
    common::poll(20, "hot:1 on top with the DaemonSet's privileges", || {
        let (_, body) = http::get(&listen, "/hotkeys", None)?;
        let r: Value = serde_json::from_str(&body).ok()?;
        let m = r["maps"]
            .as_array()?
            .iter()
            .find(|m| m["type"] == "map[string]int")?;
        (m["top_keys"][0]["key"] == "hot:1").then_some(())
    });
    let (st, _, err) = serve.terminate();
    assert!(st.success(), "serve: {st}: {err}");

    // Without any one of them, the agent says which is missing, in one line of its own (and
    // no libbpf noise).
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let listen = http::free_addr();
        let mut all = with_caps(&fewer);
        all.extend(agent_args(c, &bin, &listen));
        all.extend(["--duration".into(), "3".into()]);
        let out = common::run_command(Command::new(setpriv).args(&all), Duration::from_secs(60));
        common::assert_no_crash(out.status, &format!("serve without {missing}"));
        let name = format!("CAP_{missing}");
        let naming: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| common::has_token(l, &name))
            .collect();
        assert_eq!(
            naming.len(),
            1,
            "serve without {missing}: want one line naming {name}:\n{}",
            out.stderr
        );
        assert!(
            out.stderr
                .lines()
                .all(|l| l.starts_with("ebpf-map-trace: ")),
            "serve without {missing}: a line not of the tracer's:\n{}",
            out.stderr
        );
    }
    drop(target);
}
