//! `PgCluster`: a throw-away PostgreSQL cluster (initdb in a temp dir, loopback port, unix socket
//! in the temp dir) with roles for every password auth method, for integration tests.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server-side command
//! runs as the `postgres` OS user (or `nobody`) through `setpriv`. A detached reaper process
//! stops the cluster and removes its directory once the test process is gone, so a cluster dies
//! with its test binary even on panic or SIGKILL (a `static` cluster is never dropped).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

use super::ports::free_port;

/// Login roles created in every cluster, with their passwords, and how pg_hba.conf treats them
/// on 127.0.0.1: trust_user = trust, md5_user = md5 (stored as md5), scram_user =
/// scram-sha-256, clear_user = password (cleartext on the wire, stored as SCRAM).
pub const TRUST_USER: &str = "trust_user";
pub const TRUST_PASS: &str = "trust_pass";
pub const MD5_USER: &str = "md5_user";
pub const MD5_PASS: &str = "md5_pass";
pub const SCRAM_USER: &str = "scram_user";
pub const SCRAM_PASS: &str = "scram_pass";
pub const CLEAR_USER: &str = "clear_user";
pub const CLEAR_PASS: &str = "clear_pass";
/// (role, password) for all roles above.
pub const ROLES: [(&str, &str); 4] = [
    (TRUST_USER, TRUST_PASS),
    (MD5_USER, MD5_PASS),
    (SCRAM_USER, SCRAM_PASS),
    (CLEAR_USER, CLEAR_PASS),
];
/// Databases created besides `postgres`.
pub const DATABASES: [&str; 2] = ["testdb", "otherdb"];

const HBA: &str = "\
local all all                          trust
host  all trust_user 127.0.0.1/32      trust
host  all md5_user   127.0.0.1/32      md5
host  all scram_user 127.0.0.1/32      scram-sha-256
host  all clear_user 127.0.0.1/32      password
host  all all        127.0.0.1/32      scram-sha-256
";

fn setup_sql() -> String {
    let mut sql = String::from("SET password_encryption = 'md5';\n");
    sql += &format!("CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASS}';\n");
    sql += "SET password_encryption = 'scram-sha-256';\n";
    for (role, pass) in ROLES {
        if role != MD5_USER {
            sql += &format!("CREATE ROLE {role} LOGIN PASSWORD '{pass}';\n");
        }
        sql += &format!("GRANT pg_read_all_stats, pg_signal_backend TO {role};\n");
    }
    for db in DATABASES {
        sql += &format!("CREATE DATABASE {db};\n");
    }
    sql
}

/// The OS identity that runs the server binaries (None: the current user).
#[derive(Clone, Debug)]
struct PgOsUser {
    name: String,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

fn pg_os_user() -> Result<Option<PgOsUser>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(u) = nix::unistd::User::from_name(name)? {
            return Ok(Some(PgOsUser {
                name: name.to_string(),
                uid: u.uid,
                gid: u.gid,
            }));
        }
    }
    bail!("running as root but neither a `postgres` nor a `nobody` OS user exists")
}

/// Directory holding initdb/pg_ctl/postgres (`PG_BINDIR` overrides; else the newest
/// /usr/lib/postgresql/*/bin; else wherever `pg_ctl` is on PATH).
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => PathBuf::from("/usr/bin"),
    }
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A running PostgreSQL cluster owned by the test process.
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    run: PathBuf,
    port: u16,
    bindir: PathBuf,
    os_user: Option<PgOsUser>,
}

impl PgCluster {
    /// The cluster shared by all tests of this test binary, started on first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| match PgCluster::try_start() {
            Ok(c) => c,
            Err(e) => panic!("starting the shared PostgreSQL cluster: {e:#}"),
        })
    }

    /// A cluster of its own (stopped and removed on drop), for tests that restart or break it.
    pub fn start_new() -> PgCluster {
        match PgCluster::try_start() {
            Ok(c) => c,
            Err(e) => panic!("starting a PostgreSQL cluster: {e:#}"),
        }
    }

    pub fn try_start() -> Result<PgCluster> {
        let os_user = pg_os_user()?;
        let root = tempfile::Builder::new()
            .prefix("krbouncer-pg.")
            .tempdir_in(std::env::temp_dir())?
            .keep();
        // the postgres OS user must be able to traverse into the directory
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        let mut cluster = PgCluster {
            data: root.join("data"),
            run: root.join("run"),
            root,
            port: 0,
            bindir: pg_bindir(),
            os_user,
        };
        cluster.spawn_reaper()?;
        cluster.make_dir(&cluster.data, 0o700)?;
        cluster.make_dir(&cluster.run, 0o755)?;
        cluster.initdb()?;
        cluster.write_hba()?;
        let mut last_err = None;
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.configure_and_start() {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        cluster.psql_super_in("postgres", &setup_sql())?;
        for db in DATABASES {
            // PostgreSQL 15 no longer lets every role create tables in `public`.
            cluster.psql_super_in(db, "GRANT ALL ON SCHEMA public TO PUBLIC;")?;
        }
        Ok(cluster)
    }

    fn make_dir(&self, path: &Path, mode: u32) -> Result<()> {
        fs::create_dir_all(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        if let Some(u) = &self.os_user {
            nix::unistd::chown(path, Some(u.uid), Some(u.gid))?;
        }
        Ok(())
    }

    /// A command that runs as the cluster's OS user.
    fn as_pg(&self, program: impl AsRef<Path>) -> Command {
        match &self.os_user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program.as_ref());
                c
            }
            None => Command::new(program.as_ref()),
        }
    }

    fn as_pg_shell_prefix(&self) -> String {
        match &self.os_user {
            Some(u) => format!(
                "setpriv --reuid={} --regid={} --init-groups -- ",
                u.uid, u.gid
            ),
            None => String::new(),
        }
    }

    /// Stops the cluster and removes its directory once this test process has exited.
    fn spawn_reaper(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {prefix}'{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            prefix = self.as_pg_shell_prefix(),
            pg_ctl = self.bindir.join("pg_ctl").display(),
            data = self.data.display(),
            root = self.root.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("spawning the cluster reaper")?;
        Ok(())
    }

    /// Pristine initdb output, cached under the cargo target dir (initdb is the slow part).
    fn initdb(&self) -> Result<()> {
        let version = self
            .bindir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("pg")
            .to_string();
        let cache =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("initdb-cache-{version}"));
        if cache.join("PG_VERSION").exists() {
            run_checked(
                Command::new("cp")
                    .arg("-a")
                    .arg(cache.join("."))
                    .arg(&self.data),
                "cp -a initdb cache",
            )?;
            if let Some(u) = &self.os_user {
                run_checked(
                    Command::new("chown")
                        .arg("-R")
                        .arg(format!("{}:{}", u.uid, u.gid))
                        .arg(&self.data),
                    "chown data dir",
                )?;
            }
            return Ok(());
        }
        run_checked(
            self.as_pg(self.bindir.join("initdb"))
                .arg("-D")
                .arg(&self.data)
                .args([
                    "--no-sync",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ])
                .arg("--no-instructions"),
            "initdb",
        )?;
        // Publish the cache atomically: parallel tests may race to create it.
        let tmp = cache.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        if fs::create_dir_all(&tmp).is_ok()
            && Command::new("cp")
                .arg("-a")
                .arg(self.data.join("."))
                .arg(&tmp)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
            && fs::rename(&tmp, &cache).is_ok()
        {
            return Ok(());
        }
        let _ = fs::remove_dir_all(&tmp);
        Ok(())
    }

    fn write_hba(&self) -> Result<()> {
        let path = self.data.join("pg_hba.conf");
        fs::write(&path, HBA)?;
        if let Some(u) = &self.os_user {
            nix::unistd::chown(&path, Some(u.uid), Some(u.gid))?;
        }
        Ok(())
    }

    fn configure_and_start(&self) -> Result<()> {
        let conf = "include_if_exists = 'krbouncer-tests.conf'\n";
        let main_conf = self.data.join("postgresql.conf");
        let existing = fs::read_to_string(&main_conf)?;
        if !existing.contains("krbouncer-tests.conf") {
            fs::write(&main_conf, existing + "\n" + conf)?;
        }
        let extra = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{run}'\n\
             max_connections = 100\n\
             shared_buffers = 16MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             log_connections = on\n\
             log_disconnections = on\n\
             log_line_prefix = '%m [%p] %u@%d '\n\
             logging_collector = off\n\
             password_encryption = 'scram-sha-256'\n\
             # a backend notices a vanished client during long queries (pg_sleep)\n\
             client_connection_check_interval = '200ms'\n",
            port = self.port,
            run = self.run.display()
        );
        let extra_path = self.data.join("krbouncer-tests.conf");
        fs::write(&extra_path, extra)?;
        if let Some(u) = &self.os_user {
            nix::unistd::chown(&extra_path, Some(u.uid), Some(u.gid))?;
            nix::unistd::chown(&main_conf, Some(u.uid), Some(u.gid))?;
        }
        run_checked(
            self.as_pg(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
        )
        .map_err(|e| anyhow!("{e:#}\nserver log:\n{}", self.log()))?;
        Ok(())
    }

    /// Stops the server (fast mode) and starts it again on the same port.
    pub fn restart(&self) {
        let r = run_checked(
            self.as_pg(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-m", "fast", "restart"])
                .stdout(Stdio::null()),
            "pg_ctl restart",
        );
        if let Err(e) = r {
            panic!("{e:#}\nserver log:\n{}", self.log());
        }
    }

    /// Serves TLS with this certificate and key (`ssl = on`); restarts the server.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        self.install_tls_files(cert, key);
        self.psql_super("ALTER SYSTEM SET ssl = on");
        self.restart();
    }

    /// Swaps the TLS certificate and key of a running server (PostgreSQL reloads them on
    /// SIGHUP; new connections get the new ones).
    pub fn replace_tls(&self, cert: &Path, key: &Path) {
        self.install_tls_files(cert, key);
        self.psql_super("SELECT pg_reload_conf()");
    }

    fn install_tls_files(&self, cert: &Path, key: &Path) {
        for (src, name) in [(cert, "server.crt"), (key, "server.key")] {
            let dst = self.data.join(name);
            fs::copy(src, &dst).expect("copy the certificate into the data dir");
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).expect("chmod");
            if let Some(u) = &self.os_user {
                nix::unistd::chown(&dst, Some(u.uid), Some(u.gid)).expect("chown");
            }
        }
    }

    /// Starts a server stopped by [`PgCluster::stop`] again, on the same port.
    pub fn start(&self) {
        let r = run_checked(
            self.as_pg(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
        );
        if let Err(e) = r {
            panic!("{e:#}\nserver log:\n{}", self.log());
        }
    }

    /// Stops the server (fast mode) without removing anything.
    pub fn stop(&self) {
        let _ = self
            .as_pg(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.run
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn log_path(&self) -> PathBuf {
        self.run.join("postgres.log")
    }

    /// The server log so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `host=127.0.0.1 port=<port> dbname=<db>`: a `[databases]` connection string.
    pub fn connstr(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} dbname={dbname}", self.port)
    }

    /// tokio-postgres conninfo for a direct TCP login to this cluster.
    pub fn conninfo(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={dbname} sslmode=disable",
            self.port
        )
    }

    /// Feeds `sql` to psql on stdin, so several statements (even CREATE DATABASE) run one by one.
    fn psql_super_in(&self, db: &str, sql: &str) -> Result<String> {
        let mut child = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.run)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning psql")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "psql failed ({}) on:\n{sql}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Runs SQL as the superuser over the unix socket in database `postgres`; `-At` output.
    pub fn psql_super(&self, sql: &str) -> String {
        self.psql_super_db("postgres", sql)
    }

    /// Like [`psql_super`](Self::psql_super) in another database.
    pub fn psql_super_db(&self, db: &str, sql: &str) -> String {
        match self.psql_super_in(db, sql) {
            Ok(s) => s,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// The role's stored secret from pg_authid (`SCRAM-SHA-256$...` or `md5...`).
    pub fn stored_secret(&self, role: &str) -> String {
        self.psql_super(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
            role.replace('\'', "''")
        ))
    }

    /// PIDs of client backends logged in as `usename`.
    pub fn backend_pids(&self, usename: &str) -> Vec<i32> {
        self.psql_super(&format!(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND usename = '{}' ORDER BY pid",
            usename.replace('\'', "''")
        ))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
    }

    /// Whether a backend with this PID is still alive.
    pub fn backend_alive(&self, pid: i32) -> bool {
        self.psql_super(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )) == "1"
    }

    /// `state` of the backend (`active`, `idle`, ...), or None if it is gone.
    pub fn backend_state(&self, pid: i32) -> Option<String> {
        let s = self.psql_super(&format!(
            "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = {pid}"
        ));
        (!s.is_empty()).then_some(s)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_pg(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.root);
    }
}
