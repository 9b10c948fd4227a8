//! `sync.Map` (root, real uprobes) against the `syncmap` program's own counts: `run` on every
//! toolchain × variant (per map: type `sync.Map`, id its address, stores as writes and deletes
//! that removed a key as deletes, clears; per call site; keys ranked by writes and by deletes);
//! `trace`, `top` and `serve` in exact mode, `top` (stores, then stores and deletes) and `trace`
//! in budget mode, on a Go before 1.24 (the methods of `sync.Map`) and one from 1.24 (the
//! hash-trie behind it).
mod common;
#[path = "support/http.rs"]
mod http;
#[path = "support/ops.rs"]
mod ops;
#[path = "support/traced.rs"]
mod traced;
#[path = "support/tracer.rs"]
mod tracer;

use common::{Toolchain, Variant};
use ops::View;
use traced::{require_root, tempdir, Served};

/// Keys ranked per map: more than any scenario's map has.
const TOP: usize = 70;

/// `top --once`'s options for budget mode at 1 %.
const BUDGET_TOP: &[&str] = &[
    "--mode",
    "budget",
    "--duration",
    "60",
    "--overhead",
    "1",
    "--top",
    "8",
];

/// Scenarios the program prints counts of (without `-rate`) when built with `tc`: Swap,
/// CompareAndSwap and CompareAndDelete from Go 1.20, Clear from Go 1.23.
fn scenarios(tc: &Toolchain) -> usize {
    6 + usize::from(tc.minor() >= 20) + usize::from(tc.minor() >= 23)
}

/// The newest toolchain whose `sync.Map` has its own methods (before Go 1.24) and the newest
/// whose `sync.Map` is the hash-trie.
fn one_of_each() -> Vec<Toolchain> {
    let all = common::toolchains();
    let methods = all.iter().rev().find(|t| t.minor() < 24).cloned();
    let trie = all.iter().rev().find(|t| t.minor() >= 24).cloned();
    methods.into_iter().chain(trie).collect()
}

/// Every scenario's map is a `sync.Map` but "plain", a runtime map written between sync.Map
/// operations (the program says so; the report must agree).
fn check_types(label: &str, truth: &[ops::Truth]) {
    for t in truth {
        let ty = if t.scenario == "plain" {
            "map[string]int"
        } else {
            "sync.Map"
        };
        assert_eq!(t.type_name, ty, "{label} {}", t.scenario);
    }
}

#[test]
fn run_counts_every_sync_map_operation_on_every_toolchain_and_variant() {
    require_root();
    let _cpu = traced::among_others();
    let dir = tempdir("syncmap-run");
    for (tc, variant, path) in common::matrix("syncmap") {
        let label = format!("go{} {variant:?}", tc.version);
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let (truth, report, table) = traced::run(&label, (&path, &["-n", "2000"]), TOP, &json, &[]);
        assert_eq!(truth.len(), scenarios(&tc), "{label}: scenarios");
        check_types(&label, &truth);
        ops::check_exact(&label, &truth, &report, TOP, View::Run);
        // A sync.Map's own internal map (before Go 1.24) is not shown as a map of its own.
        for m in report["maps"].as_array().unwrap() {
            let ty = m["type"].as_str().unwrap();
            assert!(
                !ty.contains("sync.entry"),
                "{label}: a sync.Map's internal map in the report: {m}"
            );
        }
        // The table names the type and says it too.
        let mixed = &truth[0];
        assert_eq!(mixed.scenario, "mixed");
        assert!(
            table.contains(&format!(
                "{} writes, {} deletes, ",
                mixed.writes, mixed.deletes
            )) && table.contains("sync.Map"),
            "{label}: the mixed map's line in the table:\n{table}"
        );
    }
}

/// Counting in the kernel with a table too small for the keys (one set of 4 slots per CPU):
/// `sync.Map` operations (records) and runtime map writes (slots) between them are exact, and
/// before Go 1.24 the `sync.Map`'s own runtime map, which takes slots too but is not shown, does
/// not take counts from the keys it evicts.
#[test]
fn run_is_exact_with_a_tiny_in_kernel_table() {
    require_root();
    let _cpu = traced::among_others();
    let dir = tempdir("syncmap-tiny");
    for tc in one_of_each() {
        let label = format!("go{} tiny table", tc.version);
        let bin = common::build("syncmap", &tc, Variant::Plain);
        let json = dir.join(format!("{}.json", tc.version));
        let tiny = [("EBPF_MAP_TRACE_SLOT_SETS", "1")];
        let (truth, report, _) = traced::run(&label, (&bin, &["-n", "2000"]), TOP, &json, &tiny);
        assert_eq!(truth.len(), scenarios(&tc), "{label}: scenarios");
        check_types(&label, &truth);
        assert!(
            report["aggregation"]["evictions"].as_u64().unwrap() > 0,
            "{label}: the table must be too small: {}",
            report["aggregation"]
        );
        ops::check_exact(&label, &truth, &report, TOP, View::Run);
    }
}

#[test]
fn trace_and_top_in_exact_mode_show_every_sync_map_operation() {
    require_root();
    let _cpu = traced::among_others();
    for tc in one_of_each() {
        let bin = common::build("syncmap", &tc, Variant::Plain);
        let label = format!("go{} trace", tc.version);
        let (truth, lines) = traced::trace_exact(&label, &bin, &["-n", "2000"]);
        assert_eq!(truth.len(), scenarios(&tc), "{label}: scenarios");
        for t in &truth {
            for l in lines
                .iter()
                .filter(|l| l["map_id"] == t.id.as_str() && l["event"] != "grow")
            {
                assert_eq!(l["map"], t.type_name.as_str(), "{label}: {l}");
            }
        }

        traced::top_exact(&format!("go{} top", tc.version), &bin, &["-n", "2000"], TOP);
    }
}

/// The sum of `gomap_writes_total` of process `pid`, map type `sync.Map`, from call sites in
/// package main (the standard library's own `sync.Map`s, e.g. encoding/json's caches, are not
/// the program's to count).
fn main_writes_metric(scrape: &str, pid: u32) -> f64 {
    let pid = format!("pid=\"{pid}\"");
    scrape
        .lines()
        .filter(|l| l.starts_with("gomap_writes_total{"))
        .filter(|l| {
            l.contains(&pid) && l.contains("map=\"sync.Map\"") && l.contains("site=\"main.")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.trim().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn serve_exports_sync_map_operations_in_exact_mode() {
    require_root();
    let _cpu = traced::among_others();
    for tc in one_of_each() {
        let label = format!("go{} serve", tc.version);
        let bin = common::build("syncmap", &tc, Variant::Plain);
        let served = Served::exact(&bin, &["-n", "2000", "-linger", "120"], scenarios(&tc), TOP);
        let (truth, pid) = (&served.truth, served.target.pid());
        ops::check_exact(&label, truth, &served.report, TOP, View::Live);
        let scrape = served.scrape();
        let truth: Vec<&ops::Truth> = truth.iter().filter(|t| t.type_name == "sync.Map").collect();
        let writes: u64 = truth.iter().map(|t| t.writes).sum();
        assert_eq!(
            main_writes_metric(&scrape, pid),
            writes as f64,
            "{label}: gomap_writes_total of sync.Map from package main"
        );
        let pid_s = pid.to_string();
        let labels = [("pid", pid_s.as_str()), ("map", "sync.Map")];
        for (name, f) in [
            (
                "gomap_deletes_total",
                (|t: &ops::Truth| t.deletes) as fn(&ops::Truth) -> u64,
            ),
            ("gomap_clears_total", |t: &ops::Truth| t.clears),
        ] {
            assert_eq!(
                ops::sample_sum(&scrape, name, &labels),
                Some(truth.iter().map(|t| f(t)).sum::<u64>() as f64),
                "{label}: {name} of sync.Map"
            );
        }
        served.finish(&label);
    }
}

/// Budget mode: `top` estimates stores (decided at the method's entry) within their bounds, alone
/// and with deletes decided at a RET (`LoadAndDelete`, single-stepped RET probes that take most
/// of a window's CPU time); `trace` shows only operations the program made, deletes among them.
#[test]
fn budget_mode_estimates_sync_map_stores_and_deletes_within_their_bounds() {
    require_root();
    let _cpu = traced::alone();
    for tc in one_of_each() {
        let label = format!("go{} budget", tc.version);
        let bin = common::build("syncmap", &tc, Variant::Plain);
        let (truth, report) = traced::top_once(
            &bin,
            &["-rate", "20000", "-duration", "6", "-stores-only"],
            BUDGET_TOP,
        );
        let coverage = ops::check_budget(&label, &truth, &report);
        assert!(
            coverage > 0.0 && coverage < 1.0,
            "{label}: 20k stores/s must be sampled at a 1 % budget, coverage {coverage}"
        );
        let m = ops::map_of(&label, &report, &truth[0]);
        assert_eq!(m["type"], "sync.Map", "{label}");
        assert_eq!(
            m["top_keys"][0]["key"], "hot:0",
            "{label}: the most written key"
        );
        assert!(
            m["top_keys"][0]["error_bound"].as_u64().unwrap() > 0,
            "{label}: a sampled estimate has a bound: {m}"
        );

        // Stores and deletes decided at single-stepped RETs (LoadAndDelete): a light target
        // whose 1 % pays for a window every few seconds. Every key's writes and deletes lie
        // within their bounds, as do the map's writes.
        let (truth, report) =
            traced::top_once(&bin, &["-rate", "20000", "-duration", "6"], BUDGET_TOP);
        let label = format!("go{} budget, LoadAndDelete", tc.version);
        ops::check_budget(&label, &truth, &report);
        let m = ops::map_of(&label, &report, &truth[0]);
        let (est, bound) = (
            m["writes_estimated"].as_f64().unwrap(),
            m["error_bound"].as_f64().unwrap(),
        );
        assert!(
            (est - truth[0].writes as f64).abs() <= bound,
            "{label}: the map's writes estimated {est} ± {bound}, truth {}",
            truth[0].writes
        );

        // trace in budget mode: every line is an operation the program made.
        let (truth, out) = traced::live(
            &bin,
            &["-rate", "10000", "-duration", "4"],
            "trace",
            &[
                "--mode",
                "budget",
                "--json",
                "--overhead",
                "1",
                "--max-rate",
                "100000000",
            ],
        );
        let traced = ops::traced(&common::json_lines(&out));
        let t = &truth[0];
        let got = traced
            .get(&t.id)
            .unwrap_or_else(|| panic!("{label} trace: no line of the paced map {}", t.id));
        assert!(got.ops[0] > 0 && got.ops[1] > 0, "{label} trace: {got:?}");
        for (key, [w, d]) in &got.by_key {
            let k = t
                .keys
                .iter()
                .find(|k| &k.key == key)
                .unwrap_or_else(|| panic!("{label} trace: key {key:?} the program never used"));
            assert!(
                *w <= k.writes && *d <= k.deletes,
                "{label} trace: {key:?} traced {w} writes, {d} deletes; the program made {} and {}",
                k.writes,
                k.deletes
            );
        }
    }
}
