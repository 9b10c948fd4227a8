//! The layer rule, checked on the source: every module under `src/<layer>/` (or `src/<layer>.rs`)
//! imports only from its own layer and the layers before it in [`crate::LAYERS`]. Paths are
//! found as `crate::X` anywhere in code (`use crate::X::…`, `use crate::{X, …}`, `crate::X::f()`),
//! comments and string literals left out.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::LAYERS;

/// Top-level modules named by `crate::…` paths in `code`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let code = strip_comments_and_strings(code);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // e.g. `ebpf_map_trace::` or `$crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_first_segment(&item, &mut out);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            push_first_segment(&item, &mut out);
        } else {
            push_first_segment(rest, &mut out);
        }
    }
    out
}

fn push_first_segment(path: &str, out: &mut BTreeSet<String>) {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        out.insert(name);
    }
}

/// `code` without `//` and `/* */` comments and without the contents of string literals.
fn strip_comments_and_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // a char literal such as '"'
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The layer a file under `src/` belongs to (its first path component, without `.rs`).
fn layer_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every import from a higher layer, as `file: imports X (layer i above j)`; and every module
/// not in the list.
fn violations(src: &Path) -> Vec<String> {
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src/");
        if rel == Path::new("lib.rs")
            || rel == Path::new("main.rs")
            || rel == Path::new("layers.rs")
        {
            continue;
        }
        let layer = layer_of(rel).expect("a file name");
        let Some(own) = rank(&layer) else {
            bad.push(format!(
                "{}: module `{layer}` is not in LAYERS",
                rel.display()
            ));
            continue;
        };
        let code = std::fs::read_to_string(&file).expect("readable source");
        for import in crate_imports(&code) {
            match rank(&import) {
                Some(r) if r > own => bad.push(format!(
                    "{}: imports `{import}`, a layer above `{layer}`",
                    rel.display()
                )),
                _ => {}
            }
        }
    }
    bad
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(bad.is_empty(), "layer rule broken:\n{}", bad.join("\n"));
}

#[test]
fn imports_are_found_in_every_form_and_not_in_comments_or_strings() {
    let code = r#"
        use crate::report::{self, table};
        use crate::{decode::keys::Key, hotkeys::{exact, live}, probe};
        // use crate::cli::Args;
        /* crate::export */
        let s = "crate::pipeline::watch";
        let c = '"';
        fn f() { crate::sampling::duty::error_bound(1.0, 0.5); }
        let x = ebpf_map_trace::cli::main;
    "#;
    let got: Vec<String> = crate_imports(code).into_iter().collect();
    assert_eq!(got, ["decode", "hotkeys", "probe", "report", "sampling"]);
}

#[test]
fn an_upward_import_is_reported() {
    let dir = std::env::temp_dir().join(format!("layers-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("decode")).unwrap();
    std::fs::create_dir_all(dir.join("stray")).unwrap();
    std::fs::write(dir.join("decode/keys.rs"), "use crate::gobin::X;\n").unwrap();
    std::fs::write(
        dir.join("decode/bad.rs"),
        "fn f() { crate::report::build(); }\n",
    )
    .unwrap();
    std::fs::write(dir.join("stray/mod.rs"), "").unwrap();
    let bad = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        bad,
        [
            "decode/bad.rs: imports `report`, a layer above `decode`",
            "stray/mod.rs: module `stray` is not in LAYERS",
        ]
    );
}
