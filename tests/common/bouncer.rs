//! `Bouncer`: the krbouncer binary as a child process with its own pgbouncer.ini, users.txt and
//! unix socket directory in a temp dir; stderr goes to `<dir>/krbouncer.log`.
//!
//! `BouncerConfig` renders the ini from `[databases]` lines, a `[pgbouncer]` settings map with
//! test-friendly defaults, `[users]` lines and users.txt lines. In every rendered line `@DIR@`
//! becomes the bouncer's directory and `@PORT@` its listen port.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::ports::free_port;
use super::secrets::auth_file_line;

/// Path of the binary under test; `KRBOUNCER_BIN` overrides it, e.g. to check the tests
/// themselves against a real PgBouncer (which refuses to run as root) with a wrapper like:
///
/// ```sh
/// #!/bin/sh
/// for a; do last=$a; done   # the ini path; its dir must be writable for the unix socket
/// case "$last" in *.ini) chmod 0777 "$(dirname "$last")" ;; esac
/// exec setpriv --reuid=postgres --regid=postgres --init-groups -- /usr/sbin/pgbouncer "$@"
/// ```
pub fn krbouncer_bin() -> String {
    std::env::var("KRBOUNCER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_krbouncer").to_string())
}
/// How long a starting bouncer may take to accept TCP connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Builder for a bouncer's configuration files and process options.
#[derive(Clone, Debug)]
pub struct BouncerConfig {
    pub databases: Vec<String>,
    pub settings: BTreeMap<String, String>,
    pub users: Vec<String>,
    pub auth_lines: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Default for BouncerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BouncerConfig {
    /// Defaults: listen on 127.0.0.1:@PORT@ and @DIR@/.s.PGSQL.@PORT@, auth_type md5 against
    /// @DIR@/users.txt, session pooling, fast server login retry, no logfile (stderr).
    pub fn new() -> Self {
        let mut settings = BTreeMap::new();
        for (k, v) in [
            ("listen_addr", "127.0.0.1"),
            ("listen_port", "@PORT@"),
            ("unix_socket_dir", "@DIR@"),
            ("auth_type", "md5"),
            ("auth_file", "@DIR@/users.txt"),
            ("pool_mode", "session"),
            ("server_login_retry", "1"),
            ("server_connect_timeout", "5"),
            ("default_pool_size", "10"),
            ("max_client_conn", "100"),
        ] {
            settings.insert(k.to_string(), v.to_string());
        }
        BouncerConfig {
            databases: Vec::new(),
            settings,
            users: Vec::new(),
            auth_lines: Vec::new(),
            args: vec!["-v".to_string()],
            env: Vec::new(),
        }
    }

    /// Adds a `[databases]` line, e.g. `testdb = host=127.0.0.1 port=5432 dbname=testdb`.
    pub fn database(mut self, line: impl Into<String>) -> Self {
        self.databases.push(line.into());
        self
    }

    /// Sets a `[pgbouncer]` key.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.settings.insert(key.to_string(), value.to_string());
        self
    }

    /// Removes a `[pgbouncer]` key (falls back to the program default).
    pub fn unset(mut self, key: &str) -> Self {
        self.settings.remove(key);
        self
    }

    /// Adds a `[users]` line, e.g. `alice = pool_mode=transaction`.
    pub fn user_line(mut self, line: impl Into<String>) -> Self {
        self.users.push(line.into());
        self
    }

    /// Adds a users.txt entry `"user" "secret"` (secret: plaintext, md5..., SCRAM-SHA-256$...).
    pub fn auth(mut self, user: &str, secret: &str) -> Self {
        self.auth_lines.push(auth_file_line(user, secret));
        self
    }

    /// Adds a raw users.txt line (for broken-file tests).
    pub fn auth_raw(mut self, line: impl Into<String>) -> Self {
        self.auth_lines.push(line.into());
        self
    }

    /// Replaces the command-line options placed before the ini path (default `-v`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds an environment variable for the process (e.g. KRB5_CONFIG).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The pgbouncer.ini text (placeholders not yet substituted).
    pub fn ini_template(&self) -> String {
        let mut ini = String::from(";; written by the krbouncer integration tests\n[databases]\n");
        for l in &self.databases {
            ini += l;
            ini.push('\n');
        }
        ini += "\n[pgbouncer]\n";
        for (k, v) in &self.settings {
            ini += &format!("{k} = {v}\n");
        }
        if !self.users.is_empty() {
            ini += "\n[users]\n";
            for l in &self.users {
                ini += l;
                ini.push('\n');
            }
        }
        ini
    }

    /// users.txt text.
    pub fn users_txt(&self) -> String {
        let mut s = String::new();
        for l in &self.auth_lines {
            s += l;
            s.push('\n');
        }
        s
    }

    /// Starts the bouncer and waits until it accepts TCP connections; panics with its log if
    /// it exits first or does not come up within [`START_TIMEOUT`].
    pub fn start(self) -> Bouncer {
        Bouncer::start_with(self.ini_template(), self.users_txt(), self.args, self.env)
    }

    /// Like [`BouncerConfig::start`], on a given port.
    pub fn start_on_port(self, port: u16) -> Bouncer {
        Bouncer::start_on_port(
            self.ini_template(),
            self.users_txt(),
            self.args,
            self.env,
            port,
        )
    }
}

/// Substitutes `@DIR@` and `@PORT@`.
pub fn fill(template: &str, dir: &Path, port: u16) -> String {
    template
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
}

fn new_dir(prefix: &str) -> PathBuf {
    let dir = match tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(std::env::temp_dir())
    {
        Ok(d) => d.keep(),
        Err(e) => panic!("creating a temp dir: {e}"),
    };
    // Readable by others: PostgreSQL's OS user may need to reach files in it (keytabs).
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
    dir
}

fn write(path: &Path, text: &str) {
    if let Err(e) = fs::write(path, text) {
        panic!("writing {}: {e}", path.display());
    }
}

/// A running krbouncer process, killed on drop.
#[derive(Debug)]
pub struct Bouncer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Bouncer {
    /// Starts krbouncer on an ini template and users.txt text (placeholders `@DIR@`/`@PORT@`).
    /// Retries with another port if the first one was taken meanwhile.
    pub fn start_with(
        ini: String,
        users_txt: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Bouncer {
        let dir = new_dir("krbouncer-test.");
        let mut last_log = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&dir, &ini, &users_txt, &args, &env, free_port(), false) {
                Ok(b) => return b,
                Err(log) => last_log = log,
            }
        }
        panic!("krbouncer could not bind a port in 3 tries:\n{last_log}");
    }

    /// Starts krbouncer on a port chosen by the caller (several processes sharing one port
    /// with `so_reuseport`); panics with its log if it does not come up.
    pub fn start_on_port(
        ini: String,
        users_txt: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        port: u16,
    ) -> Bouncer {
        let dir = new_dir("krbouncer-test.");
        match Self::try_start(&dir, &ini, &users_txt, &args, &env, port, true) {
            Ok(b) => b,
            Err(log) => panic!("krbouncer did not start on port {port}:\n{log}"),
        }
    }

    /// One start attempt on `port`: Ok once it accepts, Err(log) if it exited because the
    /// address was in use; panics on any other failure. With `shared_port` another process
    /// may answer on the TCP port, so readiness is also checked on this one's unix socket.
    fn try_start(
        dir: &Path,
        ini: &str,
        users_txt: &str,
        args: &[String],
        env: &[(String, String)],
        port: u16,
        shared_port: bool,
    ) -> Result<Bouncer, String> {
        write(&dir.join("pgbouncer.ini"), &fill(ini, dir, port));
        write(&dir.join("users.txt"), &fill(users_txt, dir, port));
        let log_path = dir.join("krbouncer.log");
        let log = match File::create(&log_path) {
            Ok(f) => f,
            Err(e) => panic!("creating {}: {e}", log_path.display()),
        };
        let log2 = match log.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("cloning log handle: {e}"),
        };
        let mut cmd = Command::new(krbouncer_bin());
        cmd.args(args)
            .arg(dir.join("pgbouncer.ini"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("spawning {}: {e}", krbouncer_bin()),
        };
        let mut b = Bouncer {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
        };
        match b.wait_ready(shared_port) {
            Ok(()) => Ok(b),
            Err(exited) => {
                let log = b.log();
                if !(exited && log.to_lowercase().contains("in use")) {
                    panic!("krbouncer did not start (dir {}):\n{log}", dir.display());
                }
                Err(log)
            }
        }
    }

    /// Ok once the port accepts; Err(true) if the process exited, Err(false) on timeout.
    fn wait_ready(&mut self, own_unix_socket: bool) -> Result<(), bool> {
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return Err(true);
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && (!own_unix_socket || std::os::unix::net::UnixStream::connect(&socket).is_ok())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bouncer's directory (ini, users.txt, log, unix socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ini_path(&self) -> PathBuf {
        self.dir.join("pgbouncer.ini")
    }

    pub fn users_path(&self) -> PathBuf {
        self.dir.join("users.txt")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the process wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("krbouncer.log")).unwrap_or_default()
    }

    /// Polls the log for `needle` until `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        super::wait::until(timeout, || self.log().contains(needle))
    }

    /// Sends a signal to the process.
    pub fn send_signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits for the process to exit on its own (after a signal); None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// tokio-postgres conninfo over TCP.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db} sslmode=disable connect_timeout=20",
            self.port
        )
    }

    /// tokio-postgres conninfo over the unix socket in [`dir`](Self::dir).
    pub fn conninfo_unix(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} password={password} dbname={db} connect_timeout=20",
            self.dir.display(),
            self.port
        )
    }

    /// Logs in with tokio-postgres and spawns the connection task.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        connect_conninfo(&self.conninfo(user, password, db)).await
    }

    /// Runs `psql -X -h 127.0.0.1 -p <port> -U user -d db <args>` with PGPASSWORD.
    pub fn psql(&self, user: &str, password: &str, db: &str, args: &[&str]) -> Output {
        let out = Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", user, "-d", db])
            .args(args)
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "20")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => o,
            Err(e) => panic!("running psql: {e}"),
        }
    }
}

impl Drop for Bouncer {
    /// SIGQUIT (PgBouncer: immediate shutdown) so teardown never waits for clients still open
    /// in the test's runtime; SIGKILL after 5 s. The directory is kept when the test panicked,
    /// for post-mortem, and removed otherwise.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "krbouncer dir kept: {}\n--- krbouncer log ---\n{}",
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// tokio-postgres login on a conninfo string, with the connection task spawned.
pub async fn connect_conninfo(
    conninfo: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, task))
}

/// Message, SQLSTATE and source chain of a tokio-postgres error, for assertions.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} [{}]", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s += &format!(": {inner}");
                src = inner.source();
            }
            s
        }
    }
}

/// Runs krbouncer with `args` (no config wait), returns exit status, stdout and stderr; the
/// process is killed if it is still running after `timeout` (then the status is a signal).
pub fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let dir = new_dir("krbouncer-run.");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let (out, err) = match (File::create(&out_path), File::create(&err_path)) {
        (Ok(o), Ok(e)) => (o, e),
        _ => panic!("creating output files in {}", dir.display()),
    };
    let mut cmd = Command::new(krbouncer_bin());
    cmd.args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("spawning {}: {e}", krbouncer_bin()),
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                match child.wait() {
                    Ok(st) => break st,
                    Err(e) => panic!("waiting for krbouncer: {e}"),
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for krbouncer: {e}"),
        }
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    (status, stdout, stderr)
}

/// Writes `ini` (placeholders filled with a fresh dir and port) and `users_txt` into a new temp
/// dir and returns (dir, ini path). For `--check` and config-error tests.
pub fn write_config(ini: &str, users_txt: &str) -> (PathBuf, PathBuf) {
    let dir = new_dir("krbouncer-cfg.");
    let port = free_port();
    let ini_path = dir.join("pgbouncer.ini");
    write(&ini_path, &fill(ini, &dir, port));
    write(&dir.join("users.txt"), &fill(users_txt, &dir, port));
    (dir, ini_path)
}

/// Starts krbouncer on a config that must be rejected: returns (exit status, stderr+stdout).
/// Panics if the process is still running after 10 s (the config was accepted).
pub fn run_expect_fail(ini: &str, users_txt: &str) -> (ExitStatus, String, PathBuf) {
    let (dir, ini_path) = write_config(ini, users_txt);
    let ini_arg = ini_path.display().to_string();
    let (status, stdout, stderr) = run_to_exit(&["-v", &ini_arg], &[], Duration::from_secs(10));
    if status.code().is_none() {
        panic!("krbouncer kept running on a bad config (killed after 10 s):\n{stderr}{stdout}");
    }
    let _ = fs::remove_dir_all(&dir);
    (status, format!("{stderr}{stdout}"), ini_path)
}
