//! Deletes and clears (root, real uprobes) against the `deletes` program's own counts: `run` on
//! every toolchain × variant (totals, sites, keys ranked by writes and by deletes, lengths, no
//! nil map); `trace`, `top` and `serve` in exact mode on a classic-map and a Swiss-map Go; `top`
//! in budget mode, estimates within their stated bounds.
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

/// Scenarios the program prints counts of (without `-rate`).
const SCENARIOS: usize = 13;
/// Keys ranked per map: more than any scenario's map has but the refill and clear-size ones.
const TOP: usize = 40;

/// The newest classic-map and the newest Swiss-map toolchain.
fn one_of_each() -> Vec<Toolchain> {
    let all = common::toolchains();
    let classic = all.iter().rev().find(|t| !t.swiss_maps()).cloned();
    let swiss = all.iter().rev().find(|t| t.swiss_maps()).cloned();
    classic.into_iter().chain(swiss).collect()
}

#[test]
fn run_counts_every_delete_and_clear_on_every_toolchain_and_variant() {
    require_root();
    let _cpu = traced::among_others();
    let dir = tempdir("deletes-run");
    for (tc, variant, path) in common::matrix("deletes") {
        let label = format!("go{} {variant:?}", tc.version);
        let json = dir.join(format!("{}-{variant:?}.json", tc.version));
        let (truth, report, table) = traced::run(&label, (&path, &["-n", "2000"]), TOP, &json, &[]);
        assert_eq!(truth.len(), SCENARIOS, "{label}: scenarios");
        ops::check_exact(&label, &truth, &report, TOP, View::Run);
        // Deletes from a nil map are no map's.
        for m in report["maps"].as_array().unwrap() {
            assert_ne!(m["id"], "0x0", "{label}: a nil map in the report: {m}");
        }
        let deletes: u64 = truth.iter().map(|t| t.deletes).sum();
        let clears: u64 = truth.iter().map(|t| t.clears).sum();
        assert!(
            report["deletes_observed"].as_u64().unwrap() >= deletes,
            "{label}"
        );
        assert!(
            report["clears_observed"].as_u64().unwrap() >= clears,
            "{label}"
        );
        // The table says it too.
        let churn = &truth[0];
        assert_eq!(churn.scenario, "churn");
        assert!(
            table.contains(&format!(
                "{} writes, {} deletes, ",
                churn.writes, churn.deletes
            )),
            "{label}: the churn map's line in the table:\n{table}"
        );
        assert!(table.contains("most deleted keys:"), "{label}:\n{table}");
    }
}

#[test]
fn trace_and_top_in_exact_mode_show_every_delete_and_clear() {
    require_root();
    let _cpu = traced::among_others();
    for tc in one_of_each() {
        let bin = common::build("deletes", &tc, Variant::Plain);
        traced::trace_exact(&format!("go{} trace", tc.version), &bin, &["-n", "2000"]);
        traced::top_exact(&format!("go{} top", tc.version), &bin, &["-n", "2000"], TOP);
    }
}

/// `gomap_deletes_total` and `gomap_clears_total` of process `pid` for map type `map`.
fn removals_metric(scrape: &str, pid: u32, map: &str) -> (f64, f64) {
    let pid = pid.to_string();
    let labels = [("pid", pid.as_str()), ("map", map)];
    let get = |name: &str| {
        ops::sample_sum(scrape, name, &labels)
            .unwrap_or_else(|| panic!("no {name} of {map} in:\n{scrape}"))
    };
    (get("gomap_deletes_total"), get("gomap_clears_total"))
}

#[test]
fn serve_exports_deletes_and_clears_per_map_type_in_exact_mode() {
    require_root();
    let _cpu = traced::among_others();
    for tc in one_of_each() {
        let label = format!("go{} serve", tc.version);
        let bin = common::build("deletes", &tc, Variant::Plain);
        let served = Served::exact(&bin, &["-n", "2000", "-linger", "120"], SCENARIOS, TOP);
        let (truth, pid) = (&served.truth, served.target.pid());
        ops::check_exact(&label, truth, &served.report, TOP, View::Live);
        let scrape = served.scrape();
        // Map types only the program's scenarios have, so their series are the program's alone.
        let sum = |types: &[&str], f: fn(&ops::Truth) -> u64| -> f64 {
            truth
                .iter()
                .filter(|t| types.contains(&t.type_name.as_str()))
                .map(f)
                .sum::<u64>() as f64
        };
        for ty in [
            "map[int32]int",
            "map[*main.T]int",
            "map[main.Key]int",
            "map[[2]int]int",
            "map[uint16]int",
        ] {
            assert_eq!(
                removals_metric(&scrape, pid, ty),
                (sum(&[ty], |t| t.deletes), sum(&[ty], |t| t.clears)),
                "{label}: deletes and clears of {ty}"
            );
        }
        served.finish(&label);
    }
}

#[test]
fn budget_mode_estimates_deletes_within_their_bounds() {
    require_root();
    let _cpu = traced::alone();
    let tc = common::newest_toolchain();
    let bin = common::build("deletes", &tc, Variant::Plain);
    let (truth, report) = traced::top_once(
        &bin,
        &["-rate", "10000", "-duration", "6"],
        &["--duration", "60", "--overhead", "1", "--top", "8"],
    );
    let coverage = ops::check_budget("budget", &truth, &report);
    // The loop sleeps between its rounds: its wakeups count its progress.
    assert_eq!(report["estimated_by"], "wakeups", "{report}");
    assert!(
        coverage > 0.0 && coverage < 1.0,
        "20k operations/s must be sampled at a 1 % budget, coverage {coverage}"
    );
    let m = ops::map_of("budget", &report, &truth[0]);
    assert!(
        m["top_deletes"][0]["error_bound"].as_u64().unwrap() > 0,
        "a sampled estimate has a bound: {m}"
    );
    assert_eq!(m["top_deletes"][0]["key"], "hot:0", "the most deleted key");
}
