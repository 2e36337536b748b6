//! Process identity: `-u USER` (drop privileges) and `-d` (daemonize by re-spawning detached,
//! which needs no `fork` and so no unsafe code).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User, setgid, setuid};

const DAEMON_CHILD_ENV: &str = "KRBOUNCER_DAEMON_CHILD";

/// Why `-u` could not switch user.
#[derive(Debug, thiserror::Error)]
pub enum SwitchUserError {
    #[error("{0}")]
    Lookup(#[source] nix::Error),
    #[error("no such user")]
    NoSuchUser,
    #[error("only root can switch user")]
    NotRoot,
    #[error("{0}")]
    Switch(#[source] nix::Error),
}

/// Why `-d` could not start the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Spawn(#[source] std::io::Error),
    #[error("daemon (pid {pid}) did not write {pidfile}")]
    NoPidfile { pid: u32, pidfile: String },
}

/// Switches to `user` when running as root; a no-op when already that user.
pub fn switch_user(user: &str) -> Result<(), SwitchUserError> {
    let entry = User::from_name(user)
        .map_err(SwitchUserError::Lookup)?
        .ok_or(SwitchUserError::NoSuchUser)?;
    if Uid::effective() == entry.uid {
        return Ok(());
    }
    if !Uid::effective().is_root() {
        return Err(SwitchUserError::NotRoot);
    }
    setgid(Gid::from_raw(entry.gid.as_raw())).map_err(SwitchUserError::Switch)?;
    setuid(entry.uid).map_err(SwitchUserError::Switch)
}

pub fn is_daemon_child() -> bool {
    std::env::var_os(DAEMON_CHILD_ENV).is_some()
}

/// Starts this program again in its own process group with no terminal I/O, and waits until
/// it has written `pidfile`.
pub fn spawn_daemon(pidfile: &str) -> Result<(), DaemonError> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_file(pidfile);
    let exe = std::env::current_exe().map_err(DaemonError::Spawn)?;
    let child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(DaemonError::Spawn)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::metadata(pidfile).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(DaemonError::NoPidfile {
        pid: child.id(),
        pidfile: pidfile.to_string(),
    })
}
