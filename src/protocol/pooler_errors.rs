//! PgBouncer's client-facing error catalogue: the exact texts, SQLSTATEs and severities
//! PgBouncer 1.25 sends, so tooling and runbooks that match on them keep working.
//!
//! How PgBouncer sends them (`src/proto.c` `send_pooler_error`, `src/objects.c`
//! `disconnect_client`/`disconnect_client_sqlstate`):
//! - `disconnect_client(client, notify=true, ...)`: ErrorResponse with severity **FATAL**,
//!   SQLSTATE **08P01** unless the caller passes one, fields S, C, M only; no ReadyForQuery;
//!   then the connection is closed. The text is formatted into a 128-byte buffer, so it is
//!   cut at 127 bytes ([`PoolerError::fatal_text`] does the same).
//! - `admin_error(...)` (admin console): severity **ERROR**, SQLSTATE 08P01, followed by
//!   ReadyForQuery; the connection stays open. Text buffer 1024 bytes.
//! - A server disconnected while linked to an active client (`unlink_server`) passes its own
//!   reason to the client as FATAL (e.g. "query timeout", "server conn crashed?"); a client
//!   still in login gets "bouncer config error" instead.
//! - Server login errors (`kill_pool_logins_server_error`, `src/server.c`): every client
//!   waiting on the pool gets the server's own message and SQLSTATE, FATAL — except
//!   57P03 cannot_connect_now, which is not propagated.
//!
//! Texts verified against PgBouncer's master sources (client.c, objects.c, janitor.c,
//! server.c, proto.c, prepare.c, admin.c). Notable differences from folklore: the password
//! failure text has no user name ("password authentication failed"), and a disabled database
//! says `database "x" is disabled`.

use std::borrow::Cow;

use bytes::BytesMut;

use super::backend::{Severity, error_response, ready_for_query};
use super::sqlstate::{CANNOT_CONNECT_NOW, PROTOCOL_VIOLATION};

/// PgBouncer formats `disconnect_client` reasons into `char buf[128]`.
pub(crate) const DISCONNECT_REASON_MAX: usize = 127;
/// PgBouncer formats `admin_error` texts into `char str[1024]`.
pub const ADMIN_ERROR_MAX: usize = 1023;

/// Why an error happened, for logs and metrics: never derived from the message text, which
/// is PgBouncer's and may carry a server's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client's password, SCRAM proof, certificate or user name was refused.
    AuthFailed,
    /// The database is not in `[databases]` (and there is no `*` entry).
    NoSuchDatabase,
    /// `max_client_conn` reached.
    MaxClientConn,
    /// The pooler is shutting down.
    ShuttingDown,
    /// `client_tls_sslmode` requires TLS and the client did not ask for it.
    TlsRequired,
    /// The client's TLS handshake failed (or direct TLS was not acceptable).
    TlsHandshake,
    /// `client_login_timeout` passed during login.
    LoginTimeout,
    /// `query_wait_timeout` passed while waiting for a server.
    PoolTimeout,
    /// Logging in to a server failed (connect, TLS, GSSAPI, auth, or the server's own error).
    ServerLoginFailed,
    /// The client went away before the exchange finished.
    ClientGone,
    /// Anything else: a protocol violation or another refusal from PgBouncer's catalogue.
    Protocol,
}

impl ErrorKind {
    /// The `reason` label of `krbouncer_client_login_failures_total`; stable.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::AuthFailed => "auth_failed",
            ErrorKind::NoSuchDatabase => "no_such_database",
            ErrorKind::MaxClientConn => "max_client_conn",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::TlsRequired => "tls_required",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::LoginTimeout => "login_timeout",
            ErrorKind::PoolTimeout => "query_wait_timeout",
            ErrorKind::ServerLoginFailed => "server_login_failed",
            ErrorKind::ClientGone => "client_gone",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// One pooler error as PgBouncer would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerError {
    pub sqlstate: Cow<'static, str>,
    /// FATAL + close the connection, or ERROR + ReadyForQuery (admin console).
    pub fatal: bool,
    pub message: Cow<'static, str>,
    /// Why, for logs and metrics (not sent).
    pub kind: ErrorKind,
}

impl PoolerError {
    /// A FATAL 08P01 error with a fixed text (`disconnect_client`).
    pub(crate) const fn fatal(message: &'static str) -> PoolerError {
        PoolerError {
            sqlstate: Cow::Borrowed(PROTOCOL_VIOLATION),
            fatal: true,
            message: Cow::Borrowed(message),
            kind: ErrorKind::Protocol,
        }
    }

    /// The same error with another kind.
    pub(crate) const fn with_kind(mut self, kind: ErrorKind) -> PoolerError {
        self.kind = kind;
        self
    }

    /// A FATAL 08P01 error with a formatted text, cut to 127 bytes like PgBouncer.
    pub(crate) fn fatal_text(message: String) -> PoolerError {
        PoolerError {
            sqlstate: Cow::Borrowed(PROTOCOL_VIOLATION),
            fatal: true,
            message: Cow::Owned(truncate(message, DISCONNECT_REASON_MAX)),
            kind: ErrorKind::Protocol,
        }
    }

    /// An ERROR 08P01 admin-console error (`admin_error`), cut to 1023 bytes.
    pub fn admin(message: String) -> PoolerError {
        PoolerError {
            sqlstate: Cow::Borrowed(PROTOCOL_VIOLATION),
            fatal: false,
            message: Cow::Owned(truncate(message, ADMIN_ERROR_MAX)),
            kind: ErrorKind::Protocol,
        }
    }

    pub(crate) fn severity(&self) -> Severity {
        if self.fatal {
            Severity::Fatal
        } else {
            Severity::Error
        }
    }

    /// Appends the ErrorResponse; for non-fatal errors also ReadyForQuery('I') as
    /// `admin_error` does (`send_ready=true`).
    pub(crate) fn write(&self, buf: &mut BytesMut) {
        error_response(
            buf,
            self.severity(),
            &self.sqlstate,
            &self.message,
            None,
            None,
        );
        if !self.fatal {
            ready_for_query(buf, b'I');
        }
    }
}

impl std::fmt::Display for PoolerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Cuts at `max` bytes on a char boundary (C's vsnprintf cuts bytes; we keep UTF-8 valid).
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

// ---- startup and login (src/client.c) -------------------------------------------------------

/// The client closed its socket (or a read failed) in the middle of an exchange.
pub(crate) const CLIENT_UNEXPECTED_EOF: PoolerError =
    PoolerError::fatal("client unexpected eof").with_kind(ErrorKind::ClientGone);
/// `client_login_timeout` passed before the client finished logging in.
pub const LOGIN_TIMEOUT: PoolerError =
    PoolerError::fatal("client_login_timeout").with_kind(ErrorKind::LoginTimeout);
/// A client's TLS handshake failed, or direct TLS was not acceptable (the reason follows).
pub fn tls_handshake_failed(reason: String) -> PoolerError {
    PoolerError::fatal_text(reason).with_kind(ErrorKind::TlsHandshake)
}

/// `decide_startup_pool`: more active clients than `max_client_conn` (admin db exempt).
pub const MAX_CLIENT_CONN: PoolerError =
    PoolerError::fatal("no more connections allowed (max_client_conn)")
        .with_kind(ErrorKind::MaxClientConn);
/// `decide_startup_pool`: no `user` startup parameter.
pub(crate) const NO_USERNAME: PoolerError = PoolerError::fatal("no username supplied");
/// `handle_client_startup`: protocol 2 startup packet.
pub const OLD_V2_PROTOCOL: PoolerError = PoolerError::fatal("old V2 protocol not supported");
/// `handle_client_startup`: `client_tls_sslmode` >= require and a plain TCP startup.
pub const SSL_REQUIRED: PoolerError =
    PoolerError::fatal("SSL required").with_kind(ErrorKind::TlsRequired);
/// `handle_client_startup`: a second StartupMessage.
pub const CLIENT_RESENT_STARTUP: PoolerError = PoolerError::fatal("client re-sent startup pkt");
/// `handle_client_startup`: a 'p' message before the StartupMessage.
pub const PASSWORD_BEFORE_STARTUP: PoolerError =
    PoolerError::fatal("client password pkt before startup packet");
/// `client_proto`: data buffered behind an SSLRequest (possible injection).
pub(crate) const UNENCRYPTED_AFTER_SSL: PoolerError =
    PoolerError::fatal("received unencrypted data after SSL request");
/// `client_proto`: data buffered behind a GSSENCRequest.
pub(crate) const UNENCRYPTED_AFTER_GSSENC: PoolerError =
    PoolerError::fatal("received unencrypted data after GSSAPI encryption request");
/// `set_pool`: user name of 128 bytes or more (`MAX_USERNAME`).
pub const USERNAME_TOO_LONG: PoolerError = PoolerError::fatal("username too long");
/// `set_pool` (takeover): password too long.
pub const PASSWORD_TOO_LONG: PoolerError = PoolerError::fatal("password too long");
/// Misconfiguration seen at login: `auth_type=any` without a forced user, a missing or admin
/// `auth_dbname`, PAM with auth_user; also `unlink_server` for a client still logging in.
pub const BOUNCER_CONFIG_ERROR: PoolerError = PoolerError::fatal("bouncer config error");
/// `finish_set_pool`: auth_type=trust and the user is unknown (mock auth).
pub const TRUST_AUTH_FAILED: PoolerError =
    PoolerError::fatal("\"trust\" authentication failed").with_kind(ErrorKind::AuthFailed);
/// `handle_client_startup`: wrong cleartext/md5 password, or unknown user (mock auth).
pub const PASSWORD_AUTH_FAILED: PoolerError =
    PoolerError::fatal("password authentication failed").with_kind(ErrorKind::AuthFailed);
/// `handle_client_startup`: any SCRAM failure (bad proof, malformed message, unknown user).
pub const SASL_AUTH_FAILED: PoolerError =
    PoolerError::fatal("SASL authentication failed").with_kind(ErrorKind::AuthFailed);
/// `handle_client_startup`: SASLInitialResponse names another mechanism.
pub const INVALID_SASL_MECHANISM: PoolerError =
    PoolerError::fatal("client selected an invalid SASL authentication mechanism")
        .with_kind(ErrorKind::AuthFailed);
/// `handle_client_startup`: empty PasswordMessage (as PostgreSQL's `recv_password_packet`).
pub const EMPTY_PASSWORD: PoolerError =
    PoolerError::fatal("empty password returned by client").with_kind(ErrorKind::AuthFailed);
/// `handle_auth_query_response`: auth_query returned no row.
pub const NO_SUCH_USER: PoolerError =
    PoolerError::fatal("no such user").with_kind(ErrorKind::AuthFailed);
/// `login_via_cert`: no TLS, no client cert, or name mismatch.
pub const CERT_AUTH_FAILED: PoolerError =
    PoolerError::fatal("certificate authentication failed").with_kind(ErrorKind::AuthFailed);
/// `login_as_unix_peer`.
pub const UNIX_PEER_REJECTED: PoolerError = PoolerError::fatal("unix socket login rejected");
/// `finish_set_pool`: hba method `reject` or unknown.
pub const LOGIN_REJECTED: PoolerError = PoolerError::fatal("login rejected");
/// `finish_set_pool`: no hba line matched.
pub const NO_HBA_MATCH: PoolerError = PoolerError::fatal("no authentication method is found");
/// `check_db_connection_count`.
pub const MAX_DB_CLIENT_CONNECTIONS: PoolerError =
    PoolerError::fatal("client connections exceeded (max_db_client_connections)");
/// `check_user_connection_count`.
pub const MAX_USER_CLIENT_CONNECTIONS: PoolerError =
    PoolerError::fatal("client connections exceeded (max_user_client_connections)");
/// `set_startup_options`: `options` other than `-c k=v` / `--k=v`.
pub(crate) const UNSUPPORTED_OPTIONS_FORMAT: PoolerError = PoolerError::fatal(
    "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
);
/// `handle_client_work`: `disable_pqexec` and a simple Query.
pub const PQEXEC_DISALLOWED: PoolerError = PoolerError::fatal("PQexec disallowed");
/// `handle_client_work`: unknown message type from a logged-in client.
pub const UNKNOWN_PKT: PoolerError = PoolerError::fatal("unknown pkt");
/// `handle_client_work`: a Parse/Bind/Describe/Close the prepared-statement code cannot parse.
pub const FAILED_TO_PARSE_PACKET: PoolerError = PoolerError::fatal("failed to parse packet");
/// Allocation failures (PgBouncer closes client and server).
pub const OUT_OF_MEMORY: PoolerError = PoolerError::fatal("out of memory");

/// `decide_startup_pool`: a startup parameter that is neither tracked nor ignored.
pub(crate) fn unsupported_startup_parameter(name: &str) -> PoolerError {
    PoolerError::fatal_text(format!("unsupported startup parameter: {name}"))
}

/// `set_startup_options`: a `-c name=value` whose name is neither tracked nor ignored.
pub(crate) fn unsupported_startup_parameter_in_options(name: &str) -> PoolerError {
    PoolerError::fatal_text(format!("unsupported startup parameter in options: {name}"))
}

/// `client_proto`: an unparsable header (up to 8 bytes shown as hex).
pub fn bad_packet_header(first_bytes: &[u8]) -> PoolerError {
    let hex: String = first_bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    PoolerError::fatal_text(format!("bad packet header: '{hex}'"))
}

/// `prepare_auth_database`.
pub fn auth_database_disabled(auth_dbname: &str) -> PoolerError {
    PoolerError::fatal_text(format!(
        "authentication database \"{auth_dbname}\" is disabled"
    ))
}

// ---- pool and login completion (src/objects.c) ----------------------------------------------

/// `finish_client_login`: the database is not in `[databases]` and there is no `*` entry.
/// Sent after authentication (mock auth for fake databases), so it does not leak early.
pub fn no_such_database(dbname: &str) -> PoolerError {
    PoolerError::fatal_text(format!("no such database: {dbname}"))
        .with_kind(ErrorKind::NoSuchDatabase)
}

/// `finish_client_login`: the database was DISABLEd from the admin console.
pub fn database_disabled(dbname: &str) -> PoolerError {
    PoolerError::fatal_text(format!("database \"{dbname}\" is disabled"))
}

/// `check_fast_fail`: the pool's last server login failed and no server is usable. The cached
/// text is the server's error message or PgBouncer's reason (e.g. "connect failed").
pub(crate) fn server_login_retry(cached_error: &str) -> PoolerError {
    PoolerError::fatal_text(format!(
        "server login has been failing, cached error: {cached_error} (server_login_retry)"
    ))
    .with_kind(ErrorKind::ServerLoginFailed)
}

/// `pause_client` / janitor during SHUTDOWN WAIT_FOR_SERVERS (SIGINT).
pub(crate) const SERVER_SHUTTING_DOWN: PoolerError =
    PoolerError::fatal("server shutting down").with_kind(ErrorKind::ShuttingDown);

// ---- timeouts (src/janitor.c) ------------------------------------------------------------------

/// Waiting longer than `query_wait_timeout` for a server.
pub(crate) const QUERY_WAIT_TIMEOUT: PoolerError =
    PoolerError::fatal("query_wait_timeout").with_kind(ErrorKind::PoolTimeout);
/// A waiting client older than `query_timeout` (client side of the timeout).
pub const QUERY_TIMEOUT_WAITING: PoolerError = PoolerError::fatal("query_timeout");
/// Idle logged-in client beyond `client_idle_timeout`.
pub(crate) const CLIENT_IDLE_TIMEOUT: PoolerError = PoolerError::fatal("client_idle_timeout");
/// A client waiting for the pool's first server login beyond `client_login_timeout`.
pub const CLIENT_LOGIN_TIMEOUT: PoolerError =
    PoolerError::fatal("client_login_timeout (server down)").with_kind(ErrorKind::LoginTimeout);
/// Server disconnected by `query_timeout`; the linked client receives this text.
pub(crate) const QUERY_TIMEOUT: PoolerError = PoolerError::fatal("query timeout");
/// Server disconnected by `idle_transaction_timeout`; the linked client receives this text.
pub(crate) const IDLE_TRANSACTION_TIMEOUT: PoolerError =
    PoolerError::fatal("idle transaction timeout");
/// Server disconnected by `transaction_timeout`; the linked client receives this text.
pub(crate) const TRANSACTION_TIMEOUT: PoolerError = PoolerError::fatal("transaction timeout");
/// Server disconnected by `server_connect_timeout` (server-side reason; also the cached
/// error behind `server_login_retry`).
pub const CONNECT_TIMEOUT: &str = "connect timeout";
/// Cancel request waiting beyond `cancel_wait_timeout` (sent silently, notify=false).
pub const CANCEL_WAIT_TIMEOUT: &str = "cancel_wait_timeout";

// ---- server side reasons that reach linked clients (src/server.c, src/objects.c) --------------

/// A replication connection's server login failed (missing REPLICATION role, no
/// `replication` line in pg_hba.conf...): only its own client is told, in PgBouncer's words.
pub(crate) const REPLICATION_LOGIN_FAILED: PoolerError =
    PoolerError::fatal("login failed").with_kind(ErrorKind::ServerLoginFailed);
/// Server socket read failed while linked: the client gets this text.
pub(crate) const SERVER_CONN_CRASHED: PoolerError = PoolerError::fatal("server conn crashed?");
/// Statement pooling and the server reported a transaction block.
pub(crate) const STATEMENT_MODE_TRANSACTION: PoolerError =
    PoolerError::fatal("transaction blocks not allowed in statement pooling mode");
/// `server_fast_close`: an idle session-mode server marked close_needed (RECONNECT, a reload
/// that changed the database) is closed, and its client with it.
pub(crate) const DATABASE_CONFIG_CHANGED: PoolerError =
    PoolerError::fatal("database configuration changed");
/// Parameter sync (`SET ...`) failed on the server.
pub(crate) const INVALID_SERVER_PARAMETER: PoolerError =
    PoolerError::fatal("invalid server parameter");
/// Unknown message type from a server.
pub const UNKNOWN_PKT_FROM_SERVER: PoolerError = PoolerError::fatal("unknown pkt");
/// Server login reasons PgBouncer itself produces (then cached for server_login_retry).
pub const SERVER_CONNECT_FAILED: &str = "connect failed";
pub const SERVER_LOGIN_WRONG_PASSWORD_TYPE: &str = "server login failed: wrong password type";
pub const SERVER_LOGIN_INVALID_SIGNATURE: &str = "server login failed: invalid server signature";
pub const SERVER_LOGIN_NO_SASL_MECHANISM: &str =
    "server login failed: none of the server's SASL authentication mechanisms are supported";
/// Server login error forwarded to waiting clients: the server's text and SQLSTATE, FATAL.
/// `None` for 57P03 (cannot_connect_now), which PgBouncer does not propagate.
pub fn server_login_failed(
    server_sqlstate: &'static str,
    server_message: &str,
) -> Option<PoolerError> {
    if server_sqlstate == CANNOT_CONNECT_NOW {
        return None;
    }
    Some(PoolerError {
        sqlstate: Cow::Owned(server_sqlstate.to_string()),
        fatal: true,
        message: Cow::Owned(truncate(server_message.to_string(), DISCONNECT_REASON_MAX)),
        kind: ErrorKind::ServerLoginFailed,
    })
}

// ---- prepared statements (src/prepare.c) -----------------------------------------------------

/// Parse of a client statement name already in use (PgBouncer closes the client).
pub(crate) const PREPARED_STATEMENT_IN_USE: PoolerError =
    PoolerError::fatal("prepared statement name is already in use");
/// Bind/Describe of an unknown client statement name.
pub(crate) const PREPARED_STATEMENT_MISSING: PoolerError =
    PoolerError::fatal("prepared statement did not exist");

// ---- admin console (src/admin.c), ERROR + ReadyForQuery ---------------------------------------

/// `syntax_error`.
pub fn admin_invalid_command(query: &str) -> PoolerError {
    PoolerError::admin(format!("invalid command '{query}', use SHOW HELP;"))
}
/// A stats user running an admin-only command.
pub fn admin_access_needed() -> PoolerError {
    PoolerError::admin("admin access needed".to_string())
}
/// RESUME during shutdown.
pub fn admin_pooler_shutting_down() -> PoolerError {
    PoolerError::admin("pooler is shutting down".to_string())
}
/// RESUME when not paused.
pub fn admin_not_paused() -> PoolerError {
    PoolerError::admin("pooler is not paused/suspended".to_string())
}
/// PAUSE/RESUME/KILL/... of an unknown database.
pub fn admin_no_such_database(dbname: &str) -> PoolerError {
    PoolerError::admin(format!("no such database: {dbname}"))
}
/// Any admin-console error with PgBouncer's text (`admin_error`).
pub fn admin_error(message: impl Into<String>) -> PoolerError {
    PoolerError::admin(message.into())
}
/// RELOAD that could not load the new configuration (SQLSTATE F0000, ERROR + ReadyForQuery).
pub fn admin_reload_failed() -> PoolerError {
    PoolerError {
        sqlstate: Cow::Borrowed("F0000"),
        fatal: false,
        message: Cow::Borrowed("RELOAD failed, see logs for additional details"),
        kind: ErrorKind::Protocol,
    }
}
/// `admin_handle_client`: Parse/Bind/Execute on the admin console (then disconnect).
pub const ADMIN_EXTENDED_PROTOCOL: &str = "extended query protocol not supported by admin console";
/// `admin_post_login`: a user that is neither in admin_users nor in stats_users.
pub const ADMIN_NOT_ALLOWED: PoolerError = PoolerError::fatal("not allowed");
/// KILL_CLIENT: what the killed client is told.
pub const ADMIN_FORCED_DISCONNECT: PoolerError = PoolerError::fatal("admin forced disconnect");
/// KILL db (`kill_pool`) and databases removed by a reload: what their clients are told.
pub const DATABASE_REMOVED: PoolerError = PoolerError::fatal("database removed");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::{parse_error_fields, parse_ready_for_query};

    #[test]
    fn fatal_is_error_response_only() {
        let mut buf = BytesMut::new();
        no_such_database("x").write(&mut buf);
        let f = parse_error_fields(&buf).unwrap();
        assert_eq!((f.severity.as_str(), f.code.as_str()), ("FATAL", "08P01"));
        assert_eq!(f.message, "no such database: x");
        assert_eq!(
            buf.len(),
            1 + i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize
        );
    }

    #[test]
    fn admin_errors_end_with_ready_for_query() {
        let mut buf = BytesMut::new();
        admin_invalid_command("BEGIN").write(&mut buf);
        let len = 1 + i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        let f = parse_error_fields(&buf[..len]).unwrap();
        assert_eq!(
            (f.severity.as_str(), f.message.as_str()),
            ("ERROR", "invalid command 'BEGIN', use SHOW HELP;")
        );
        assert_eq!(parse_ready_for_query(&buf[len..]).unwrap(), b'I');
    }

    #[test]
    fn reasons_are_cut_like_pgbouncer() {
        let long = "é".repeat(200);
        let e = server_login_retry(&long);
        assert!(e.message.len() <= DISCONNECT_REASON_MAX);
        assert!(
            e.message
                .starts_with("server login has been failing, cached error: ")
        );
    }

    #[test]
    fn server_login_errors_keep_the_server_code() {
        let e =
            server_login_failed("28P01", "password authentication failed for user \"u\"").unwrap();
        assert_eq!((e.sqlstate.as_ref(), e.fatal), ("28P01", true));
        assert!(server_login_failed("57P03", "the database system is starting up").is_none());
    }
}
