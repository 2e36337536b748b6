//! Security rules that an operator can see from outside (docs/SECURITY.md): secret files
//! readable by others are warned about, and only `admin_users` may run KILL_CLIENT
//! (PgBouncer's CVE-2026-6667).
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::admin::{
    ADMIN, ADMIN_PASS, WATCHER, WATCHER_PASS, admin_config, admin_connect, admin_query,
};
use common::bouncer::{connect_conninfo, run_to_exit};
use common::pg;

fn check_output(users_mode: u32, keytab_mode: Option<u32>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "\"u\" \"pw\"\n").expect("users.txt");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(users_mode)).expect("chmod");
    let ini = dir.path().join("p.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host=127.0.0.1\n[pgbouncer]\nauth_file = {}\n",
            users.display()
        ),
    )
    .expect("ini");
    let keytab = dir.path().join("client.keytab");
    let mut env = Vec::new();
    let kt_value = format!("FILE:{}", keytab.display());
    if let Some(mode) = keytab_mode {
        std::fs::write(&keytab, b"not really a keytab").expect("keytab");
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(mode)).expect("chmod");
        env.push(("KRB5_CLIENT_KTNAME", kt_value.as_str()));
    }
    let ini = ini.display().to_string();
    let (status, stdout, stderr) = run_to_exit(&["--check", &ini], &env, Duration::from_secs(10));
    assert!(status.success(), "--check: {status}\n{stdout}{stderr}");
    stderr
}

#[test]
fn secret_files_readable_by_others_are_warned_about() {
    let out = check_output(0o644, Some(0o604));
    assert!(
        out.contains("auth_file") && out.contains("readable by other users"),
        "{out}"
    );
    assert!(out.contains("KRB5_CLIENT_KTNAME"), "{out}");
    let out = check_output(0o600, Some(0o400));
    assert!(!out.contains("readable by other users"), "{out}");
}

#[tokio::test]
async fn kill_client_needs_an_admin_user() {
    let b = admin_config(&[]).start();
    let (victim, _task) = connect_conninfo(&b.conninfo(pg::TRUST_USER, pg::TRUST_PASS, "testdb"))
        .await
        .expect("victim login");
    victim.simple_query("SELECT 1").await.expect("victim works");
    let admin = admin_connect(&b, ADMIN, ADMIN_PASS).await;
    let clients = admin_query(&admin, "SHOW CLIENTS")
        .await
        .expect("SHOW CLIENTS");
    let id = clients
        .rows
        .iter()
        .find(|r| r[clients.col("database")].as_deref() == Some("testdb"))
        .and_then(|r| r[clients.col("id")].clone())
        .expect("the victim is listed");
    let stats_user = admin_connect(&b, WATCHER, WATCHER_PASS).await;
    let e = admin_query(&stats_user, &format!("KILL_CLIENT {id}"))
        .await
        .expect_err("a stats user may not kill clients");
    assert!(e.contains("admin access needed"), "{e}");
    victim
        .simple_query("SELECT 1")
        .await
        .expect("the victim is untouched");
}
