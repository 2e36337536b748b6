//! Process identity: `-u USER` (drop privileges) and `-d` (daemonize by re-spawning detached,
//! which needs no `fork` and so no unsafe code).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User, setgid, setuid};

const DAEMON_CHILD_ENV: &str = "KRBOUNCER_DAEMON_CHILD";

/// Switches to `user` when running as root; a no-op when already that user.
pub fn switch_user(user: &str) -> Result<(), String> {
    let entry = User::from_name(user)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no such user".to_string())?;
    if Uid::effective() == entry.uid {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err("only root can switch user".into());
    }
    setgid(Gid::from_raw(entry.gid.as_raw())).map_err(|e| e.to_string())?;
    setuid(entry.uid).map_err(|e| e.to_string())
}

pub fn is_daemon_child() -> bool {
    std::env::var_os(DAEMON_CHILD_ENV).is_some()
}

/// Starts this program again in its own process group with no terminal I/O, and waits until
/// it has written `pidfile`.
pub fn spawn_daemon(pidfile: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_file(pidfile);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::metadata(pidfile).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "daemon (pid {}) did not write {pidfile}",
        child.id()
    ))
}
