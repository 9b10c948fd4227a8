//! Tests of the Go test programs themselves (tests/go/*, examples/hotkeys), owned by the test
//! suite: every program is built with every toolchain × variant and its output must be
//! well-formed and self-consistent, because the tracer's tests use it as ground truth.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{
    go_tool, matrix, parse_growth, parse_keys, parse_workload, run, run_output, toolchains, Counts,
    GoProcess, KeyCount, KeysRun, Toolchain, Variant, KEYS_SCENARIOS,
};
use object::{Object, ObjectSection, SectionKind};

const KEYS_N: u64 = 2000;

fn ctx(prog: &str, tc: &Toolchain, v: Variant) -> String {
    format!("{prog} built with Go {} ({})", tc.version, v.name())
}

/// Heap addresses: 0xc000000000+ up to Go 1.25; Go 1.26+ randomizes the heap base.
fn assert_heap_addr(addr: u64, tc: &Toolchain, what: &str) {
    if tc.minor() < 26 {
        assert!(
            (0xc0_0000_0000..0xd0_0000_0000).contains(&addr),
            "{what}: {addr:#x} is not a Go heap address"
        );
    } else {
        assert!(
            (0x1_0000_0000..0x8000_0000_0000).contains(&addr),
            "{what}: {addr:#x} is not a user-space heap address"
        );
    }
}

fn parse_user(key: &str, prefix: &str, what: &str) -> u64 {
    key.strip_prefix(prefix)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|id| *id < 64)
        .unwrap_or_else(|| panic!("{what}: bad key {key:?}"))
}

/// Checks one scenario's counts on its own: totals, order, skew, key format.
fn check_counts(c: &Counts, n: u64, tc: &Toolchain, what: &str) {
    let what = format!("{what}, scenario {}", c.scenario);
    assert_eq!(c.total, n, "{what}: total");
    let key_sum: u64 = c.keys.iter().map(|k| k.writes).sum();
    assert_eq!(key_sum, c.total, "{what}: sum of key writes != total");
    let func_sum: u64 = c.funcs.values().sum();
    assert_eq!(func_sum, c.total, "{what}: sum of funcs != total");
    assert!(c.funcs.values().all(|&w| w > 0), "{what}: {:?}", c.funcs);

    let distinct: HashSet<&str> = c.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(distinct.len(), c.keys.len(), "{what}: duplicate keys");
    assert!(c.keys.len() > 20, "{what}: only {} keys", c.keys.len());
    assert!(c.keys.iter().all(|k| k.writes > 0), "{what}: zero counts");
    for pair in c.keys.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.writes > b.writes || (a.writes == b.writes && a.key < b.key),
            "{what}: keys not sorted by writes desc, then key: {a:?} before {b:?}"
        );
    }
    // Skewed: the hottest key is far ahead of the 20th.
    assert!(
        c.keys[0].writes >= 3 * c.keys[19].writes,
        "{what}: not skewed: {:?}",
        c.top(20)
    );

    for KeyCount { key, .. } in &c.keys {
        match c.scenario.as_str() {
            "string" | "twofuncs_a" | "twofuncs_b" | "shared" | "goroutines" => {
                parse_user(key, "user:", &what);
            }
            "bigelem" => {
                parse_user(key, "big:", &what);
            }
            "int64" => {
                let v: i64 = key.parse().unwrap_or_else(|_| panic!("{what}: {key:?}"));
                assert!(v % 1_000_000_007 == 0 && (-10..54).contains(&(v / 1_000_000_007)));
            }
            "uint32" => {
                key.parse::<u32>()
                    .unwrap_or_else(|_| panic!("{what}: {key:?}"));
            }
            "pointer" => assert_heap_addr(common::parse_hex(key), tc, &what),
            "struct" => {
                let inner = key.strip_prefix('{').and_then(|k| k.strip_suffix('}'));
                let (id, name) = inner
                    .and_then(|k| k.split_once(' '))
                    .unwrap_or_else(|| panic!("{what}: {key:?}"));
                assert_eq!(name, format!("user:{id}"), "{what}: {key:?}");
                parse_user(name, "user:", &what);
            }
            "array" => {
                let inner = key.strip_prefix('[').and_then(|k| k.strip_suffix(']'));
                let parts: Vec<i64> = inner
                    .unwrap_or_else(|| panic!("{what}: {key:?}"))
                    .split(' ')
                    .map(|p| p.parse().unwrap_or_else(|_| panic!("{what}: {key:?}")))
                    .collect();
                assert!(
                    parts.len() == 3 && parts[1] == parts[0] * parts[0] && parts[2] == -parts[0],
                    "{what}: {key:?}"
                );
            }
            "iface" => {
                let id = key.strip_prefix('k').unwrap_or(key);
                assert!(id.parse::<u64>().is_ok_and(|id| id < 64), "{what}: {key:?}");
            }
            other => panic!("{what}: unknown scenario {other:?}"),
        }
    }
    match c.scenario.as_str() {
        "uint32" => assert!(
            c.keys
                .iter()
                .any(|k| k.key.parse::<u32>().unwrap() > i32::MAX as u32),
            "{what}: no key above i32::MAX"
        ),
        "int64" => assert!(
            c.keys.iter().any(|k| k.key.starts_with('-'))
                && c.keys
                    .iter()
                    .any(|k| k.key.parse::<i64>().unwrap() > i64::from(u32::MAX)),
            "{what}: want negative keys and keys above u32::MAX"
        ),
        "iface" => {
            let strings: BTreeSet<&str> = c
                .keys
                .iter()
                .filter_map(|k| k.key.strip_prefix('k'))
                .collect();
            let ints: BTreeSet<&str> = c
                .keys
                .iter()
                .map(|k| k.key.as_str())
                .filter(|k| !k.starts_with('k'))
                .collect();
            assert!(
                strings.intersection(&ints).count() > 5,
                "{what}: want both \"k<j>\" and <j> as keys for several j"
            );
        }
        "shared" => {
            let a = c.funcs.get("main.writeA").copied().unwrap_or(0);
            let b = c.funcs.get("main.writeB").copied().unwrap_or(0);
            assert!(
                a * 10 >= n * 6 && a * 10 <= n * 8 && b > 0,
                "{what}: want ~70% writeA, ~30% writeB: {:?}",
                c.funcs
            );
        }
        _ => {}
    }
}

/// Checks a whole run of `keys` with `-n n`.
fn check_keys(run: &KeysRun, n: u64, tc: &Toolchain, v: Variant, what: &str) {
    let t = &run.types;
    assert_ne!(t.main_main, 0, "{what}: main_main");
    let scenarios: Vec<&str> = t.maps.iter().map(|m| m.scenario.as_str()).collect();
    let expected: Vec<&str> = KEYS_SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(scenarios, expected, "{what}: types list");

    let mut ids = HashSet::new();
    let mut addr_of_type = BTreeMap::new();
    for (m, spec) in t.maps.iter().zip(&KEYS_SCENARIOS) {
        assert!(m.type_name.starts_with("map["), "{what}: {m:?}");
        assert_eq!(m.type_name, spec.type_name, "{what}: %T");
        assert_heap_addr(m.id, tc, what);
        assert!(ids.insert(m.id), "{what}: map id {:#x} twice", m.id);
        let static_range = if v == Variant::Pie {
            0x1000_0000..0x8000_0000_0000
        } else {
            0x40_0000..0x1000_0000
        };
        assert!(static_range.contains(&m.type_addr), "{what}: {m:?}");
        let prev = addr_of_type.insert(m.type_name.as_str(), m.type_addr);
        assert!(
            prev.is_none() || prev == Some(m.type_addr),
            "{what}: two descriptors for {}",
            m.type_name
        );
    }
    let distinct_addrs: HashSet<u64> = addr_of_type.values().copied().collect();
    assert_eq!(
        distinct_addrs.len(),
        addr_of_type.len(),
        "{what}: types share a descriptor: {addr_of_type:?}"
    );
    assert_eq!(addr_of_type.len(), 8, "{what}: distinct map types");

    assert_eq!(
        run.counts.len(),
        KEYS_SCENARIOS.len(),
        "{what}: counts lines"
    );
    for ((c, m), spec) in run.counts.iter().zip(&t.maps).zip(&KEYS_SCENARIOS) {
        assert_eq!(c.scenario, m.scenario, "{what}: counts order");
        assert_eq!(c.type_name, m.type_name, "{what}: type of {}", c.scenario);
        assert_eq!(c.id, m.id, "{what}: id of {}", c.scenario);
        let funcs: Vec<&str> = c.funcs.keys().map(String::as_str).collect();
        assert_eq!(funcs, spec.funcs, "{what}: funcs of {}", c.scenario);
        check_counts(c, n, tc, what);
    }
    // The three maps of one type are written independently.
    let a = run.counts("twofuncs_a");
    let b = run.counts("twofuncs_b");
    let s = run.counts("shared");
    assert!(a.keys != b.keys && a.keys != s.keys && b.keys != s.keys);
}

/// Scenario, funcs, keys (none for pointers), writes per key.
type Signature = Vec<(String, BTreeMap<String, u64>, Vec<String>, Vec<u64>)>;

/// What must be identical across toolchains and variants: everything but addresses.
fn signature(run: &KeysRun) -> Signature {
    run.counts
        .iter()
        .map(|c| {
            let keys = if c.scenario == "pointer" {
                Vec::new()
            } else {
                c.keys.iter().map(|k| k.key.clone()).collect()
            };
            let writes = c.keys.iter().map(|k| k.writes).collect();
            (c.scenario.clone(), c.funcs.clone(), keys, writes)
        })
        .collect()
}

#[test]
fn keys_output_is_exact_and_identical_on_every_build() {
    let mut first: Option<(String, _)> = None;
    for (tc, v, bin) in matrix("keys") {
        let what = ctx("keys", &tc, v);
        let keys = parse_keys(&run(&bin, &["-n", &KEYS_N.to_string()]));
        assert_eq!(keys.ready_pid, None, "{what}");
        check_keys(&keys, KEYS_N, &tc, v, &what);
        let sig = signature(&keys);
        match &first {
            None => first = Some((what, sig)),
            Some((first_what, first_sig)) => {
                assert!(
                    *first_sig == sig,
                    "{what} counts differ from {first_what}'s"
                );
            }
        }
    }
}

#[test]
fn keys_seed_and_n_change_the_counts() {
    let bin = common::build("keys", &common::newest_toolchain(), Variant::Plain);
    let tc = common::newest_toolchain();
    let base = parse_keys(&run(&bin, &["-n", "3000"]));
    let again = parse_keys(&run(&bin, &["-n", "3000"]));
    let seeded = parse_keys(&run(&bin, &["-n", "3000", "-seed", "7"]));
    let default_n = parse_keys(&run(&bin, &[]));
    check_keys(&base, 3000, &tc, Variant::Plain, "keys -n 3000");
    check_keys(&seeded, 3000, &tc, Variant::Plain, "keys -n 3000 -seed 7");
    check_keys(&default_n, 20000, &tc, Variant::Plain, "keys (default -n)");
    assert_eq!(
        signature(&base),
        signature(&again),
        "same seed, same counts"
    );
    assert_ne!(signature(&base), signature(&seeded), "another seed");
}

#[test]
fn keys_wait_blocks_until_sigusr1() {
    for (tc, v, bin) in matrix("keys") {
        let what = ctx("keys -wait", &tc, v);
        let mut p = GoProcess::start_waiting(&bin, &["-n", "500"]);
        // Nothing written while waiting: no more output, still running.
        assert_eq!(
            p.next_line(Duration::from_millis(150)),
            None,
            "{what}: output before SIGUSR1"
        );
        assert!(!p.has_exited(), "{what}: exited before SIGUSR1");
        let pid = p.pid();
        p.release();
        let keys = parse_keys(&p.finish());
        assert_eq!(keys.ready_pid, Some(pid), "{what}");
        check_keys(&keys, 500, &tc, v, &what);
    }
}

/// Section of the binary holding a link-time address.
fn section_of(file: &object::File, addr: u64) -> Option<(String, SectionKind)> {
    file.sections()
        .find(|s| (s.address()..s.address() + s.size()).contains(&addr))
        .map(|s| (s.name().unwrap_or("?").to_string(), s.kind()))
}

/// The addresses `keys` prints are the ones a tracer sees: main.main is the symbol (relocated in
/// a PIE), the type descriptors are read-only data of the binary.
#[test]
fn keys_addresses_match_the_binary() {
    for (tc, v, bin) in matrix("keys") {
        let what = ctx("keys", &tc, v);
        let keys = parse_keys(&run(&bin, &["-n", "1"]));
        let load_bias = if v.has_symbols() {
            let nm = go_tool(&tc, &["tool", "nm", bin.to_str().unwrap()]);
            let sym = nm
                .lines()
                .find(|l| l.ends_with(" T main.main"))
                .unwrap_or_else(|| panic!("{what}: no main.main in nm"));
            let addr = u64::from_str_radix(sym.split_whitespace().next().unwrap(), 16).unwrap();
            if v == Variant::Pie {
                let bias = keys.types.main_main.wrapping_sub(addr);
                assert!(bias != 0 && bias % 0x1000 == 0, "{what}: bias {bias:#x}");
                bias
            } else {
                assert_eq!(keys.types.main_main, addr, "{what}: main_main");
                0
            }
        } else {
            0
        };
        let data = std::fs::read(&bin).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let (text, kind) = section_of(&file, keys.types.main_main - load_bias)
            .unwrap_or_else(|| panic!("{what}: main_main outside the binary"));
        assert_eq!(
            (text.as_str(), kind),
            (".text", SectionKind::Text),
            "{what}"
        );
        for m in &keys.types.maps {
            let (name, kind) = section_of(&file, m.type_addr - load_bias)
                .unwrap_or_else(|| panic!("{what}: {m:?} outside the binary"));
            // .rodata (≤1.26), .go.type (1.27), .data.rel.ro[.go.type] in PIEs.
            assert!(
                [".rodata", ".go.type", ".data.rel.ro"]
                    .iter()
                    .any(|p| name.starts_with(p))
                    && kind != SectionKind::Text,
                "{what}: type descriptor of {} in section {name} ({kind:?})",
                m.type_name
            );
        }
    }
}

/// The write functions call the map-assign function the tracer expects for each key type.
#[test]
fn keys_write_functions_call_the_expected_mapassign() {
    common::skipped(
        "keys_write_functions_call_the_expected_mapassign: stripped builds (no symbol table for \
         go tool objdump); each toolchain's plain and PIE builds of the same source are checked",
    );
    for (tc, v, bin) in matrix("keys") {
        if !v.has_symbols() {
            continue;
        }
        let what = ctx("keys", &tc, v);
        let dis = go_tool(
            &tc,
            &[
                "tool",
                "objdump",
                "-s",
                "^main\\.write",
                bin.to_str().unwrap(),
            ],
        );
        let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut current = None;
        for line in dis.lines() {
            if let Some(rest) = line.strip_prefix("TEXT ") {
                current = rest.split('(').next().map(str::to_string);
            } else if let (Some(f), Some(i)) = (&current, line.find("CALL runtime.mapassign")) {
                let callee = line[i + 5..].split('(').next().unwrap().to_string();
                calls.entry(f.clone()).or_default().insert(callee);
            }
        }
        for spec in &KEYS_SCENARIOS {
            for f in spec.funcs {
                let want = BTreeSet::from([spec.assign.to_string()]);
                assert_eq!(calls.get(*f), Some(&want), "{what}: calls of {f}");
            }
        }
    }
}

fn check_growth(bin: &Path, args: &[&str], n: u64, type_name: &str, tc: &Toolchain, what: &str) {
    let g = parse_growth(&run(bin, args));
    assert_eq!(g.ready_pid, None, "{what}");
    assert_eq!(g.done.n, n, "{what}: n");
    assert_eq!(g.done.len, n, "{what}: len(m)");
    assert_eq!(g.done.type_name, type_name, "{what}");
    assert_heap_addr(g.done.id, tc, what);
}

#[test]
fn growth_inserts_n_distinct_keys() {
    for (tc, v, bin) in matrix("growth") {
        let what = ctx("growth", &tc, v);
        check_growth(&bin, &[], 1000, "map[int64]int", &tc, &what);
        check_growth(&bin, &["-n", "0"], 0, "map[int64]int", &tc, &what);
        let args = ["-n", "3000", "-hint", "100", "-kind", "string"];
        check_growth(&bin, &args, 3000, "map[string]int", &tc, &what);

        let mut p = GoProcess::start_waiting(&bin, &["-n", "50"]);
        assert_eq!(p.next_line(Duration::from_millis(100)), None, "{what}");
        let pid = p.pid();
        p.release();
        let g = parse_growth(&p.finish());
        assert_eq!((g.ready_pid, g.done.len), (Some(pid), 50), "{what} -wait");

        let bad = run_output(&bin, &["-kind", "float"], common::RUN_TIMEOUT);
        assert_eq!(bad.status.code(), Some(2), "{what}: bad -kind must fail");
    }
}

fn check_top_keys(keys: &[KeyCount], writes: u64, what: &str) {
    assert_eq!(keys.len(), 50, "{what}: top 50");
    for pair in keys.windows(2) {
        assert!(
            pair[0].writes > pair[1].writes
                || (pair[0].writes == pair[1].writes && pair[0].key < pair[1].key),
            "{what}: not sorted: {pair:?}"
        );
    }
    let distinct: HashSet<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(distinct.len(), keys.len(), "{what}: duplicate keys");
    let sum: u64 = keys.iter().map(|k| k.writes).sum();
    assert!(
        sum <= writes && sum > writes / 2,
        "{what}: top-50 sum {sum}"
    );
    assert!(
        keys[0].writes * 10 > writes,
        "{what}: hottest key under 10%"
    );
}

#[test]
fn workload_tight_loop_counts_every_write() {
    let mut first: Option<(String, Vec<KeyCount>)> = None;
    for (tc, v, bin) in matrix("workload") {
        let what = ctx("workload", &tc, v);
        let w = parse_workload(&run(&bin, &["-writes", "10000"]));
        assert_eq!(w.ready_pid, None, "{what}");
        assert!(w.progress.is_empty(), "{what}: progress without -progress");
        assert_eq!((w.done.writes, w.done.hashes), (10000, 0), "{what}");
        assert!(w.done.elapsed_ns > 0, "{what}");
        assert!(w.done.cpu_ns > 0, "{what}: no CPU time reported");
        check_top_keys(&w.done.keys, 10000, &what);
        for k in &w.done.keys {
            let id = k
                .key
                .strip_prefix("key:")
                .and_then(|i| i.parse::<u32>().ok());
            assert!(id.is_some_and(|i| i < 1000), "{what}: key {:?}", k.key);
        }
        match &first {
            None => first = Some((what.clone(), w.done.keys)),
            Some((first_what, keys)) => {
                assert!(
                    *keys == w.done.keys,
                    "{what}: keys differ from {first_what}'s"
                )
            }
        }

        let mut p = GoProcess::start_waiting(&bin, &["-writes", "2000", "-keys", "60"]);
        assert_eq!(p.next_line(Duration::from_millis(100)), None, "{what}");
        let pid = p.pid();
        p.release();
        let w = parse_workload(&p.finish());
        assert_eq!(
            (w.ready_pid, w.done.writes),
            (Some(pid), 2000),
            "{what} -wait"
        );
        check_top_keys(&w.done.keys, 2000, &what);
    }
}

/// Paced mode: about -rate writes/s for -duration, other work in between, a hot key appearing
/// after -hot-after, progress lines every second. Timing-based, so the bounds are loose.
#[test]
fn workload_paced_with_hot_key_and_progress() {
    for tc in toolchains() {
        let bin = common::build("workload", &tc, Variant::Plain);
        let what = ctx("workload -rate", &tc, Variant::Plain);
        let args = [
            "-rate",
            "20000",
            "-duration",
            "1.3",
            "-hot-after",
            "0.3",
            "-progress",
        ];
        let w = parse_workload(&run(&bin, &args));
        let d = &w.done;
        assert!(
            (5_000..=26_001).contains(&d.writes),
            "{what}: {} writes",
            d.writes
        );
        assert!(d.hashes > 0, "{what}: no work between writes");
        assert!(
            (1_300_000_000..5_000_000_000).contains(&d.elapsed_ns),
            "{what}: elapsed {}",
            d.elapsed_ns
        );
        assert!(!w.progress.is_empty(), "{what}: no progress line");
        for pair in w.progress.windows(2) {
            assert!(pair[0].writes <= pair[1].writes && pair[0].elapsed_ns < pair[1].elapsed_ns);
        }
        assert!(w.progress.iter().all(|p| p.writes <= d.writes));
        let hot = d.keys.iter().find(|k| k.key == "hot:1");
        let hot = hot.unwrap_or_else(|| panic!("{what}: no hot:1 in {:?}", d.keys));
        assert!(
            hot.writes * 100 >= d.writes * 10 && hot.writes * 100 <= d.writes * 25,
            "{what}: hot:1 has {} of {} writes",
            hot.writes,
            d.writes
        );
        check_top_keys(&d.keys, d.writes, &what);
    }
}

#[test]
fn builds_are_cached_and_distinct() {
    let tc = common::newest_toolchain();
    let mut paths = HashSet::new();
    for v in Variant::ALL {
        let a = common::build("growth", &tc, v);
        let modified = std::fs::metadata(&a).unwrap().modified().unwrap();
        let b = common::build("growth", &tc, v);
        assert_eq!(a, b);
        assert_eq!(std::fs::metadata(&b).unwrap().modified().unwrap(), modified);
        let name = a.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name, format!("growth-go{}-{}", tc.version, v.name()));
        assert!(a.starts_with(common::gotest_dir().join("growth")));
        paths.insert(a);
    }
    assert_eq!(paths.len(), 3);
    // The variants really differ: symbols, PIE.
    let info = |v| {
        go_tool(
            &tc,
            &[
                "version",
                "-m",
                common::build("growth", &tc, v).to_str().unwrap(),
            ],
        )
    };
    assert!(info(Variant::Stripped).contains("-ldflags=\"-s -w\""));
    assert!(info(Variant::Pie).contains("-buildmode=pie"));
    assert!(!info(Variant::Plain).contains("-buildmode=pie"));
}

#[test]
fn hotkeys_example_prints_its_top_keys() {
    let tc = common::newest_toolchain();
    let bin = common::build_example("hotkeys", &tc, Variant::Plain);
    let out = run_output(&bin, &["-duration", "300ms"], common::RUN_TIMEOUT);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(lines[0].starts_with("hotkeys: "), "{}", out.stdout);
    let top: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(top[0], "user:42", "{}", out.stdout);
    let pct: f64 = top[2].trim_end_matches('%').parse().unwrap();
    assert!((25.0..35.0).contains(&pct), "{}", out.stdout);
}

/// The checks above can fail: each kind of damage to a good `keys` output is caught.
#[test]
fn checks_reject_damaged_output() {
    let tc = common::newest_toolchain();
    let bin = common::build("keys", &tc, Variant::Plain);
    let good = parse_keys(&run(&bin, &["-n", "2000"]));
    check_keys(&good, 2000, &tc, Variant::Plain, "undamaged");

    type Damage = fn(&mut KeysRun);
    let damages: [(&str, Damage); 12] = [
        ("a lost write", |r| r.counts[0].keys[3].writes -= 1),
        ("a wrong total", |r| r.counts[1].total += 1),
        ("keys out of order", |r| r.counts[2].keys.swap(1, 2)),
        ("a duplicate key", |r| {
            let k = r.counts[4].keys[5].key.clone();
            r.counts[4].keys[6].key = k;
        }),
        ("a wrong function", |r| {
            let n = r.counts[0].funcs.remove("main.writeString").unwrap();
            r.counts[0].funcs.insert("main.writeStrings".into(), n);
        }),
        ("a swapped split", |r| {
            let i = r
                .counts
                .iter()
                .position(|c| c.scenario == "shared")
                .unwrap();
            let f = &mut r.counts[i].funcs;
            let a = f["main.writeA"];
            let b = f["main.writeB"];
            f.insert("main.writeA".into(), b);
            f.insert("main.writeB".into(), a);
        }),
        ("a wrong type", |r| {
            r.counts[3].type_name = "map[*main.T]int64".into()
        }),
        ("a wrong id", |r| r.counts[5].id += 8),
        ("a shared type descriptor", |r| {
            r.types.maps[1].type_addr = r.types.maps[0].type_addr
        }),
        ("a missing scenario", |r| {
            r.counts.pop();
        }),
        ("a malformed struct key", |r| {
            r.counts[4].keys[0].key = "{3 user:4}".into()
        }),
        ("a flat distribution", |r| {
            for c in &mut r.counts {
                let total = c.total;
                let n = c.keys.len() as u64;
                for (i, k) in c.keys.iter_mut().enumerate() {
                    k.writes = total / n + u64::from((i as u64) < total % n);
                }
            }
        }),
    ];
    for (what, damage) in damages {
        let mut r = good.clone();
        damage(&mut r);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_keys(&r, 2000, &tc, Variant::Plain, what)
        }));
        assert!(caught.is_err(), "{what} was not detected");
    }

    // Unknown or missing fields are format errors.
    let mut lines = run(&bin, &["-n", "30"]);
    lines[1]["extra"] = serde_json::json!(1);
    assert!(std::panic::catch_unwind(|| parse_keys(&lines)).is_err());
    let mut lines = run(&bin, &["-n", "30"]);
    lines[0].as_object_mut().unwrap().remove("main_main");
    assert!(std::panic::catch_unwind(|| parse_keys(&lines)).is_err());
}
