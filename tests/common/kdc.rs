//! Test fixture: a throw-away MIT KDC + Kerberized, TLS-enabled PostgreSQL
//! (`tests/fixtures/krblab.sh`), torn down on Drop and, if the test process dies first, by a
//! detached reaper process.
//!
//! MIT krb5 reads `KRB5_CONFIG`, `KRB5CCNAME`, `KRB5_CLIENT_KTNAME` from the process
//! environment, and tests must never `set_var` (multi-threaded harness). So pass `lab.env()`
//! to child processes (krbouncer, psql), or re-run one test of the current binary in a child
//! with `run_child_test` when the test itself calls GSSAPI in-process.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The lab script shipped with the repo.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/krblab.sh")
}

/// Options for `KrbLab::start`.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Initial pg_hba variant: "mixed" (default), "gss", "hostssl", "gssenc" (see the script).
    pub hba: Option<String>,
    /// Max ticket lifetime in seconds for the client principal, krbtgt and the services.
    pub ticket_lifetime_secs: Option<u32>,
    /// Client principal name without realm (default "proxyuser").
    pub user_principal: Option<String>,
}

/// A running lab. Dropping it stops the KDC and PostgreSQL and removes the directory.
pub struct KrbLab {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
    reaper: Option<Child>,
}

impl KrbLab {
    /// True when the lab's programs are installed (krb5kdc, kadmin.local, initdb, openssl).
    pub fn available() -> bool {
        let have = |p: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {p} >/dev/null || test -x {p}")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        have("krb5kdc")
            && have("kadmin.local")
            && have("openssl")
            && {
                Command::new("sh")
                .args(["-c", "ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
            }
    }

    /// Start a lab; panics with the script's output when it fails (test fixture).
    pub fn start(opts: LabOptions) -> KrbLab {
        assert!(
            Self::available(),
            "krblab needs krb5-kdc, krb5-admin-server, postgresql and openssl (see deploy/demo.sh for the apt list)"
        );
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("krblab-initdb-cache");
        let mut cmd = Command::new("bash");
        cmd.arg(script_path())
            .arg("up")
            .env("PGLAB_INITDB_CACHE", &cache);
        for k in [
            "KRB5CCNAME",
            "KRB5_CLIENT_KTNAME",
            "KRB5_KTNAME",
            "KRB5_CONFIG",
            "KRB5_TRACE",
        ] {
            cmd.env_remove(k);
        }
        // a lab's own variables (e.g. in a child test) must not leak into a new lab's tunables
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGLAB_")) {
            cmd.env_remove(k);
        }
        if let Some(h) = &opts.hba {
            cmd.env("PGLAB_HBA", h);
        }
        if let Some(u) = &opts.user_principal {
            cmd.env("PGLAB_USER_PRINC", u);
        }
        let out = cmd.output().expect("run krblab.sh up");
        assert!(
            out.status.success(),
            "krblab.sh up failed:\n{}",
            output_text(&out)
        );
        let env_file = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let text = std::fs::read_to_string(&env_file).expect("read lab env.sh");
        let vars = parse_env_sh(&text);
        let dir = PathBuf::from(vars.get("PGLAB_DIR").expect("env.sh has PGLAB_DIR"));
        let lab = KrbLab {
            reaper: spawn_reaper(&dir),
            dir,
            vars,
        };
        if let Some(secs) = opts.ticket_lifetime_secs {
            lab.set_ticket_lifetime(secs);
        }
        lab
    }

    /// Environment for a process that talks to this lab (KRB5_* and PGLAB_*).
    pub fn env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One variable from env.sh (panics if missing: fixture bug).
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("lab env has no {key}"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn pg_port(&self) -> u16 {
        self.var("PGLAB_PG_PORT").parse().expect("numeric port")
    }
    pub fn kdc_port(&self) -> u16 {
        self.var("PGLAB_KDC_PORT").parse().expect("numeric port")
    }
    /// Full service principal, e.g. `postgres/localhost@TEST.LOCAL`.
    pub fn spn(&self) -> &str {
        self.var("PGLAB_SPN")
    }
    /// Client principal with realm, e.g. `proxyuser@TEST.LOCAL` (also a role name).
    pub fn user_principal(&self) -> &str {
        self.var("PGLAB_USER_PRINC")
    }
    pub fn ca_file(&self) -> &str {
        self.var("PGLAB_TLS_CA")
    }
    pub fn socket_dir(&self) -> &str {
        self.var("PGLAB_PG_SOCKDIR")
    }

    pub fn pause_kdc(&self) {
        lab_ctl(&self.dir, &["kdc-pause"]);
    }
    pub fn resume_kdc(&self) {
        lab_ctl(&self.dir, &["kdc-resume"]);
    }
    pub fn stop_kdc(&self) {
        lab_ctl(&self.dir, &["kdc-stop"]);
    }
    pub fn start_kdc(&self) {
        lab_ctl(&self.dir, &["kdc-start"]);
    }
    /// Cap ticket lifetimes (client, krbtgt, services) and drop the lab's FILE ccache.
    pub fn set_ticket_lifetime(&self, secs: u32) {
        lab_ctl(&self.dir, &["lifetime", &secs.to_string()]);
    }
    /// Switch pg_hba.conf to another variant and reload.
    pub fn set_hba(&self, variant: &str) {
        lab_ctl(&self.dir, &["hba", variant]);
    }

    /// Runs one `kadmin.local` query against this lab's KDC database; returns its output.
    pub fn kadmin(&self, query: &str) -> String {
        let realm = self
            .user_principal()
            .rsplit_once('@')
            .map(|(_, r)| r.to_string())
            .expect("principal has a realm");
        let out = Command::new("kadmin.local")
            .args(["-r", &realm, "-q", query])
            .env("KRB5_CONFIG", self.var("KRB5_CONFIG"))
            .env("KRB5_KDC_PROFILE", self.dir.join("kdc/kdc.conf"))
            .output()
            .expect("run kadmin.local");
        let text = output_text(&out);
        assert!(
            out.status.success() && !text.to_lowercase().contains("error"),
            "kadmin.local {query:?}:\n{text}"
        );
        text
    }

    /// Gives the client principal a new random key (new kvno) and replaces its keytab on disk
    /// with one holding only the new key, the way an operator rotates it (`ktadd` to a new
    /// file, then rename over the old one). Returns a copy of the old keytab.
    pub fn rotate_client_keytab(&self) -> PathBuf {
        let keytab = PathBuf::from(self.var("PGLAB_USER_KEYTAB"));
        let old = self.dir.join("client-old.keytab");
        let new = self.dir.join("client-new.keytab");
        std::fs::copy(&keytab, &old).expect("keep the old keytab");
        let _ = std::fs::remove_file(&new);
        self.kadmin(&format!(
            "ktadd -k {} {}",
            new.display(),
            self.user_principal()
        ));
        std::fs::rename(&new, &keytab).expect("replace the keytab");
        old
    }

    /// Whether `kinit` with this keytab (into a throwaway memory ccache) gets a ticket.
    pub fn keytab_works(&self, keytab: &Path) -> bool {
        Command::new("kinit")
            .arg("-k")
            .arg("-t")
            .arg(keytab)
            .arg(self.user_principal())
            .env("KRB5_CONFIG", self.var("KRB5_CONFIG"))
            .env("KRB5CCNAME", "MEMORY:keytab-check")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Run SQL as the superuser over the lab's unix socket; returns psql's unaligned output.
    pub fn psql_admin(&self, sql: &str) -> String {
        let psql = Path::new(self.var("PGLAB_PG_BINDIR")).join("psql");
        let mut cmd = Command::new(psql);
        cmd.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.socket_dir(),
            "-p",
        ])
        .arg(self.pg_port().to_string())
        .args(["-U", "postgres", "-d", "postgres", "-c", sql]);
        let out = cmd.output().expect("run psql");
        assert!(
            out.status.success(),
            "psql failed for {sql:?}:\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stop everything now (also done on Drop).
    pub fn down(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let _ = Command::new("bash")
            .arg(script_path())
            .arg("down")
            .arg(&self.dir)
            .output();
        if let Some(mut r) = self.reaper.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        self.dir = PathBuf::new();
    }
}

impl Drop for KrbLab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Run a lab subcommand for the lab in `dir` (usable from a child test via `PGLAB_DIR`).
pub fn lab_ctl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("bash");
    cmd.arg(script_path())
        .arg(args[0])
        .arg(dir)
        .args(&args[1..]);
    let out = cmd.output().expect("run krblab.sh");
    assert!(
        out.status.success(),
        "krblab.sh {args:?} failed:\n{}",
        output_text(&out)
    );
}

/// Parse `export K='V'` / `export K=V` lines (the format krblab.sh writes).
pub fn parse_env_sh(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(v);
        vars.insert(k.trim().to_string(), v.to_string());
    }
    vars
}

/// A detached watcher: waits for this test process to exit, then runs `down` on the lab, so
/// a panicking or killed test still cleans up. Killed by `down()` on the normal path.
fn spawn_reaper(dir: &Path) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .args([
            "-c",
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; exec bash \"$2\" down \"$3\"",
            "krblab-reaper",
        ])
        .arg(std::process::id().to_string())
        .arg(script_path())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

const CHILD_MARKER: &str = "KRBLAB_CHILD_TEST";

/// True inside a child started by `run_child_test(name, ..)` for this very test.
pub fn in_child(name: &str) -> bool {
    std::env::var(CHILD_MARKER).is_ok_and(|v| v == name)
}

/// Re-run test `name` of the current test binary in a child process with `env` added and
/// `remove` taken away, so that in-process GSSAPI sees the lab's KRB5_* variables.
/// Returns the child's output; the caller asserts on `status`.
pub fn run_child_test(name: &str, env: &[(String, String)], remove: &[&str]) -> Output {
    let exe = std::env::current_exe().expect("current test binary");
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, name);
    for k in [
        "KRB5CCNAME",
        "KRB5_CLIENT_KTNAME",
        "KRB5_KTNAME",
        "KRB5_CONFIG",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for k in remove {
        cmd.env_remove(k);
    }
    cmd.output().expect("spawn child test")
}

pub fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_bare_exports() {
        let v = parse_env_sh("# c\nexport A='x y'\nexport B=42\nnot an export\n");
        assert_eq!(v.get("A").map(String::as_str), Some("x y"));
        assert_eq!(v.get("B").map(String::as_str), Some("42"));
        assert_eq!(v.len(), 2);
    }
}
