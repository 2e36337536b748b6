//! `[databases]` entries: the `key=value ...` connection-string tokenizer shared with
//! `[users]`/`[peers]` (PgBouncer's `cstr_get_pair`: space-separated, values optionally
//! single-quoted with `''`), and `DatabaseDef` (`parse_database` in `src/loader.c`).

use std::time::Duration;

use super::enums::{GssAuthNegotiate, GssEncMode, LoadBalanceHosts, Lookup, PoolMode};
use super::error::ConfigErrorKind;
use super::values::atoi;

/// PgBouncer's `MAX_DBNAME` is 64 including the terminating NUL.
pub const MAX_DBNAME: usize = 64;

/// The name of the admin console database.
pub(crate) const ADMIN_DB: &str = "pgbouncer";

/// Splits a connection string into `(key, value)` pairs exactly as PgBouncer does: only spaces
/// separate (a tab is part of a value), empty values are errors, and a quoted value ends at the
/// first single `'` (the character right after it is consumed as a separator).
pub fn split_pairs(connstr: &str) -> Option<Vec<(String, String)>> {
    let b = connstr.as_bytes();
    let skip_ws = |mut p: usize| {
        while p < b.len() && b[p] == b' ' {
            p += 1;
        }
        p
    };
    let mut pairs = Vec::new();
    let mut p = skip_ws(0);
    while p < b.len() {
        let key_start = p;
        while p < b.len() && b[p] != b'=' && b[p] != b' ' {
            p += 1;
        }
        let key_end = p;
        p = skip_ws(p);
        if p >= b.len() || b[p] != b'=' || key_end == key_start {
            return None;
        }
        p = skip_ws(p + 1);
        let mut value = Vec::new();
        if p < b.len() && b[p] == b'\'' {
            p += 1;
            loop {
                let &c = b.get(p)?;
                if c == b'\'' {
                    if b.get(p + 1) == Some(&b'\'') {
                        p += 1;
                    } else {
                        break;
                    }
                }
                value.push(b[p]);
                p += 1;
            }
            p += 1; // the closing quote
        } else {
            while p < b.len() && b[p] != b' ' {
                value.push(b[p]);
                p += 1;
            }
        }
        if p < b.len() {
            p += 1; // C cuts the value here, eating one character
        }
        if value.is_empty() {
            return None;
        }
        let key = String::from_utf8_lossy(&b[key_start..key_end]).into_owned();
        pairs.push((key, String::from_utf8_lossy(&value).into_owned()));
        p = skip_ws(p);
    }
    Some(pairs)
}

/// One `[databases]` entry. `None` fields fall back to the global setting. Debug output
/// redacts the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DatabaseDef {
    /// Client-side name (the ini key).
    pub name: String,
    /// Server-side database name; defaults to `name`.
    pub dbname: String,
    /// Whether `dbname=` was given (matters for the `*` fallback).
    pub dbname_explicit: bool,
    /// Host, `/unix/dir`, `@abstract` or a comma list; `None` = `unix_socket_dir`.
    pub host: Option<String>,
    pub port: u16,
    /// Forced user: one pool per database, server login as this user.
    pub user: Option<String>,
    /// Password for the forced user (else auth_file's).
    pub password: Option<String>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
    pub pool_size: Option<i32>,
    pub min_pool_size: Option<i32>,
    pub reserve_pool_size: Option<i32>,
    pub pool_mode: Option<PoolMode>,
    pub max_db_connections: Option<i32>,
    pub max_db_client_connections: Option<i32>,
    /// Integer seconds; 0 / unset = global `server_lifetime`.
    pub server_lifetime: Option<Duration>,
    /// Integer seconds; -1 / unset = user or global; 0 disables.
    pub query_wait_timeout: Option<Duration>,
    pub load_balance_hosts: LoadBalanceHosts,
    pub connect_query: Option<String>,
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    pub application_name: Option<String>,
    /// krbouncer: per-db overrides of the GSSAPI settings.
    pub server_krb_spn: Option<String>,
    pub server_krb_srvname: Option<String>,
    pub server_gssencmode: Option<GssEncMode>,
    pub server_gssauth_negotiate: Option<GssAuthNegotiate>,
}

impl std::fmt::Debug for DatabaseDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseDef")
            .field("name", &self.name)
            .field("dbname", &self.dbname)
            .field("dbname_explicit", &self.dbname_explicit)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_user", &self.auth_user)
            .field("auth_query", &self.auth_query)
            .field("auth_dbname", &self.auth_dbname)
            .field("pool_size", &self.pool_size)
            .field("min_pool_size", &self.min_pool_size)
            .field("reserve_pool_size", &self.reserve_pool_size)
            .field("pool_mode", &self.pool_mode)
            .field("max_db_connections", &self.max_db_connections)
            .field("max_db_client_connections", &self.max_db_client_connections)
            .field("server_lifetime", &self.server_lifetime)
            .field("query_wait_timeout", &self.query_wait_timeout)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("connect_query", &self.connect_query)
            .field("client_encoding", &self.client_encoding)
            .field("datestyle", &self.datestyle)
            .field("timezone", &self.timezone)
            .field("application_name", &self.application_name)
            .field("server_krb_spn", &self.server_krb_spn)
            .field("server_krb_srvname", &self.server_krb_srvname)
            .field("server_gssencmode", &self.server_gssencmode)
            .field("server_gssauth_negotiate", &self.server_gssauth_negotiate)
            .finish()
    }
}

/// Negative numbers mean "not set" in PgBouncer's per-db/per-user integers.
fn opt_count(value: &str) -> Option<i32> {
    let n = atoi(value);
    if n < 0 {
        None
    } else {
        Some(n.min(i32::MAX as i64) as i32)
    }
}

/// Integer seconds, `atoi(val) * USEC` in PgBouncer; negative = not set.
pub(crate) fn opt_secs(value: &str) -> Option<Duration> {
    let n = atoi(value);
    if n < 0 {
        None
    } else {
        Some(Duration::from_secs(n as u64))
    }
}

fn lookup<T: Lookup>(key: &str, value: &str) -> Result<T, ConfigErrorKind> {
    T::parse(value).ok_or_else(|| ConfigErrorKind::InvalidConnValue {
        key: key.to_string(),
        value: value.to_string(),
    })
}

pub(crate) fn parse_pool_mode(value: &str) -> Result<PoolMode, ConfigErrorKind> {
    PoolMode::parse(value).ok_or_else(|| ConfigErrorKind::InvalidPoolMode(value.to_string()))
}

pub(crate) fn parse_port(value: &str) -> Result<u16, ConfigErrorKind> {
    match u16::try_from(atoi(value)) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigErrorKind::InvalidPort(value.to_string())),
    }
}

impl DatabaseDef {
    /// Parses `name = connstr`. `name` must not be the reserved admin database; `*` is parsed
    /// like any other (the caller stores it as the fallback).
    pub fn parse(name: &str, connstr: &str) -> Result<DatabaseDef, ConfigErrorKind> {
        if name == ADMIN_DB {
            return Err(ConfigErrorKind::ReservedDatabase(name.to_string()));
        }
        if name.len() >= MAX_DBNAME {
            return Err(ConfigErrorKind::DatabaseNameTooLong(name.to_string()));
        }
        let pairs = split_pairs(connstr).ok_or(ConfigErrorKind::ConnstrSyntax)?;
        let mut db = DatabaseDef {
            name: name.to_string(),
            dbname: name.to_string(),
            port: 5432,
            ..Default::default()
        };
        for (key, val) in pairs {
            let v = Some(val.clone());
            match key.as_str() {
                "dbname" => {
                    db.dbname = val;
                    db.dbname_explicit = true;
                }
                "host" => db.host = v,
                "port" => db.port = parse_port(&val)?,
                "user" => db.user = v,
                "password" => db.password = v,
                "auth_user" => db.auth_user = v,
                "auth_query" => db.auth_query = v,
                // `auth_dbname=pgbouncer` is accepted here and refused at login, as PgBouncer
                "auth_dbname" => db.auth_dbname = v,
                "client_encoding" => db.client_encoding = v,
                "datestyle" => db.datestyle = v,
                "timezone" => db.timezone = v,
                "application_name" => db.application_name = v,
                "connect_query" => db.connect_query = v,
                "pool_size" => db.pool_size = opt_count(&val),
                "min_pool_size" => db.min_pool_size = opt_count(&val),
                "reserve_pool" | "reserve_pool_size" => db.reserve_pool_size = opt_count(&val),
                "max_db_connections" => db.max_db_connections = opt_count(&val),
                "max_db_client_connections" => db.max_db_client_connections = opt_count(&val),
                "server_lifetime" => db.server_lifetime = opt_secs(&val).filter(|d| !d.is_zero()),
                "query_wait_timeout" => db.query_wait_timeout = opt_secs(&val),
                "load_balance_hosts" => db.load_balance_hosts = lookup(&key, &val)?,
                "pool_mode" => db.pool_mode = Some(parse_pool_mode(&val)?),
                "server_krb_spn" => db.server_krb_spn = v,
                "server_krb_srvname" => db.server_krb_srvname = v,
                "server_gssencmode" => db.server_gssencmode = Some(lookup(&key, &val)?),
                "server_gssauth_negotiate" => {
                    db.server_gssauth_negotiate = Some(lookup(&key, &val)?)
                }
                _ => return Err(ConfigErrorKind::UnknownConnParam(key)),
            }
        }
        Ok(db)
    }

    /// The definition an auto-database (`*` fallback) gets for a client-requested `name`:
    /// PgBouncer re-parses the `*` connection string under that name, so `dbname` defaults
    /// to `name` unless the `*` entry set it.
    pub(crate) fn instantiate_fallback(&self, name: &str) -> DatabaseDef {
        let mut db = self.clone();
        db.name = name.to_string();
        if !db.dbname_explicit {
            db.dbname = name.to_string();
        }
        db
    }

    /// Whether a reload changing `self` into `new` must close this database's server
    /// connections at release ("database configuration changed"): PgBouncer's dirty rule
    /// (dbname, host, port, forced user, connect_query, auth_dbname, auth_query,
    /// load_balance_hosts) plus krbouncer's GSSAPI keys.
    pub fn needs_reconnect(&self, new: &DatabaseDef) -> bool {
        self.dbname != new.dbname
            || self.host != new.host
            || self.port != new.port
            || self.user != new.user
            || self.connect_query != new.connect_query
            || self.auth_dbname != new.auth_dbname
            || self.auth_query != new.auth_query
            || self.load_balance_hosts != new.load_balance_hosts
            || self.server_krb_spn != new.server_krb_spn
            || self.server_krb_srvname != new.server_krb_srvname
            || self.server_gssencmode != new.server_gssencmode
            || self.server_gssauth_negotiate != new.server_gssauth_negotiate
    }

    /// The host list (`host=a,b,c`), empty when connecting over the unix socket dir.
    pub fn hosts(&self) -> Vec<&str> {
        self.host
            .as_deref()
            .map(|h| {
                h.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        split_pairs(s).expect("parses")
    }

    #[test]
    fn tokenizer_quoting_and_spaces() {
        assert_eq!(
            pairs("host=a  port=5"),
            vec![("host".into(), "a".into()), ("port".into(), "5".into())]
        );
        assert_eq!(pairs(" a = 1 "), vec![("a".into(), "1".into())]);
        assert_eq!(
            pairs("q='it''s a x' b=2"),
            vec![("q".into(), "it's a x".into()), ("b".into(), "2".into())]
        );
        assert_eq!(pairs("h=a\tport=5"), vec![("h".into(), "a\tport=5".into())]);
        assert!(pairs("").is_empty());
        assert_eq!(split_pairs("host="), None);
        assert_eq!(split_pairs("host=''"), None);
        assert_eq!(split_pairs("host='open"), None);
        assert_eq!(split_pairs("=x"), None);
        assert_eq!(split_pairs("host"), None);
        // the character right after a closing quote is eaten, as in C
        assert_eq!(split_pairs("a='x'b=1"), None);
    }

    #[test]
    fn database_fields_and_defaults() {
        let db = DatabaseDef::parse(
            "app",
            "host=db1,db2 port=6000 user=svc password='p w' pool_size=5 reserve_pool=2 \
             pool_mode=transaction server_lifetime=30 connect_query='SELECT 1' \
             server_krb_spn=postgres/db1@EX.COM server_gssauth_negotiate=allow load_balance_hosts=disable",
        )
        .expect("parses");
        assert_eq!(db.dbname, "app");
        assert!(!db.dbname_explicit);
        assert_eq!(db.hosts(), vec!["db1", "db2"]);
        assert_eq!(db.port, 6000);
        assert_eq!(db.user.as_deref(), Some("svc"));
        assert_eq!(db.password.as_deref(), Some("p w"));
        assert!(
            !format!("{db:?}").contains("p w"),
            "Debug must redact the password"
        );
        assert_eq!(db.pool_size, Some(5));
        assert_eq!(db.reserve_pool_size, Some(2));
        assert_eq!(db.pool_mode, Some(PoolMode::Transaction));
        assert_eq!(db.server_lifetime, Some(Duration::from_secs(30)));
        assert_eq!(db.connect_query.as_deref(), Some("SELECT 1"));
        assert_eq!(db.server_krb_spn.as_deref(), Some("postgres/db1@EX.COM"));
        assert_eq!(db.server_gssauth_negotiate, Some(GssAuthNegotiate::Allow));
        assert_eq!(db.load_balance_hosts, LoadBalanceHosts::Disable);
        let plain = DatabaseDef::parse("x", "").expect("empty connstr");
        assert_eq!(
            (plain.host, plain.port, plain.pool_size),
            (None, 5432, None)
        );
        assert_eq!(
            DatabaseDef::parse("x", "pool_size=-1")
                .expect("ok")
                .pool_size,
            None
        );
        assert_eq!(
            DatabaseDef::parse("x", "reserve_pool_size=3")
                .expect("ok")
                .reserve_pool_size,
            Some(3)
        );
    }

    #[test]
    fn database_errors() {
        let e = |name: &str, s: &str| {
            DatabaseDef::parse(name, s)
                .expect_err("must fail")
                .to_string()
        };
        assert_eq!(e("x", "hots=a"), "unrecognized connection parameter: hots");
        assert_eq!(e("x", "port=0"), "invalid port: 0");
        assert_eq!(e("x", "port=abc"), "invalid port: abc");
        assert_eq!(e("x", "port=70000"), "invalid port: 70000");
        assert_eq!(
            e("x", "pool_mode=sometimes"),
            "invalid pool mode: sometimes"
        );
        assert_eq!(e("x", "host="), "syntax error in connection string");
        assert_eq!(
            e("pgbouncer", "host=a"),
            "database name \"pgbouncer\" is reserved"
        );
        assert_eq!(
            e("x", "server_gssencmode=maybe"),
            "invalid server_gssencmode: maybe"
        );
        assert!(e(&"d".repeat(64), "").starts_with("too long db name"));
    }

    #[test]
    fn reconnect_rule_follows_pgbouncer_dirty_tagging() {
        let old = DatabaseDef::parse("d", "host=a pool_size=5").expect("ok");
        let resized = DatabaseDef::parse("d", "host=a pool_size=9").expect("ok");
        let moved = DatabaseDef::parse("d", "host=b pool_size=5").expect("ok");
        let forced = DatabaseDef::parse("d", "host=a user=u").expect("ok");
        assert!(!old.needs_reconnect(&resized));
        assert!(old.needs_reconnect(&moved));
        assert!(old.needs_reconnect(&forced));
    }

    #[test]
    fn fallback_takes_the_requested_name_unless_dbname_is_set() {
        let star = DatabaseDef::parse("*", "host=foo").expect("ok");
        let bar = star.instantiate_fallback("bar");
        assert_eq!(
            (bar.name.as_str(), bar.dbname.as_str(), bar.host.as_deref()),
            ("bar", "bar", Some("foo"))
        );
        let pinned = DatabaseDef::parse("*", "host=foo dbname=main").expect("ok");
        assert_eq!(pinned.instantiate_fallback("bar").dbname, "main");
    }
}
