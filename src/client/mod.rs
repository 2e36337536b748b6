//! One task per client: startup, login, welcome, then forwarding (session pooling).

mod authenticate;
mod cancel_route;
mod credentials;
pub mod encryption;
pub mod error;
pub mod limits;
pub mod link;
pub mod login;
pub mod startup;
mod welcome;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::admin::{AdminSession, access_for};
use crate::client::authenticate::authenticate;
use crate::client::credentials::Target;
use crate::client::encryption::Negotiated;
use crate::client::error::{ClientError, send_error};
use crate::client::startup::{FirstPacket, StartupRequest, read_first_packet};
use crate::client::welcome::{finish_welcome, welcome_and_run};
use crate::config::AuthType;
use crate::config::connstr::ADMIN_DB;
use crate::metrics::LoginFailures;
use crate::net::stream::ClientStream;
use crate::pool::Pool;
use crate::pool::clients::{ClientAddrs, NewClient};
use crate::protocol::backend;
use crate::protocol::pooler_errors::{
    ADMIN_NOT_ALLOWED, BOUNCER_CONFIG_ERROR, CLIENT_UNEXPECTED_EOF, LOGIN_TIMEOUT, MAX_CLIENT_CONN,
    MAX_USER_CLIENT_CONNECTIONS, SERVER_SHUTTING_DOWN, SSL_REQUIRED, database_disabled,
    no_such_database,
};
use crate::protocol::startup::PROTOCOL_3_0;
use crate::shared::Shared;

/// Serves one accepted connection to the end.
pub async fn serve(
    app: Arc<Shared>,
    login_failures: LoginFailures,
    stream: ClientStream,
    peer: String,
) {
    let id = app.next_client_id();
    let span = tracing::info_span!("client", id, addr = %peer, db = tracing::field::Empty, user = tracing::field::Empty);
    async move {
        let connected_at = std::time::Instant::now();
        let _count = app.count_client();
        if let ClientStream::Tcp(s) = &stream {
            // tcp_keepalive & co., as PgBouncer's tune_socket does for every accepted client
            crate::net::sockopt::TcpOptions::from_settings(&app.config().settings).apply(s);
        }
        let mut rbuf = BytesMut::with_capacity(1024);
        let tls = app.client_tls.current();
        let negotiated = tokio::time::timeout_at(
            login_deadline(app.config().settings.client_login_timeout),
            // boxed like every login step: once per connection, and kept out of the task's
            // size, which a client holds for as long as it stays connected
            Box::pin(encryption::negotiate(stream, &mut rbuf, &tls)),
        )
        .await
        .unwrap_or(Negotiated::Failed(LOGIN_TIMEOUT));
        let mut stream = match negotiated {
            Negotiated::Ready(s) => s,
            Negotiated::Refused(mut s, e) => {
                login_failures.record(&e);
                log_closing(&e.message, connected_at);
                send_error(&mut s, &e).await;
                return;
            }
            Negotiated::Failed(reason) => {
                login_failures.record(&reason);
                tracing::info!(reason = %reason.message, "closing before startup");
                return;
            }
        };
        if let Err(e) = serve_inner(&app, &mut stream, rbuf, tls.requires_tls(), id).await {
            // Every error that reaches here ended a login (or a KILL): after the welcome the
            // session handles its own errors. PgBouncer's disconnect_client logs the reason,
            // then send_pooler_error logs it again as a warning.
            login_failures.record(&e);
            let settings = &app.config().settings;
            if settings.log_disconnections {
                log_closing(&e.message, connected_at);
            }
            if settings.log_pooler_errors {
                tracing::warn!("pooler error: {}", e.message);
            }
            send_error(&mut stream, &e).await;
        }
        let _ = stream.shutdown().await;
    }
    .instrument(span)
    .await
}

async fn serve_inner(
    app: &Arc<Shared>,
    stream: &mut ClientStream,
    mut rbuf: BytesMut,
    tls_required: bool,
    id: u64,
) -> Result<(), ClientError> {
    let config = app.config();
    let settings = &config.settings;
    let tracked = app.tracked_names(&settings.track_extra_parameters);
    let Some(req) = Box::pin(first_request(app, stream, &mut rbuf, &tracked)).await? else {
        return Ok(());
    };
    let span = tracing::Span::current();
    span.record("db", req.database.as_str());
    span.record("user", req.user.as_str());
    let to_admin = admit(app, stream, &req, tls_required)?;
    negotiate_protocol(stream, &req).await?;
    if to_admin && req.user == "pgbouncer" && same_uid_over_unix(stream) {
        // PgBouncer's admin_pre_login: the process owner over the unix socket needs no password
        let own = crate::admin::Access::Admin;
        return Box::pin(admin_console(app, stream, rbuf, &req, id, own, true)).await;
    }
    let db = config.database_for(&req.database);
    let target = match (&db, to_admin) {
        (_, true) => Target::Admin,
        (Some(db), false) => Target::Database(db),
        (None, false) => Target::Unknown,
    };
    let authenticated =
        Box::pin(authenticate(app, &config, stream, &mut rbuf, &req, target)).await?;
    // As PgBouncer's finish_client_login: the database is checked after authentication, so
    // probing database names needs a valid password.
    if to_admin {
        let Some(access) = access_for(settings, &req.user) else {
            return Err(ADMIN_NOT_ALLOWED);
        };
        return Box::pin(admin_console(app, stream, rbuf, &req, id, access, false)).await;
    }
    let Some(db) = db else {
        return Err(no_such_database(&req.database));
    };
    let pool = pool_for(app, &config, stream, &req, &db)?;
    if !pool.def().forced_user {
        // a forced user logs in with its own secret; the client's only proved who it is
        if let Some(keys) = authenticated.scram_keys {
            pool.set_scram_keys(keys);
        }
        if let Some(secret) = authenticated.fetched_secret {
            pool.set_fetched_secret(secret);
        }
    }
    pool.stats.record_client_login();
    let registration =
        app.client_registry
            .register(new_client(id, &req, stream, Some(pool.clone())));
    limits::check(&config, &app.client_registry, &req.database, &req.user).await?;
    let entry = registration.entry.clone();
    let started = std::time::Instant::now();
    // `req` and `tracked` move into the session; their storage here ends with the login
    // (see `welcome_and_run` on why the task's future size matters)
    let log_disconnections = settings.log_disconnections;
    drop(config);
    let result = if req.replication.is_replication() {
        let run = link::replication::welcome_and_run(app, pool, stream, rbuf, req, entry);
        Box::pin(run).await
    } else {
        welcome_and_run(app, pool, stream, rbuf, req, tracked, entry).await
    };
    if let (true, Ok(reason)) = (log_disconnections, &result) {
        log_closing(reason, started);
    }
    result.map(|_| ())
}

/// The client's StartupMessage, within `client_login_timeout`; a CancelRequest is forwarded
/// here and ends the connection (`None`), as does a client that leaves without a word.
async fn first_request(
    app: &Shared,
    stream: &mut ClientStream,
    rbuf: &mut BytesMut,
    tracked: &[String],
) -> Result<Option<StartupRequest>, ClientError> {
    let config = app.config();
    let settings = &config.settings;
    let first = tokio::time::timeout_at(
        login_deadline(settings.client_login_timeout),
        read_first_packet(
            stream,
            rbuf,
            tracked,
            &settings.ignored_startup_parameters(),
        ),
    )
    .await
    .map_err(|_| LOGIN_TIMEOUT)??;
    match first {
        FirstPacket::Cancel { pid, key } => {
            crate::client::cancel_route::handle(
                &app.cancels,
                &app.peer_cancels,
                &config,
                pid,
                &key,
            )
            .await;
            Ok(None)
        }
        FirstPacket::Startup(req) => Ok(Some(req)),
        FirstPacket::Gone => Ok(None),
    }
}

/// Refusals before authentication: TLS required, `max_client_conn`, shutting down. The admin
/// console is exempt from the last two; returns whether this login is for it.
fn admit(
    app: &Shared,
    stream: &ClientStream,
    req: &StartupRequest,
    tls_required: bool,
) -> Result<bool, ClientError> {
    if tls_required && stream.is_plain_tcp() {
        return Err(SSL_REQUIRED);
    }
    let to_admin = req.database == ADMIN_DB;
    let max_client_conn = app.config().settings.max_client_conn as usize;
    if !to_admin && app.client_count() > max_client_conn {
        return Err(MAX_CLIENT_CONN);
    }
    if !to_admin && app.shutdown.is_stopping() {
        return Err(SERVER_SHUTTING_DOWN);
    }
    Ok(to_admin)
}

/// The pool for an authenticated client: the database must exist and be enabled.
fn pool_for(
    app: &Shared,
    config: &crate::config::Config,
    stream: &ClientStream,
    req: &StartupRequest,
    db: &crate::config::DatabaseDef,
) -> Result<Arc<Pool>, ClientError> {
    let settings = &config.settings;
    if app.pools.db_control(&db.name).is_disabled() {
        return Err(database_disabled(&db.name));
    }
    if settings.auth_type == AuthType::Any && db.user.is_none() {
        return Err(BOUNCER_CONFIG_ERROR);
    }
    if settings.log_connections {
        tracing::info!(
            tls = %stream.tls_description(),
            "login attempt: db={} user={}",
            req.database,
            req.user
        );
    }
    // PgBouncer's register_auto_database line, once per name taken from the `*` entry
    let auto =
        !config.databases.contains_key(&db.name) && app.pools.pools_of_db(&db.name).is_empty();
    let pool = app.pools.get_or_create(config, db, &req.user);
    if auto {
        tracing::info!("registered new auto-database: {}", db.name);
    }
    Ok(pool)
}

/// Whether the peer of a unix-socket connection runs as this process's user.
fn same_uid_over_unix(stream: &ClientStream) -> bool {
    match stream {
        ClientStream::Unix(s) => s
            .peer_cred()
            .is_ok_and(|c| c.uid() == nix::unistd::getuid().as_raw()),
        ClientStream::Tcp(_) | ClientStream::Tls(_) => false,
    }
}

/// Welcomes an admin console user and serves the console until it leaves or is killed.
async fn admin_console(
    app: &Arc<Shared>,
    stream: &mut ClientStream,
    rbuf: BytesMut,
    req: &StartupRequest,
    id: u64,
    access: crate::admin::Access,
    own_user: bool,
) -> Result<(), ClientError> {
    let registration = app
        .client_registry
        .register(new_client(id, req, stream, None));
    let config = app.config();
    // PgBouncer's own-user login (the process owner over the unix socket) has no user whose
    // max_user_client_connections could count it
    match limits::check(&config, &app.client_registry, &req.database, &req.user).await {
        Err(e) if own_user && e == MAX_USER_CLIENT_CONNECTIONS => {}
        other => other?,
    }
    let entry = registration.entry.clone();
    let cancel = app
        .cancels
        .register(crate::pool::peers::own_peer_id(&app.config().settings));
    let mut out = BytesMut::with_capacity(256);
    backend::authentication_ok(&mut out);
    crate::admin::welcome(&mut out);
    finish_welcome(stream, out, cancel.key).await?;
    let session = AdminSession {
        app,
        stream,
        rbuf,
        access,
        entry: entry.clone(),
    };
    let killed = tokio::select! {
        _ = session.run() => None,
        reason = entry.killed() => Some(reason),
    };
    match killed {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// What SHOW CLIENTS shows of a client that just logged in.
fn new_client(
    id: u64,
    req: &StartupRequest,
    stream: &ClientStream,
    pool: Option<Arc<Pool>>,
) -> NewClient {
    NewClient {
        id,
        user: req.user.clone(),
        database: req.database.clone(),
        addrs: ClientAddrs::of(stream),
        application_name: req
            .params
            .get("application_name")
            .unwrap_or_default()
            .to_string(),
        pool,
    }
}

/// PgBouncer's `closing because: <reason> (age=<s>s)`, the line operators grep for.
pub(crate) fn log_closing(reason: &str, since: std::time::Instant) {
    tracing::info!(
        "closing because: {reason} (age={}s)",
        since.elapsed().as_secs()
    );
}

pub(crate) fn login_deadline(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if timeout.is_zero() {
        now + std::time::Duration::from_secs(86400 * 365)
    } else {
        now + timeout
    }
}

/// Clients asking for a newer 3.x minor or sending `_pq_` options get NegotiateProtocolVersion
/// and continue on 3.0.
async fn negotiate_protocol(
    stream: &mut ClientStream,
    req: &StartupRequest,
) -> Result<(), ClientError> {
    if req.minor_version == 0 && req.unsupported_options.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    let names: Vec<&str> = req.unsupported_options.iter().map(String::as_str).collect();
    backend::negotiate_protocol_version(&mut out, PROTOCOL_3_0, &names);
    stream
        .write_all(&out)
        .await
        .map_err(|_| CLIENT_UNEXPECTED_EOF)
}
