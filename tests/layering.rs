//! The layers point down only: protocol / config / auth -> net -> server -> pool -> shared ->
//! client / admin / metrics -> app -> serve. Reads every file under `src/` and fails when one
//! names a module of a higher layer (`crate::x`, or `super::` climbing out of its own tree),
//! or when the top-level modules of one layer depend on each other in a cycle.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may name its own layer and those below.
const LAYERS: &[(&str, u8)] = &[
    ("protocol", 0),
    ("config", 0),
    ("auth", 0),
    ("shutdown", 0),
    ("process", 0),
    ("logging", 0),
    ("cli", 0),
    ("repr", 0),
    ("net", 1),
    ("server", 2),
    ("pool", 3),
    ("stats", 3),
    ("shared", 4),
    ("client", 5),
    ("admin", 5),
    ("metrics", 5),
    ("stats_period", 5),
    ("reload", 5),
    ("app", 6),
    ("signals", 7),
    ("serve", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The source without comments (doc comments name modules freely) and string literals.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
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
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Top-level modules a file names: `crate::x` anywhere (`use` lists included, since a list
/// starts with the path) and `super::` paths that leave the file's top-level module.
fn named_modules(rel: &Path, src: &str) -> BTreeSet<String> {
    let code = code_only(src);
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // `crate::{a::x, b}`: the first name of every top-level item of the list
            let mut nesting = 0;
            let mut item_start = true;
            for (i, c) in list.char_indices() {
                match c {
                    '{' => nesting += 1,
                    '}' if nesting == 0 => break,
                    '}' => nesting -= 1,
                    ',' if nesting == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        found.insert(ident_at(&list[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else if !ident_at(rest).is_empty() {
            found.insert(ident_at(rest));
        }
    }
    // `super::` chains: a file's module path has `depth` parts (src/net/relay.rs and
    // src/net/server_tls/mod.rs: 2); climbing that many levels leaves its top-level module.
    // Glob imports (`use super::*` in test modules) stay inside the file.
    let comps: Vec<_> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let depth = comps.len() - usize::from(comps.last().is_some_and(|l| l == "mod.rs"));
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut k = 0;
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            k += 1;
            rest = r;
        }
        if k >= depth && !rest.starts_with('*') {
            found.insert(format!("<`super::` x{k} leaves {}>", comps[0]));
        }
    }
    found
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn top_module(rel: &Path) -> String {
    let first = rel.iter().next().map(|c| c.to_string_lossy().into_owned());
    first
        .unwrap_or_default()
        .trim_end_matches(".rs")
        .to_string()
}

/// Every layering violation among `files` (path relative to `src/`, contents).
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, src) in files {
        let from = top_module(rel);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_layer) = layer(&from) else {
            out.push(format!(
                "{}: module `{from}` has no layer in LAYERS",
                rel.display()
            ));
            continue;
        };
        for to in named_modules(rel, src) {
            if to.starts_with('<') {
                out.push(format!("{}: {to}", rel.display()));
                continue;
            }
            if to == from {
                continue;
            }
            match layer(&to) {
                Some(l) if l > from_layer => out.push(format!(
                    "{}: names crate::{to} (layer {l}) from layer {from_layer}",
                    rel.display()
                )),
                Some(_) => {
                    deps.entry(from.clone()).or_default().insert(to);
                }
                None => out.push(format!(
                    "{}: names unknown module crate::{to}",
                    rel.display()
                )),
            }
        }
    }
    // siblings in one layer may use each other, but not in a circle
    for start in deps.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((m, path)) = stack.pop() {
            for next in deps.get(&m).into_iter().flatten() {
                if next == start {
                    out.push(format!("cycle: {} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    out
}

fn source_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source file is UTF-8");
            let rel = path.strip_prefix(root).expect("under src/").to_path_buf();
            out.push((rel, text));
        }
    }
}

#[test]
fn layers_point_down_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    let v = violations(&files);
    assert!(v.is_empty(), "layering violations:\n{}", v.join("\n"));
}

#[test]
fn lower_layers_never_name_app_client_admin_or_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &root, &mut files);
    for (rel, src) in &files {
        if ["protocol", "net", "server", "pool"].contains(&top_module(rel).as_str()) {
            let named = named_modules(rel, src);
            for upper in ["app", "client", "admin", "metrics", "shared"] {
                assert!(
                    !named.contains(upper),
                    "{} names crate::{upper}",
                    rel.display()
                );
            }
        }
    }
}

/// The checker itself: an upward import, a sibling cycle and a `super::` escape are caught.
#[test]
fn the_check_catches_upward_imports_and_cycles() {
    let f = |p: &str, s: &str| (PathBuf::from(p), s.to_string());
    let upward = [f("net/listener.rs", "use crate::client::serve;\n")];
    assert_eq!(violations(&upward).len(), 1, "{:?}", violations(&upward));
    let upward_in_list = [f(
        "pool/janitor.rs",
        "use crate::{app::App, config::Config};\n",
    )];
    assert_eq!(violations(&upward_in_list).len(), 1);
    let inline = [f("server/conn.rs", "fn f(_: crate::pool::Pool) {}\n")];
    assert_eq!(violations(&inline).len(), 1);
    let commented = [f(
        "server/conn.rs",
        "//! sits below `crate::pool`\n\"crate::app\";\n",
    )];
    assert!(violations(&commented).is_empty());
    let cycle = [
        f("client/mod.rs", "use crate::admin::x;\n"),
        f("admin/mod.rs", "use crate::client::y;\n"),
    ];
    assert!(violations(&cycle).iter().any(|v| v.starts_with("cycle")));
    let escape = [f("net/relay.rs", "use super::super::app::App;\n")];
    assert!(!violations(&escape).is_empty());
}
