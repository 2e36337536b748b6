//! Kubernetes charts stop PgBouncer with `killall -INT pgbouncer`: krbouncer started through a
//! symlink named `pgbouncer` must show that name in `/proc/<pid>/comm` (what killall and
//! `pkill -x` match) and shut down the SIGINT way when signalled by that name.
//!
//! The signal is sent with `pkill -INT -x -P <this test's pid> pgbouncer`: the same exact-name
//! match on `comm` as killall, restricted to this test's children so that no other process
//! called pgbouncer on the machine is touched.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::fs;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ports::free_port;
use common::wait;

#[test]
fn runs_as_pgbouncer_and_stops_on_a_name_based_sigint() {
    // a missing tool is a failure, never a skip
    assert!(
        Command::new("pkill").arg("--version").output().is_ok(),
        "pkill (procps) is not installed; cannot signal by process name"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("pgbouncer");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_krbouncer"), &link).expect("symlink");
    let port = free_port();
    let ini = dir.path().join("pgbouncer.ini");
    fs::write(
        &ini,
        format!(
            "[databases]\nx = host=127.0.0.1 port=1\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir = {d}\nauth_type = trust\n\
             auth_file = {d}/users.txt\n",
            d = dir.path().display()
        ),
    )
    .expect("ini");
    fs::write(dir.path().join("users.txt"), "").expect("users.txt");
    let log_path = dir.path().join("log");
    let log = fs::File::create(&log_path).expect("log");
    let mut child = Command::new(&link)
        .arg(&ini)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start through the symlink");
    let read_log = || fs::read_to_string(&log_path).unwrap_or_default();
    let up = wait::until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !up {
        let _ = child.kill();
        let _ = child.wait();
        panic!("did not start:\n{}", read_log());
    }
    let comm = fs::read_to_string(format!("/proc/{}/comm", child.id())).expect("comm");
    assert_eq!(comm.trim(), "pgbouncer");

    let pkill = Command::new("pkill")
        .args(["-INT", "-x", "-P"])
        .arg(std::process::id().to_string())
        .arg("pgbouncer")
        .status()
        .expect("run pkill");
    assert!(pkill.success(), "pkill found no process named pgbouncer");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 30 s after SIGINT:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", read_log());
    let log = read_log();
    assert!(
        log.contains("got SIGINT, shutting down, waiting for all servers to be released"),
        "{log}"
    );
    assert!(log.contains("shutdown complete"), "{log}");
}
