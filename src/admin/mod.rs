//! The admin console: the virtual database `pgbouncer`. Who may log in (admin_users,
//! stats_users, auth_type=any), its ParameterStatus set, and the simple-query loop that
//! dispatches SHOW and control commands (`show.rs`, `control.rs`) parsed by `parse.rs`.

pub mod control;
pub mod parse;
pub mod show;
mod show_conns;
mod show_stats;
mod table;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::config::{AuthType, Settings};
use crate::net::read_message::read_message_limited;
use crate::net::stream::ClientStream;
use crate::pool::clients::ClientEntry;
use crate::protocol::backend::{self, Severity};
use crate::protocol::pooler_errors::{
    ADMIN_EXTENDED_PROTOCOL, PoolerError, admin_access_needed, admin_error, admin_invalid_command,
};
use crate::protocol::result_set::{command_complete, empty_query_response};
use crate::shared::Shared;
use parse::{AdminQuery, ParseError};

/// Longest admin query accepted (PgBouncer's queries are tiny).
const MAX_ADMIN_MESSAGE: usize = 64 * 1024;

/// What a user may do on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Admin,
    Stats,
}

/// PgBouncer's `admin_pre_login` / `admin_post_login`: who may use the console, after the
/// password check. `None` means "not allowed".
pub fn access_for(settings: &Settings, user: &str) -> Option<Access> {
    if settings.admin_user_list().iter().any(|u| u == user) {
        Some(Access::Admin)
    } else if settings.stats_user_list().iter().any(|u| u == user)
        || settings.auth_type == AuthType::Any
    {
        Some(Access::Stats)
    } else {
        None
    }
}

/// The admin console's ParameterStatus set (`admin_setup`).
pub fn welcome(out: &mut BytesMut) {
    for (name, value) in [
        ("server_version", "1.25.0/bouncer"),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "GMT"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", "on"),
    ] {
        backend::parameter_status(out, name, value);
    }
}

/// `syntax_error` without the query text (filled in by the dispatcher).
fn syntax_error() -> PoolerError {
    admin_invalid_command("")
}

/// Parameters drivers SHOW or SET on connect; PgBouncer fakes them (`fake_param_list`).
const FAKE_PARAMS: [(&str, &str); 6] = [
    ("client_encoding", "UTF-8"),
    ("default_transaction_isolation", "read committed"),
    ("standard_conforming_strings", "on"),
    ("datestyle", "ISO"),
    ("timezone", "GMT"),
    ("extra_float_digits", "2"),
];

fn fake_param(name: &str) -> Option<(&'static str, &'static str)> {
    FAKE_PARAMS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
}

/// One admin console connection after login.
pub struct AdminSession<'a> {
    pub app: &'a Arc<Shared>,
    pub stream: &'a mut ClientStream,
    pub rbuf: BytesMut,
    pub access: Access,
    pub entry: Arc<ClientEntry>,
}

/// What one query produced, beyond the bytes already in the output buffer.
enum Step {
    Continue,
    /// Send what is buffered, then close (bad packet).
    Close,
    /// SHUTDOWN: keep the connection open without answering until the process exits.
    Hang,
}

impl AdminSession<'_> {
    /// Serves queries until the client leaves.
    pub async fn run(mut self) {
        let mut counted = false;
        loop {
            let msg =
                match read_message_limited(&mut *self.stream, &mut self.rbuf, MAX_ADMIN_MESSAGE)
                    .await
                {
                    Ok(m) => m,
                    Err(_) => return,
                };
            let mut out = BytesMut::with_capacity(1024);
            let step = match msg[0] {
                b'Q' => {
                    let body = &msg[5..];
                    let text = body.strip_suffix(&[0]).unwrap_or(body);
                    let query = String::from_utf8_lossy(text).into_owned();
                    tracing::debug!(query = %query, "got admin query");
                    if !std::mem::replace(&mut counted, true) {
                        // PgBouncer starts an admin client's query and transaction clocks at
                        // its first query and, with no server to end them, never again
                        self.app.admin_stats.record_query(std::time::Duration::ZERO);
                        self.app.admin_stats.record_xact(std::time::Duration::ZERO);
                    }
                    self.query(&query, &mut out).await
                }
                b'X' => return,
                b'P' | b'B' | b'E' => {
                    admin_error(ADMIN_EXTENDED_PROTOCOL).write(&mut out);
                    Step::Close
                }
                other => {
                    admin_error(format!(
                        "unsupported packet type for admin console: {}",
                        other as char
                    ))
                    .write(&mut out);
                    Step::Close
                }
            };
            if self.stream.write_all(&out).await.is_err() || self.stream.flush().await.is_err() {
                return;
            }
            match step {
                Step::Continue => {}
                Step::Close => return,
                Step::Hang => std::future::pending::<()>().await,
            }
        }
    }

    async fn query(&mut self, query: &str, out: &mut BytesMut) -> Step {
        if query.trim().is_empty() {
            empty_query_response(out);
            backend::ready_for_query(out, b'I');
            return Step::Continue;
        }
        let result = match parse::parse(query) {
            Ok(AdminQuery::Command { name, arg }) => self.command(&name, &arg, out).await,
            Ok(AdminQuery::Set { key, value }) => self.set(&key, &value, out).await,
            Err(ParseError::BadArguments) => Err(admin_error("bad arguments")),
            Err(ParseError::Syntax) => Err(syntax_error()),
        };
        match result {
            Ok(Some(tag)) => {
                command_complete(out, &tag);
                backend::ready_for_query(out, b'I');
                Step::Continue
            }
            Ok(None) => Step::Hang,
            Err(e) => {
                // the syntax error names the query, as PgBouncer's `syntax_error`
                let e = if e == syntax_error() {
                    admin_invalid_command(query)
                } else {
                    e
                };
                tracing::error!("{}", e.message);
                out.clear();
                e.write(out);
                Step::Continue
            }
        }
    }

    async fn set(
        &mut self,
        key: &str,
        value: &str,
        out: &mut BytesMut,
    ) -> Result<Option<String>, PoolerError> {
        if fake_param(key).is_some() {
            backend::notice_response(out, Severity::Notice, "00000", "SET ignored", None, None);
            return Ok(Some("SET".to_string()));
        }
        if self.access != Access::Admin {
            return Err(admin_access_needed());
        }
        control::set(self.app, key, value).await.map(Some)
    }

    async fn command(
        &mut self,
        name: &str,
        arg: &str,
        out: &mut BytesMut,
    ) -> Result<Option<String>, PoolerError> {
        let name = name.to_ascii_lowercase();
        if name == "show" || name == "select" {
            return self.show(arg, out).map(|()| Some("SHOW".to_string()));
        }
        let known = [
            "disable",
            "enable",
            "kill",
            "kill_client",
            "pause",
            "reconnect",
            "reload",
            "resume",
            "shutdown",
            "suspend",
            "wait_close",
        ];
        if !known.contains(&name.as_str()) {
            return Err(syntax_error());
        }
        if self.access != Access::Admin {
            return Err(admin_access_needed());
        }
        let app = self.app;
        match name.as_str() {
            "disable" => control::disable_enable(app, arg, true),
            "enable" => control::disable_enable(app, arg, false),
            "kill" => control::kill(app, arg),
            "kill_client" => control::kill_client(app, arg),
            "pause" => control::pause(app, arg).await,
            "reconnect" => control::reconnect(app, arg),
            "reload" => control::reload(app, arg).await,
            "resume" => control::resume(app, arg),
            "suspend" => control::suspend(app, arg).await,
            "wait_close" => control::wait_close(app, arg).await,
            _ => return control::shutdown(app, arg),
        }
        .map(Some)
    }

    fn show(&mut self, what: &str, out: &mut BytesMut) -> Result<(), PoolerError> {
        if let Some((name, value)) = fake_param(what) {
            table::table(
                out,
                &[(name, crate::protocol::result_set::ColType::Text)],
                &vec![vec![Some(value.to_string())]],
            );
            return Ok(());
        }
        let app = self.app;
        match what.to_ascii_lowercase().as_str() {
            "clients" => show::clients(app, out),
            "config" => show::config(app, out),
            "databases" => show::databases(app, out),
            "fds" => {
                if self.access != Access::Admin {
                    return Err(admin_access_needed());
                }
                show::empty(out, "fds")
            }
            "help" => backend::notice_response(
                out,
                Severity::Notice,
                "00000",
                "Console usage",
                Some(HELP),
                None,
            ),
            "lists" => show::lists(app, out),
            "peers" => show::peers(app, out),
            "pools" => show::pools(app, out),
            "servers" => show::servers(app, out),
            "sockets" | "active_sockets" => show::sockets(app, out),
            "stats" => show::stats(app, out),
            "stats_totals" => show::stats_totals_or_averages(app, out, false),
            "stats_averages" => show::stats_totals_or_averages(app, out, true),
            "users" => show::users(app, out),
            "version" => table::table(
                out,
                &[("version", crate::protocol::result_set::ColType::Text)],
                &vec![vec![Some(show::VERSION_TEXT.to_string())]],
            ),
            "totals" => show::totals(app, out),
            "state" => show::state(app, out),
            "peer_pools" => show::peer_pools(app, out),
            w @ ("mem" | "dns_hosts" | "dns_zones") => show::empty(out, w),
            _ => return Err(syntax_error()),
        }
        Ok(())
    }
}

/// SHOW HELP's detail text, as PgBouncer 1.25 prints it.
const HELP: &str = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\
\tSHOW PEERS|PEER_POOLS\n\
\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n\
\tSHOW DNS_HOSTS|DNS_ZONES\n\
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\
\tSET key = arg\n\
\tRELOAD\n\
\tPAUSE [<db>]\n\
\tRESUME [<db>]\n\
\tDISABLE <db>\n\
\tENABLE <db>\n\
\tRECONNECT [<db>]\n\
\tKILL [<db>]\n\
\tKILL_CLIENT <client_id>\n\
\tSUSPEND\n\
\tSHUTDOWN\n\
\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n\
\tWAIT_CLOSE [<db>]";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_admin_and_stats_users() {
        let mut s = Settings {
            admin_users: "root, boss".into(),
            stats_users: "watcher".into(),
            ..Settings::default()
        };
        assert_eq!(access_for(&s, "boss"), Some(Access::Admin));
        assert_eq!(access_for(&s, "watcher"), Some(Access::Stats));
        assert_eq!(access_for(&s, "app"), None);
        s.auth_type = AuthType::Any;
        assert_eq!(access_for(&s, "app"), Some(Access::Stats));
    }
}
