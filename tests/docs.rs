//! The docs stay honest: docs/CONFIGURATION.md has a row for every setting of the settings
//! table, and marks the ones krbouncer does not act on yet; every krbouncer error message
//! quoted in docs/KERBEROS.md's troubleshooting table exists in src/; README links every doc.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs;
use std::path::{Path, PathBuf};

use krbouncer::config::{NOT_YET_IMPLEMENTED, SETTINGS};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `| \`name\` | ... |` rows of the "Every `[pgbouncer]` setting" table.
fn setting_rows(doc: &str) -> Vec<(String, String)> {
    let table = doc
        .split("## Every `[pgbouncer]` setting")
        .nth(1)
        .expect("CONFIGURATION.md has the settings table");
    table
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (name, tail) = rest.split_once("` |")?;
            Some((name.to_string(), tail.to_string()))
        })
        .collect()
}

#[test]
fn configuration_md_lists_every_setting_with_its_status() {
    let doc = read("docs/CONFIGURATION.md");
    let rows = setting_rows(&doc);
    for def in SETTINGS {
        let row = rows
            .iter()
            .find(|(n, _)| n == def.name)
            .unwrap_or_else(|| panic!("docs/CONFIGURATION.md has no row for `{}`", def.name));
        let status = row.1.rsplit('|').nth(1).unwrap_or("").trim();
        let reload = if def.reloadable { "reload" } else { "restart" };
        assert!(
            row.1.contains(&format!("| {reload} |")),
            "`{}`: row should say {reload}",
            def.name
        );
        if NOT_YET_IMPLEMENTED.contains(&def.name) {
            assert!(
                status.contains("not yet") || status.contains("not applied"),
                "`{}` is in NOT_YET_IMPLEMENTED but CONFIGURATION.md says: {status}",
                def.name
            );
        }
    }
    for (name, _) in &rows {
        assert!(
            SETTINGS.iter().any(|d| d.name == name),
            "CONFIGURATION.md documents `{name}`, which the settings table does not have"
        );
    }
    assert_eq!(rows.len(), SETTINGS.len(), "one row per setting");
}

fn rust_sources(dir: &Path, out: &mut String) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&fs::read_to_string(&p).expect("read source"));
        }
    }
}

#[test]
fn kerberos_troubleshooting_quotes_real_messages() {
    let doc = read("docs/KERBEROS.md");
    let section = doc
        .split("Messages from krbouncer:")
        .nth(1)
        .and_then(|s| s.split("Messages from PostgreSQL").next())
        .expect("KERBEROS.md has the krbouncer messages table");
    let mut src = String::new();
    rust_sources(&repo().join("src"), &mut src);
    // Source strings may be split across lines by rustfmt only between literals; messages
    // here are quoted up to their first placeholder, so each piece is one literal.
    let mut quoted = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).expect("first cell");
        for piece in cell.split('`').skip(1).step_by(2) {
            quoted += 1;
            assert!(
                src.contains(piece),
                "KERBEROS.md quotes `{piece}`, which is not in src/"
            );
        }
    }
    assert!(quoted >= 10, "only {quoted} messages checked");
}

#[test]
fn readme_links_every_doc() {
    let readme = read("README.md");
    for e in fs::read_dir(repo().join("docs")).expect("docs/") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert_eq!(
                name,
                name.to_uppercase().replace(".MD", ".md"),
                "docs/ keeps UPPER-CASE names"
            );
            assert!(
                readme.contains(&format!("docs/{name}")),
                "README does not link docs/{name}"
            );
        }
    }
}
