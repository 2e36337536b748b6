//! Operations on `Settings` driven by the settings table: defaults, setting one key from text
//! (config loading, admin `SET`), SHOW CONFIG rows, carrying restart-only values over a reload,
//! and the list of accepted-but-not-yet-acted-on settings.

use super::error::{ConfigError, ConfigErrorKind};
use super::settings::{SETTINGS, Settings, find_setting};
use super::values::{ValueError, comma_list};

/// Settings krbouncer accepts but does not act on yet. `Settings::not_yet_implemented` reports
/// those whose value differs from the default so startup can warn. Edit freely.
pub const NOT_YET_IMPLEMENTED: &[&str] = &[
    "application_name_add_host",
    "auth_ldap_options",
    "client_tls_dheparams",
    "client_tls_ecdhcurve",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "dns_zone_check_period",
    "login_notify_message",
    "pool_idle_timeout",
    "resolv_conf",
];

/// One SHOW CONFIG row (`key`, `value`, `default`, `changeable`). `None` is SQL NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRow {
    pub key: &'static str,
    pub value: Option<String>,
    pub default: Option<&'static str>,
    /// SHOW CONFIG prints `yes`/`no`.
    pub changeable: bool,
}

/// What an online `SET`/reload did with one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    Applied,
    /// A restart-only setting: PgBouncer accepts the command and silently keeps the old value.
    IgnoredNeedsRestart,
}

/// What `server_check_query` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCheck<'a> {
    Disabled,
    /// `<empty>`: send an empty Query message.
    EmptyQuery,
    Query(&'a str),
}

impl<'a> ServerCheck<'a> {
    /// Reads a `server_check_query` value: "" disables the check, `<empty>` is an empty Query.
    pub fn parse(value: &'a str) -> ServerCheck<'a> {
        match value {
            "" => ServerCheck::Disabled,
            "<empty>" => ServerCheck::EmptyQuery,
            q => ServerCheck::Query(q),
        }
    }

    /// The SQL text to send, or None when disabled (an empty Query message for `<empty>`).
    pub fn sql(self) -> Option<&'a str> {
        match self {
            ServerCheck::Disabled => None,
            ServerCheck::EmptyQuery => Some(""),
            ServerCheck::Query(q) => Some(q),
        }
    }
}

impl Default for Settings {
    /// PgBouncer's defaults.
    fn default() -> Settings {
        let mut s = Settings::zeroed();
        s.reset_to_defaults();
        s
    }
}

impl Settings {
    /// Applies every non-NULL default, as PgBouncer does when a `[pgbouncer]` section starts.
    pub(crate) fn reset_to_defaults(&mut self) {
        for def in SETTINGS {
            if let Some(default) = def.default {
                // invariant: every default string in the table parses (unit-tested).
                (def.set)(self, default).expect("invariant: settings table defaults parse");
            }
        }
    }

    /// Sets one setting from its text form, whatever its reloadability (config loading).
    /// Errors carry no position; the loader adds file and line.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let def =
            find_setting(key).ok_or_else(|| ConfigErrorKind::UnknownParameter(key.to_string()))?;
        // PgBouncer's CF_AUTHDB type: the admin console cannot serve auth_query.
        let checked = if key == "auth_dbname" && value == crate::config::connstr::ADMIN_DB {
            Err(ValueError::ReservedAuthDb(value.to_string()))
        } else {
            Ok(())
        };
        checked
            .and_then(|()| (def.set)(self, value))
            .map_err(|reason| {
                ConfigError::bare(ConfigErrorKind::InvalidValue {
                    key: key.to_string(),
                    value: value.to_string(),
                    reason,
                })
            })
    }

    /// Admin `SET key = value` on a running process: restart-only keys are validated but
    /// left unchanged, as in PgBouncer (`cf_set` ignores `CF_NO_RELOAD` keys once loaded).
    pub fn set_online(&mut self, key: &str, value: &str) -> Result<SetOutcome, ConfigError> {
        let def =
            find_setting(key).ok_or_else(|| ConfigErrorKind::UnknownParameter(key.to_string()))?;
        let mut probe = self.clone();
        probe.set(key, value)?;
        if !def.reloadable {
            return Ok(SetOutcome::IgnoredNeedsRestart);
        }
        (def.copy)(self, &probe);
        Ok(SetOutcome::Applied)
    }

    /// A setting's current value as SHOW CONFIG renders it. `None` if unset or unknown.
    pub fn get(&self, key: &str) -> Option<String> {
        find_setting(key).and_then(|def| (def.get)(self))
    }

    /// Whether `key` exists in the table.
    pub fn is_known(key: &str) -> bool {
        find_setting(key).is_some()
    }

    /// SHOW CONFIG rows, sorted by key.
    pub fn show_config_rows(&self) -> Vec<ConfigRow> {
        let mut rows: Vec<ConfigRow> = SETTINGS
            .iter()
            .map(|def| ConfigRow {
                key: def.name,
                value: (def.get)(self),
                default: def.default,
                changeable: def.reloadable,
            })
            .collect();
        rows.sort_by_key(|r| r.key);
        rows
    }

    /// After loading a new config on reload: keep the running values of restart-only settings,
    /// and of NULL-default settings the new file does not set (`verbose` keeps the `-v` count).
    pub fn carry_over_restart_only(&mut self, running: &Settings) {
        for def in SETTINGS {
            if !def.reloadable {
                (def.copy)(self, running);
            }
        }
    }

    /// Names of settings in `NOT_YET_IMPLEMENTED` whose value differs from the default.
    pub fn not_yet_implemented(&self) -> Vec<&'static str> {
        let defaults = Settings::default();
        NOT_YET_IMPLEMENTED
            .iter()
            .filter_map(|&name| find_setting(name))
            .filter(|def| (def.get)(self) != (def.get)(&defaults))
            .map(|def| def.name)
            .collect()
    }

    /// `admin_users` as a list.
    pub fn admin_user_list(&self) -> Vec<String> {
        comma_list(&self.admin_users)
    }

    /// `stats_users` as a list.
    pub fn stats_user_list(&self) -> Vec<String> {
        comma_list(&self.stats_users)
    }

    /// `ignore_startup_parameters` as a list.
    pub fn ignored_startup_parameters(&self) -> Vec<String> {
        comma_list(&self.ignore_startup_parameters)
    }

    /// `track_extra_parameters` as a list.
    pub fn tracked_extra_parameters(&self) -> Vec<String> {
        comma_list(&self.track_extra_parameters)
    }

    /// `listen_addr` as a list (`*` means all addresses).
    pub fn listen_addrs(&self) -> Vec<String> {
        comma_list(&self.listen_addr)
    }

    /// How to interpret `server_check_query`.
    pub fn server_check(&self) -> ServerCheck<'_> {
        ServerCheck::parse(&self.server_check_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::enums::{
        AuthType, GssAuthNegotiate, GssEncMode, LogFormat, PoolMode, SslMode,
    };
    use std::time::Duration;

    #[test]
    fn defaults_match_pgbouncer() {
        let s = Settings::default();
        assert_eq!(s.listen_port, 6432);
        assert_eq!(s.max_client_conn, 100);
        assert_eq!(s.default_pool_size, 20);
        assert_eq!(s.server_reset_query, "DISCARD ALL");
        assert_eq!(s.server_check_query, "<empty>");
        assert_eq!(s.server_check(), ServerCheck::EmptyQuery);
        assert_eq!(s.server_tls_sslmode, SslMode::Prefer);
        assert_eq!(s.client_tls_sslmode, SslMode::Disable);
        assert_eq!(s.auth_type, AuthType::Md5);
        assert_eq!(s.pool_mode, PoolMode::Session);
        assert_eq!(s.query_wait_timeout, Duration::from_secs(120));
        assert_eq!(s.server_login_retry, Duration::from_secs(15));
        assert_eq!(s.client_login_timeout, Duration::from_secs(60));
        assert_eq!(s.server_lifetime, Duration::from_secs(3600));
        assert_eq!(s.server_idle_timeout, Duration::from_secs(600));
        assert_eq!(s.max_prepared_statements, 200);
        assert_eq!(s.track_extra_parameters, "IntervalStyle");
        assert_eq!(s.unix_socket_dir, "/tmp");
        assert_eq!(s.unix_socket_mode, 0o777);
        assert_eq!(s.max_packet_size, 2147483647);
        assert_eq!(s.pkt_buf, 4096);
        assert_eq!(s.scram_iterations, 4096);
        assert_eq!(s.reserve_pool_timeout, Duration::from_secs(5));
        assert_eq!(s.auth_file, None);
        assert_eq!(s.verbose, 0);
        assert!(
            s.log_connections && s.log_disconnections && s.log_pooler_errors && s.tcp_keepalive
        );
        assert_eq!(s.auth_query, crate::config::settings::DEFAULT_AUTH_QUERY);
        assert_eq!(s.server_gssauth_negotiate, GssAuthNegotiate::Disable);
        assert_eq!(s.server_gssencmode, GssEncMode::Disable);
        assert_eq!(s.server_krb_srvname, "postgres");
        assert_eq!(s.server_krb_spn, "");
        assert_eq!(s.metrics_addr, "");
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn table_is_sorted_unique_and_every_default_parses() {
        let names: Vec<_> = SETTINGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        let mut s = Settings::default();
        for def in SETTINGS {
            if let Some(d) = def.default {
                s.set(def.name, d)
                    .unwrap_or_else(|e| panic!("{}: {e}", def.name));
            }
        }
    }

    #[test]
    fn set_parses_types_and_reports_errors() {
        let mut s = Settings::default();
        s.set("query_wait_timeout", "0.5").expect("time");
        assert_eq!(s.query_wait_timeout, Duration::from_millis(500));
        s.set("pool_mode", "Transaction").expect("enum");
        assert_eq!(s.pool_mode, PoolMode::Transaction);
        s.set("auth_file", "/etc/pgbouncer/users.txt").expect("str");
        assert_eq!(s.auth_file.as_deref(), Some("/etc/pgbouncer/users.txt"));
        s.set("log_connections", "0").expect("flag");
        assert!(!s.log_connections);
        let e = s.set("foo_bar", "1").expect_err("unknown");
        assert_eq!(e.to_string(), "unknown parameter: foo_bar");
        let e = s.set("listen_port", "64k").expect_err("bad int");
        assert!(
            e.to_string()
                .starts_with("invalid value \"64k\" for parameter listen_port"),
            "{e}"
        );
        assert!(
            s.set("LISTEN_PORT", "1").is_err(),
            "keys are case-sensitive"
        );
        assert!(s.set("auth_type", "crypt").is_err());
        assert!(s.set("auth_dbname", "pgbouncer").is_err());
        assert!(s.set("auth_dbname", "postgres").is_ok());
    }

    #[test]
    fn online_set_skips_restart_only_keys() {
        let mut s = Settings::default();
        assert_eq!(
            s.set_online("listen_port", "7000"),
            Ok(SetOutcome::IgnoredNeedsRestart)
        );
        assert_eq!(s.listen_port, 6432);
        assert!(s.set_online("listen_port", "x").is_err());
        assert_eq!(
            s.set_online("default_pool_size", "7"),
            Ok(SetOutcome::Applied)
        );
        assert_eq!(s.default_pool_size, 7);
    }

    #[test]
    fn show_config_renders_like_pgbouncer() {
        let mut s = Settings::default();
        s.set("server_lifetime", "1.5").expect("set");
        let rows = s.show_config_rows();
        let row = |k: &str| rows.iter().find(|r| r.key == k).cloned().expect("row");
        assert_eq!(row("server_lifetime").value.as_deref(), Some("1.5"));
        assert_eq!(row("server_lifetime").default, Some("3600"));
        assert_eq!(row("listen_port").value.as_deref(), Some("6432"));
        assert!(!row("listen_port").changeable);
        assert!(row("max_client_conn").changeable);
        assert_eq!(row("unix_socket_mode").value.as_deref(), Some("511"));
        assert_eq!(row("auth_file").value, None);
        assert_eq!(row("verbose").default, None);
        assert_eq!(row("auth_type").value.as_deref(), Some("md5"));
        assert_eq!(row("log_connections").value.as_deref(), Some("1"));
        assert!(rows.windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn reload_keeps_restart_only_values() {
        let mut running = Settings::default();
        running.set("listen_port", "7000").expect("set");
        let mut fresh = Settings::default();
        fresh.set("listen_port", "8000").expect("set");
        fresh.set("max_client_conn", "5").expect("set");
        fresh.carry_over_restart_only(&running);
        assert_eq!(fresh.listen_port, 7000);
        assert_eq!(fresh.max_client_conn, 5);
    }

    #[test]
    fn not_yet_implemented_lists_changed_settings() {
        let mut s = Settings::default();
        assert!(s.not_yet_implemented().is_empty());
        s.set("disable_pqexec", "1").expect("set");
        s.set("stats_period", "60").expect("same as default");
        assert_eq!(s.not_yet_implemented(), vec!["disable_pqexec"]);
        for name in NOT_YET_IMPLEMENTED {
            assert!(Settings::is_known(name), "{name}");
        }
    }
}
