//! One task per client: startup, login, welcome, then forwarding (session pooling).

pub mod cancel;
pub mod encryption;
pub mod error;
pub mod limits;
pub mod local;
pub mod login;
pub mod prepared;
pub mod registry;
pub mod requests;
pub mod session;
pub mod startup;
pub mod watch;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use crate::admin::{AdminSession, access_for};
use crate::app::App;
use crate::client::encryption::Negotiated;
use crate::client::error::{ClientError, protocol, send_error};
use crate::client::registry::{ClientAddrs, ClientEntry, NewClient};
use crate::client::session::{Session, SessionLimits, checkout_error};
use crate::client::startup::{FirstPacket, StartupRequest, read_first_packet};
use crate::config::AuthType;
use crate::config::connstr::ADMIN_DB;
use crate::net::stream::ClientStream;
use crate::pool::{Pool, ServerGuard};
use crate::protocol::backend;
use crate::protocol::pooler_errors::{
    ADMIN_NOT_ALLOWED, BOUNCER_CONFIG_ERROR, CERT_AUTH_FAILED, MAX_CLIENT_CONN,
    SERVER_SHUTTING_DOWN, SSL_REQUIRED, database_disabled, no_such_database,
};
use crate::protocol::startup::PROTOCOL_3_0;
use crate::server::params::{ParamSet, tracked_names};

/// Serves one accepted connection to the end.
pub async fn serve(app: Arc<App>, stream: ClientStream, peer: String) {
    let id = app.next_client_id();
    let span = tracing::info_span!("client", id, addr = %peer, db = tracing::field::Empty, user = tracing::field::Empty);
    async move {
        let _count = app.count_client();
        let mut rbuf = BytesMut::with_capacity(1024);
        let tls = app.client_tls.current();
        let negotiated = tokio::time::timeout_at(
            login_deadline(app.config().settings.client_login_timeout),
            encryption::negotiate(stream, &mut rbuf, &tls),
        )
        .await
        .unwrap_or_else(|_| Negotiated::Failed("client_login_timeout".into()));
        let mut stream = match negotiated {
            Negotiated::Ready(s) => s,
            Negotiated::Refused(mut s, e) => {
                app.metrics.login_failures.record(&e);
                tracing::info!(error = %e.message, "pooler error");
                send_error(&mut s, &e).await;
                return;
            }
            Negotiated::Failed(reason) => {
                app.metrics.login_failures.record(&protocol(reason.clone()));
                tracing::info!(%reason, "closing before startup");
                return;
            }
        };
        if let Err(e) = serve_inner(&app, &mut stream, rbuf, tls.requires_tls(), id).await {
            // Every error that reaches here ended a login (or a KILL): after the welcome the
            // session handles its own errors.
            app.metrics.login_failures.record(&e);
            if app.config().settings.log_pooler_errors {
                tracing::info!(error = %e.message, "pooler error");
            }
            send_error(&mut stream, &e).await;
        }
        let _ = stream.shutdown().await;
    }
    .instrument(span)
    .await
}

async fn serve_inner(
    app: &Arc<App>,
    stream: &mut ClientStream,
    mut rbuf: BytesMut,
    tls_required: bool,
    id: u64,
) -> Result<(), ClientError> {
    let config = app.config();
    let settings = &config.settings;
    let tracked = tracked_names(&settings.tracked_extra_parameters());
    let first = tokio::time::timeout_at(
        login_deadline(settings.client_login_timeout),
        read_first_packet(
            stream,
            &mut rbuf,
            &tracked,
            &settings.ignored_startup_parameters(),
        ),
    )
    .await
    .map_err(|_| protocol("client_login_timeout"))??;
    let req = match first {
        FirstPacket::Cancel { pid, key } => {
            app.cancels
                .cancel(pid, &key, settings.server_connect_timeout)
                .await;
            return Ok(());
        }
        FirstPacket::Startup(req) => req,
        FirstPacket::Gone => return Ok(()),
    };
    let span = tracing::Span::current();
    span.record("db", req.database.as_str());
    span.record("user", req.user.as_str());
    if tls_required && stream.is_plain_tcp() {
        return Err(SSL_REQUIRED);
    }
    // the admin console is exempt from max_client_conn and stays open during shutdown
    let to_admin = req.database == ADMIN_DB;
    if !to_admin && app.client_count() > settings.max_client_conn as usize {
        return Err(MAX_CLIENT_CONN);
    }
    if !to_admin && app.shutdown.is_stopping() {
        return Err(SERVER_SHUTTING_DOWN);
    }
    negotiate_protocol(stream, &req).await?;
    if to_admin && req.user == "pgbouncer" && same_uid_over_unix(stream) {
        // PgBouncer's admin_pre_login: the process owner over the unix socket needs no password
        return admin_console(app, stream, rbuf, &req, id, crate::admin::Access::Admin).await;
    }
    let secret = config.auth_file.users.get(&req.user);
    let authenticated = if settings.auth_type == AuthType::Cert {
        cert_login(stream, &req.user)?
    } else {
        tokio::time::timeout_at(
            login_deadline(settings.client_login_timeout),
            login::authenticate(
                stream,
                &mut rbuf,
                settings.auth_type,
                &req.user,
                secret,
                settings.scram_iterations.max(1) as u32,
            ),
        )
        .await
        .map_err(|_| protocol("client_login_timeout"))??
    };
    // As PgBouncer's finish_client_login: the database is checked after authentication, so
    // probing database names needs a valid password.
    if to_admin {
        let Some(access) = access_for(settings, &req.user) else {
            return Err(ADMIN_NOT_ALLOWED);
        };
        return admin_console(app, stream, rbuf, &req, id, access).await;
    }
    let Some(db) = config.database_for(&req.database) else {
        return Err(no_such_database(&req.database));
    };
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
    let pool = app.pools.get_or_create(&config, &db, &req.user);
    if let Some(keys) = authenticated.scram_keys {
        if !pool.def.forced_user {
            pool.set_scram_keys(keys);
        }
    }
    pool.stats.record_client_login();
    let registration =
        app.client_registry
            .register(new_client(id, &req, stream, Some(pool.clone())));
    if let Some(e) = limits::exceeded(&config, &app.client_registry, &req.database, &req.user) {
        return Err(e);
    }
    let entry = registration.entry.clone();
    let started = std::time::Instant::now();
    let result = welcome_and_run(app, pool.clone(), stream, rbuf, req, tracked, entry).await;
    if let (true, Ok(reason)) = (settings.log_disconnections, &result) {
        tracing::info!(
            duration_s = started.elapsed().as_secs_f64(),
            "closing because: {reason}"
        );
    }
    result.map(|_| ())
}

/// `auth_type = cert`: a TLS client certificate (already verified against
/// `client_tls_ca_file` by the handshake) whose subject CN is the user name.
fn cert_login(stream: &ClientStream, user: &str) -> Result<login::Authenticated, ClientError> {
    match stream.peer_common_name() {
        Some(cn) if cn == user => Ok(login::Authenticated { scram_keys: None }),
        cn => {
            tracing::info!(user, certificate_cn = ?cn, "certificate authentication failed");
            Err(CERT_AUTH_FAILED)
        }
    }
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
    app: &Arc<App>,
    stream: &mut ClientStream,
    rbuf: BytesMut,
    req: &StartupRequest,
    id: u64,
    access: crate::admin::Access,
) -> Result<(), ClientError> {
    let registration = app
        .client_registry
        .register(new_client(id, req, stream, None));
    let config = app.config();
    if let Some(e) = limits::exceeded(&config, &app.client_registry, &req.database, &req.user) {
        return Err(e);
    }
    let entry = registration.entry.clone();
    let cancel = app.cancels.register();
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

/// Ends a login: the client's BackendKeyData and ReadyForQuery after what `out` already holds
/// (AuthenticationOk and ParameterStatus), sent in one write.
async fn finish_welcome(
    stream: &mut ClientStream,
    mut out: BytesMut,
    key: crate::client::cancel::ClientKey,
) -> Result<(), ClientError> {
    backend::backend_key_data(&mut out, key.0, &key.1);
    backend::ready_for_query(&mut out, b'I');
    stream
        .write_all(&out)
        .await
        .map_err(|_| protocol("client unexpected eof"))
}

fn login_deadline(timeout: std::time::Duration) -> tokio::time::Instant {
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
        .map_err(|_| protocol("client unexpected eof"))
}

/// Sends AuthenticationOk, the pool's parameters (with the client's own tracked values),
/// the client's BackendKeyData and ReadyForQuery, then forwards.
async fn welcome_and_run(
    app: &Arc<App>,
    pool: Arc<Pool>,
    stream: &mut ClientStream,
    rbuf: BytesMut,
    req: StartupRequest,
    tracked: Vec<String>,
    entry: Arc<ClientEntry>,
) -> Result<String, ClientError> {
    // Until a pool has logged in once it has no parameters to show: log in now, and keep
    // that server for this client (as PgBouncer does, login errors surface at client login).
    let mut linked: Option<ServerGuard> = None;
    let welcome = match pool.welcome() {
        Some(w) => w,
        None => {
            entry.start_waiting();
            let upstream = app.upstream();
            let checkout = tokio::select! {
                r = pool.checkout(&upstream) => r,
                reason = entry.killed() => return Err(reason),
            };
            let mut guard = checkout.map_err(checkout_error)?;
            guard.link_client(entry.id);
            entry.linked(guard.server_id());
            let params = Arc::new(guard.conn().params.clone());
            linked = Some(guard);
            params
        }
    };
    let registration = app.cancels.register();
    let mut out = BytesMut::with_capacity(512);
    backend::authentication_ok(&mut out);
    let mut client_params = ParamSet::new();
    for (name, value) in welcome.iter() {
        let v = req.params.get(name).unwrap_or(value);
        backend::parameter_status(&mut out, name, v);
        if crate::server::params::is_tracked(name, &tracked) {
            client_params.set(name, v);
        }
    }
    for (name, value) in req.params.iter() {
        if welcome.get(name).is_none() {
            backend::parameter_status(&mut out, name, value);
        }
        client_params.set(name, value);
    }
    finish_welcome(stream, out, registration.key).await?;
    let session = Session {
        app,
        pool,
        stream,
        rbuf,
        params: client_params,
        tracked,
        cancel: registration.slot.clone(),
        limits: SessionLimits::resolve(&app.config(), &req.user),
        statements: Default::default(),
        entry: entry.clone(),
    };
    // KILL / KILL_CLIENT: dropping the session drops its server guard, closing the server
    tokio::select! {
        reason = session.run(linked) => Ok(reason),
        reason = entry.killed() => Err(reason),
    }
}
