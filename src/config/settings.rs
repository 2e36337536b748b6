//! The `[pgbouncer]` settings table: every setting of PgBouncer 1.25.2 (`bouncer_params` in
//! `src/main.c`), the two from its main branch, and krbouncer's own, each with its type,
//! default (the exact string PgBouncer shows in SHOW CONFIG's `default` column) and whether a
//! reload may change it. The typed `Settings` struct is generated from the same table.

use std::marker::PhantomData;
use std::time::Duration;

use super::enums::{AuthType, GssAuthNegotiate, GssEncMode, LogFormat, Lookup, PoolMode, SslMode};
use super::values::{self, ValueError};

/// How a setting's text becomes a typed value and back.
pub trait SettingKind {
    type Value: Clone + Default + PartialEq + std::fmt::Debug;
    fn parse(value: &str) -> Result<Self::Value, ValueError>;
    /// SHOW CONFIG's rendering; `None` shows as SQL NULL (an unset string).
    fn render(value: &Self::Value) -> Option<String>;
}

/// `CF_INT`.
pub struct Int;
/// `CF_UINT`.
pub struct UInt;
/// `CF_TIME_USEC`: seconds with fractions.
pub struct Time;
/// A `CF_INT` used as 0/1.
pub struct Flag;
/// `CF_STR` with a non-NULL default.
pub struct Str;
/// `CF_STR` whose default is NULL (unset).
pub struct OptStr;
/// `CF_LOOKUP`.
pub struct Enum<T>(PhantomData<T>);

impl SettingKind for Int {
    type Value = i32;
    fn parse(value: &str) -> Result<i32, ValueError> {
        values::parse_int(value)
    }
    fn render(value: &i32) -> Option<String> {
        Some(value.to_string())
    }
}

impl SettingKind for UInt {
    type Value = u32;
    fn parse(value: &str) -> Result<u32, ValueError> {
        values::parse_uint(value)
    }
    fn render(value: &u32) -> Option<String> {
        Some(value.to_string())
    }
}

impl SettingKind for Time {
    type Value = Duration;
    fn parse(value: &str) -> Result<Duration, ValueError> {
        values::parse_time(value)
    }
    fn render(value: &Duration) -> Option<String> {
        Some(values::render_time(*value))
    }
}

impl SettingKind for Flag {
    type Value = bool;
    fn parse(value: &str) -> Result<bool, ValueError> {
        values::parse_flag(value)
    }
    fn render(value: &bool) -> Option<String> {
        Some(if *value { "1" } else { "0" }.to_string())
    }
}

impl SettingKind for Str {
    type Value = String;
    fn parse(value: &str) -> Result<String, ValueError> {
        Ok(value.to_string())
    }
    fn render(value: &String) -> Option<String> {
        Some(value.clone())
    }
}

impl SettingKind for OptStr {
    type Value = Option<String>;
    fn parse(value: &str) -> Result<Option<String>, ValueError> {
        Ok(Some(value.to_string()))
    }
    fn render(value: &Option<String>) -> Option<String> {
        value.clone()
    }
}

impl<T: Lookup + std::fmt::Debug + PartialEq + std::fmt::Display> SettingKind for Enum<T> {
    type Value = T;
    fn parse(value: &str) -> Result<T, ValueError> {
        T::parse(value).ok_or_else(|| ValueError::NotOneOf {
            allowed: T::allowed(),
        })
    }
    fn render(value: &T) -> Option<String> {
        Some(value.to_string())
    }
}

/// One row of the table.
pub struct SettingDef {
    pub name: &'static str,
    /// PgBouncer's default string; `None` = NULL default (the setting keeps its value when a
    /// `[pgbouncer]` section starts, and SHOW CONFIG shows NULL as default).
    pub default: Option<&'static str>,
    /// `false` = `CF_NO_RELOAD`: only a restart changes it (SHOW CONFIG `changeable = no`).
    pub reloadable: bool,
    pub(crate) get: fn(&Settings) -> Option<String>,
    pub(crate) set: fn(&mut Settings, &str) -> Result<(), ValueError>,
    pub(crate) copy: fn(&mut Settings, &Settings),
}

/// PgBouncer's default `auth_query` since 1.24.1 (CVE-2025-2291: honours VALID UNTIL).
pub(crate) const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin";

/// `tcp_defer_accept` defaults to on where the socket option exists (Linux).
const DEFAULT_TCP_DEFER_ACCEPT: &str = if cfg!(target_os = "linux") { "1" } else { "0" };

macro_rules! define_settings {
    ($( $(#[$doc:meta])* $field:ident : $kind:ty = $default:expr, $reload:expr; )*) => {
        /// Every `[pgbouncer]` setting, typed. Field names are the setting names.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Settings {
            $( $(#[$doc])* pub $field: <$kind as SettingKind>::Value, )*
        }

        impl Settings {
            /// All fields at their type's zero value, before PgBouncer's defaults are applied.
            pub(crate) fn zeroed() -> Settings {
                Settings { $( $field: Default::default(), )* }
            }
        }

        /// The table, alphabetical like PgBouncer's (SHOW CONFIG order).
        pub static SETTINGS: &[SettingDef] = &[
            $( SettingDef {
                name: stringify!($field),
                default: $default,
                reloadable: $reload,
                get: |s: &Settings| <$kind as SettingKind>::render(&s.$field),
                set: |s: &mut Settings, v: &str| {
                    s.$field = <$kind as SettingKind>::parse(v)?;
                    Ok(())
                },
                copy: |dst: &mut Settings, src: &Settings| dst.$field = src.$field.clone(),
            }, )*
        ];
    };
}

const R: bool = true;
const NO: bool = false;

define_settings! {
    admin_users: Str = Some(""), R;
    application_name_add_host: Flag = Some("0"), R;
    auth_dbname: OptStr = None, R;
    auth_file: OptStr = None, R;
    auth_hba_file: Str = Some(""), R;
    auth_ident_file: OptStr = None, R;
    auth_ldap_options: OptStr = None, R;
    auth_query: Str = Some(DEFAULT_AUTH_QUERY), R;
    auth_type: Enum<AuthType> = Some("md5"), R;
    auth_user: OptStr = None, R;
    autodb_idle_timeout: Time = Some("3600"), R;
    cancel_wait_timeout: Time = Some("10"), R;
    client_idle_timeout: Time = Some("0"), R;
    client_login_timeout: Time = Some("60"), R;
    client_tls13_ciphers: OptStr = None, R;
    client_tls_ca_file: Str = Some(""), R;
    client_tls_cert_file: Str = Some(""), R;
    client_tls_ciphers: Str = Some("default"), R;
    client_tls_dheparams: Str = Some("auto"), R;
    client_tls_ecdhcurve: Str = Some("auto"), R;
    client_tls_key_file: Str = Some(""), R;
    client_tls_protocols: Str = Some("secure"), R;
    client_tls_sslmode: Enum<SslMode> = Some("disable"), R;
    /// Set to the command-line config path by the loader; changing it redirects the next reload.
    conffile: OptStr = None, R;
    default_pool_size: Int = Some("20"), R;
    disable_pqexec: Flag = Some("0"), NO;
    dns_max_ttl: Time = Some("15"), R;
    dns_nxdomain_ttl: Time = Some("15"), R;
    dns_zone_check_period: Time = Some("0"), R;
    idle_transaction_timeout: Time = Some("0"), R;
    ignore_startup_parameters: Str = Some(""), R;
    job_name: Str = Some("pgbouncer"), NO;
    listen_addr: Str = Some(""), NO;
    listen_backlog: Int = Some("128"), NO;
    listen_port: Int = Some("6432"), NO;
    log_connections: Flag = Some("1"), R;
    log_disconnections: Flag = Some("1"), R;
    /// krbouncer: `text` or `json` log lines.
    log_format: Enum<LogFormat> = Some("text"), NO;
    log_pooler_errors: Flag = Some("1"), R;
    log_stats: Flag = Some("1"), R;
    logfile: Str = Some(""), R;
    /// PgBouncer main branch (#1488): NOTICE sent to clients after login.
    login_notify_message: Str = Some(""), R;
    max_client_conn: Int = Some("100"), R;
    max_db_client_connections: Int = Some("0"), R;
    max_db_connections: Int = Some("0"), R;
    max_packet_size: UInt = Some("2147483647"), R;
    max_prepared_statements: Int = Some("200"), R;
    max_user_client_connections: Int = Some("0"), R;
    max_user_connections: Int = Some("0"), R;
    /// krbouncer: `host:port` of the Prometheus endpoint; empty = off.
    metrics_addr: Str = Some(""), NO;
    min_pool_size: Int = Some("0"), R;
    peer_id: Int = Some("0"), R;
    pidfile: Str = Some(""), NO;
    pkt_buf: Int = Some("4096"), NO;
    /// PgBouncer main branch (#1491): free idle pools after this long; 0 = never.
    pool_idle_timeout: Time = Some("0"), R;
    pool_mode: Enum<PoolMode> = Some("session"), R;
    query_timeout: Time = Some("0"), R;
    /// Seconds between NOTICEs to clients queued for a server (1.25).
    query_wait_notify: Int = Some("5"), R;
    query_wait_timeout: Time = Some("120"), R;
    reserve_pool_size: Int = Some("0"), R;
    reserve_pool_timeout: Time = Some("5"), R;
    resolv_conf: Str = Some(""), NO;
    sbuf_loopcnt: Int = Some("5"), R;
    scram_iterations: Int = Some("4096"), R;
    server_check_delay: Time = Some("30"), R;
    /// `<empty>` (the default) sends an empty query; "" disables the check.
    server_check_query: Str = Some("<empty>"), R;
    server_connect_timeout: Time = Some("15"), R;
    server_fast_close: Flag = Some("0"), R;
    /// krbouncer / Astronomer fork: answer GSSAPI auth requests (`disable|allow|require`).
    server_gssauth_negotiate: Enum<GssAuthNegotiate> = Some("disable"), R;
    /// krbouncer: GSS encryption towards servers (`disable|prefer|require`).
    server_gssencmode: Enum<GssEncMode> = Some("disable"), R;
    server_idle_timeout: Time = Some("600"), R;
    /// krbouncer / Astronomer fork: server principal; empty = `<srvname>@<host>`.
    server_krb_spn: Str = Some(""), R;
    /// krbouncer: service part of the default server principal (libpq `krbsrvname`).
    server_krb_srvname: Str = Some("postgres"), R;
    server_lifetime: Time = Some("3600"), R;
    server_login_retry: Time = Some("15"), R;
    server_reset_query: Str = Some("DISCARD ALL"), R;
    server_reset_query_always: Flag = Some("0"), R;
    server_round_robin: Flag = Some("0"), R;
    server_tls13_ciphers: OptStr = None, R;
    server_tls_ca_file: Str = Some(""), R;
    server_tls_cert_file: Str = Some(""), R;
    server_tls_ciphers: Str = Some("default"), R;
    server_tls_key_file: Str = Some(""), R;
    server_tls_protocols: Str = Some("secure"), R;
    server_tls_sslmode: Enum<SslMode> = Some("prefer"), R;
    so_reuseport: Flag = Some("0"), NO;
    stats_period: Int = Some("60"), R;
    stats_users: Str = Some(""), R;
    suspend_timeout: Time = Some("10"), R;
    syslog: Flag = Some("0"), R;
    syslog_facility: Str = Some("daemon"), R;
    syslog_ident: Str = Some("pgbouncer"), R;
    tcp_defer_accept: Flag = Some(DEFAULT_TCP_DEFER_ACCEPT), R;
    tcp_keepalive: Flag = Some("1"), R;
    tcp_keepcnt: Int = Some("0"), R;
    tcp_keepidle: Int = Some("0"), R;
    tcp_keepintvl: Int = Some("0"), R;
    tcp_socket_buffer: Int = Some("0"), R;
    /// Milliseconds.
    tcp_user_timeout: Int = Some("0"), R;
    track_extra_parameters: Str = Some("IntervalStyle"), NO;
    transaction_timeout: Time = Some("0"), R;
    unix_socket_dir: Str = Some("/tmp"), NO;
    unix_socket_group: Str = Some(""), NO;
    /// Parsed base-0, so the default "0777" is 511 (SHOW CONFIG shows `511`, as PgBouncer does).
    unix_socket_mode: Int = Some("0777"), NO;
    user: OptStr = None, NO;
    /// NULL default: the `-v` count survives reloads.
    verbose: Int = None, R;
}

/// Looks a setting up by its exact (case-sensitive) name, as `cf_set` does.
pub fn find_setting(name: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.name == name)
}
