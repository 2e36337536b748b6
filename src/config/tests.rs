//! End-to-end tests of `Config::load_with_base`: whole files in a temp dir, errors with
//! file:line, includes, the `*` fallback, forced users, resolution precedence and reload.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::auth::secret::Secret;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }
    fn write(&self, name: &str, text: &str) -> &Dir {
        std::fs::write(self.0.path().join(name), text).expect("write");
        self
    }
    fn load(&self, name: &str) -> Result<Config, ConfigError> {
        Config::load_with_base(Path::new(name), self.0.path())
    }
}

/// The Apache Airflow chart's `pgbouncer_config` (reference §6), as rendered with TLS values.
const AIRFLOW_INI: &str = "\
[databases]
airflow-metadata = host=airflow-postgresql.airflow dbname=postgres port=5432 pool_size=10
airflow-result-backend = host=airflow-postgresql.airflow dbname=postgres port=5432 pool_size=5

[pgbouncer]
pool_mode = transaction
listen_port = 6543
listen_addr = *
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/users.txt
stats_users = postgres
ignore_startup_parameters = extra_float_digits
max_client_conn = 100
verbose = 0
log_disconnections = 0
log_connections = 0

server_tls_sslmode = prefer
server_tls_ciphers = normal
";

#[test]
fn airflow_chart_config_loads() {
    let dir = Dir::new();
    dir.write("pgbouncer.ini", AIRFLOW_INI);
    let c = dir.load("pgbouncer.ini").expect("loads");
    assert_eq!(c.settings.pool_mode, PoolMode::Transaction);
    assert_eq!(c.settings.listen_port, 6543);
    assert_eq!(c.settings.listen_addrs(), vec!["*"]);
    assert_eq!(c.settings.auth_type, AuthType::ScramSha256);
    assert_eq!(
        c.settings.ignored_startup_parameters(),
        vec!["extra_float_digits"]
    );
    assert_eq!(c.settings.stats_user_list(), vec!["postgres"]);
    assert!(!c.settings.log_connections);
    assert_eq!(c.settings.server_tls_ciphers, "normal");
    let meta = c.database_for("airflow-metadata").expect("db");
    assert_eq!(
        (meta.dbname.as_str(), meta.port, meta.pool_size),
        ("postgres", 5432, Some(10))
    );
    assert_eq!(c.pool_size_for(&meta, "airflow"), 10);
    assert!(c.database_for("other").is_none());
    // the auth_file does not exist here: logged, not fatal
    assert!(c.auth_file.users.is_empty());
    assert!(c.auth_file.warnings[0].starts_with("could not open auth_file"));
    assert_eq!(c.settings.conffile.as_deref(), Some("pgbouncer.ini"));
}

#[test]
fn unknown_parameter_names_file_and_line() {
    let dir = Dir::new();
    dir.write(
        "pgbouncer.ini",
        "[pgbouncer]\nlisten_port = 1\n\nfoo_bar = 1\n",
    );
    let e = dir.load("pgbouncer.ini").expect_err("unknown key");
    assert_eq!(e.to_string(), "pgbouncer.ini:4: unknown parameter: foo_bar");
    dir.write("bad.ini", "[pgbouncer]\n[databases]\nd = host=x hots=y\n");
    assert_eq!(
        dir.load("bad.ini").expect_err("bad").to_string(),
        "bad.ini:3: unrecognized connection parameter: hots"
    );
    dir.write("val.ini", "[pgbouncer]\nmax_client_conn = lots\n");
    let e = dir.load("val.ini").expect_err("bad value").to_string();
    assert!(
        e.starts_with("val.ini:2: invalid value \"lots\" for parameter max_client_conn"),
        "{e}"
    );
    dir.write("users.ini", "[pgbouncer]\n[users]\nbob = pool_sise=3\n");
    assert_eq!(
        dir.load("users.ini").expect_err("bad").to_string(),
        "users.ini:3: unrecognized user parameter: pool_sise"
    );
    dir.write("nomain.ini", "[databases]\nd = host=x\n");
    assert_eq!(
        dir.load("nomain.ini").expect_err("no main").to_string(),
        "nomain.ini: main section missing from config file"
    );
    dir.write(
        "reserved.ini",
        "[pgbouncer]\n[databases]\npgbouncer = host=x\n",
    );
    assert_eq!(
        dir.load("reserved.ini").expect_err("reserved").to_string(),
        "reserved.ini:3: database name \"pgbouncer\" is reserved"
    );
}

#[test]
fn include_resolves_against_cwd_and_errors_point_into_the_included_file() {
    let dir = Dir::new();
    std::fs::create_dir(dir.0.path().join("conf.d")).expect("mkdir");
    dir.write(
        "conf.d/main.ini",
        "[pgbouncer]\n%include conf.d/extra.ini\n[databases]\n%include conf.d/dbs.ini\n",
    )
    .write("conf.d/extra.ini", "max_client_conn = 7\n")
    .write("conf.d/dbs.ini", "app = host=h\n");
    let c = dir.load("conf.d/main.ini").expect("loads");
    assert_eq!(c.settings.max_client_conn, 7);
    assert!(c.databases.contains_key("app"));
    dir.write("conf.d/extra.ini", "\nbogus = 1\n");
    assert_eq!(
        dir.load("conf.d/main.ini").expect_err("bad").to_string(),
        "conf.d/extra.ini:2: unknown parameter: bogus"
    );
}

#[test]
fn quoted_keys_fallback_forced_user_and_auth_file() {
    let dir = Dir::new();
    dir.write(
        "p.ini",
        "[databases]\n'my db' = host=h dbname='real db'\nforced = host=h user=svc\nwithpw = host=h user=svc password=secret\n\
         * = host=fallback port=6000\n[pgbouncer]\nauth_file = users.txt\n[users]\nsvc = pool_mode=session\n\
         [peers]\n1 = host=p1\n",
    )
    .write("users.txt", "\"svc\" \"svcpw\"\n\"alice\" \"md545f2603610af569b6155c45067268c6b\"\n");
    let c = dir.load("p.ini").expect("loads");
    assert_eq!(c.database_for("my db").expect("db").dbname, "real db");
    let auto = c.database_for("anything").expect("fallback");
    assert_eq!(
        (auto.dbname.as_str(), auto.host.as_deref(), auto.port),
        ("anything", Some("fallback"), 6000)
    );
    assert!(c.database_for("pgbouncer").is_none());
    let forced = c.database_for("forced").expect("db");
    assert_eq!(
        c.forced_user_secret(&forced),
        Some(Secret::Plain("svcpw".into()))
    );
    let withpw = c.database_for("withpw").expect("db");
    assert_eq!(
        c.forced_user_secret(&withpw),
        Some(Secret::Plain("secret".into()))
    );
    assert_eq!(c.forced_user_secret(&auto), None);
    assert!(matches!(c.secret_for("alice"), Some(Secret::Md5(_))));
    assert_eq!(c.peers[&1].host, "p1");
    assert_eq!(c.users["svc"].pool_mode, Some(PoolMode::Session));
}

#[test]
fn auth_type_any_does_not_read_the_auth_file() {
    let dir = Dir::new();
    dir.write(
        "p.ini",
        "[pgbouncer]\nauth_type = any\nauth_file = users.txt\n[databases]\nd = host=h\n",
    )
    .write("users.txt", "\"a\" \"b\"\n");
    let c = dir.load("p.ini").expect("loads");
    assert!(c.auth_file.users.is_empty());
    let warnings = c.validate().expect("valid");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("forced user= on database \"d\"")),
        "{warnings:?}"
    );
}

#[test]
fn a_second_pgbouncer_section_resets_to_defaults() {
    let dir = Dir::new();
    dir.write("p.ini", "[pgbouncer]\nmax_client_conn = 5\nlisten_port = 7000\n[databases]\n[pgbouncer]\nlisten_port = 7001\n");
    let c = dir.load("p.ini").expect("loads");
    assert_eq!(c.settings.max_client_conn, 100);
    assert_eq!(c.settings.listen_port, 7001);
}

#[test]
fn precedence_user_over_database_over_global() {
    let dir = Dir::new();
    dir.write(
        "p.ini",
        "[pgbouncer]\npool_mode = session\ndefault_pool_size = 20\nquery_wait_timeout = 30\n\
         server_gssauth_negotiate = allow\nserver_krb_spn = postgres/global@R\n\
         [databases]\nd = host=h pool_mode=transaction pool_size=8 server_lifetime=60 query_wait_timeout=10 \
         server_krb_spn=postgres/d@R server_gssencmode=require\nplain = host=h\n\
         [users]\nu = pool_mode=statement pool_size=3 query_wait_timeout=0 max_user_connections=4 query_timeout=9\n",
    );
    let c = dir.load("p.ini").expect("loads");
    let d = c.database_for("d").expect("db");
    let plain = c.database_for("plain").expect("db");
    assert_eq!(c.pool_mode_for(&d, "u"), PoolMode::Statement);
    assert_eq!(c.pool_mode_for(&d, "other"), PoolMode::Transaction);
    assert_eq!(c.pool_mode_for(&plain, "other"), PoolMode::Session);
    assert_eq!(
        (
            c.pool_size_for(&d, "u"),
            c.pool_size_for(&d, "x"),
            c.pool_size_for(&plain, "x")
        ),
        (3, 8, 20)
    );
    assert_eq!(c.query_wait_timeout_for(&d, "u"), Duration::ZERO);
    assert_eq!(c.query_wait_timeout_for(&d, "x"), Duration::from_secs(10));
    assert_eq!(
        c.query_wait_timeout_for(&plain, "x"),
        Duration::from_secs(30)
    );
    assert_eq!(c.server_lifetime_for(&d), Duration::from_secs(60));
    assert_eq!(c.server_lifetime_for(&plain), Duration::from_secs(3600));
    assert_eq!(
        (
            c.max_user_connections_for("u"),
            c.max_user_connections_for("x")
        ),
        (4, 0)
    );
    assert_eq!(c.query_timeout_for("u"), Duration::from_secs(9));
    assert_eq!(c.gss_negotiate_for(&plain), GssAuthNegotiate::Allow);
    assert_eq!(c.gssencmode_for(&d), GssEncMode::Require);
    assert_eq!(c.gssencmode_for(&plain), GssEncMode::Disable);
    assert_eq!(c.krb_spn_for(&d), "postgres/d@R");
    assert_eq!(c.krb_spn_for(&plain), "postgres/global@R");
    assert_eq!(c.krb_srvname_for(&plain), "postgres");
    assert_eq!(c.auth_query_for(&plain), settings::DEFAULT_AUTH_QUERY);
}

#[test]
fn reload_keeps_restart_only_settings_and_rereads_changed_auth_file() {
    let dir = Dir::new();
    dir.write(
        "p.ini",
        "[pgbouncer]\nlisten_port = 7000\nmax_client_conn = 5\nauth_file = u.txt\n",
    )
    .write("u.txt", "\"a\" \"1\"\n");
    let mut running = dir.load("p.ini").expect("loads");
    running.settings.verbose = 2; // as if started with -vv
    dir.write(
        "p.ini",
        "[pgbouncer]\nlisten_port = 8000\nmax_client_conn = 9\nauth_file = u.txt\n",
    );
    let next = running.reload().expect("reloads");
    assert_eq!(next.settings.listen_port, 7000);
    assert_eq!(next.settings.max_client_conn, 9);
    assert_eq!(next.settings.verbose, 2);
    assert_eq!(next.auth_file.users.len(), 1);
    dir.write("u.txt", "\"a\" \"1\"\n\"b\" \"2\"\n");
    assert_eq!(next.reload().expect("reloads").auth_file.users.len(), 2);
    dir.write("p.ini", "[pgbouncer]\nnope = 1\n");
    assert!(next.reload().is_err());
}

#[test]
fn validate_rejects_what_cannot_start() {
    let dir = Dir::new();
    dir.write("tls.ini", "[pgbouncer]\nclient_tls_sslmode = require\n");
    let e = dir
        .load("tls.ini")
        .expect("loads")
        .validate()
        .expect_err("no key file")
        .to_string();
    assert!(e.contains("client_tls_key_file is not set"), "{e}");
    dir.write(
        "m.ini",
        "[pgbouncer]\nmetrics_addr = nonsense\nauth_file = x\n",
    );
    assert!(dir.load("m.ini").expect("loads").validate().is_err());
    dir.write(
        "ok.ini",
        "[pgbouncer]\nmetrics_addr = 0.0.0.0:9127\ndisable_pqexec = 1\nauth_file = u\n",
    );
    let warnings = dir
        .load("ok.ini")
        .expect("loads")
        .validate()
        .expect("valid");
    assert!(
        warnings.iter().any(|w| w.contains("disable_pqexec")),
        "{warnings:?}"
    );
}
