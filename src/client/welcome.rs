//! The welcome that ends a login: AuthenticationOk, the pool's ParameterStatus set (with the
//! client's own tracked values), the client's BackendKeyData and ReadyForQuery, then the
//! linked phase (`client::link`).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::client::error::ClientError;
use crate::client::link::session::{Session, SessionLimits, checkout_error};
use crate::client::startup::StartupRequest;
use crate::net::stream::ClientStream;
use crate::pool::cancel::CancelRegistration;
use crate::pool::clients::ClientEntry;
use crate::pool::{Pool, ServerGuard};
use crate::protocol::backend;
use crate::protocol::pooler_errors::CLIENT_UNEXPECTED_EOF;
use crate::server::params::ParamSet;
use crate::shared::Shared;

/// Ends a login: the client's BackendKeyData and ReadyForQuery after what `out` already holds
/// (AuthenticationOk and ParameterStatus), sent in one write.
pub(super) async fn finish_welcome(
    stream: &mut ClientStream,
    mut out: BytesMut,
    key: crate::pool::cancel::ClientKey,
) -> Result<(), ClientError> {
    backend::backend_key_data(&mut out, key.0, &key.1);
    backend::ready_for_query(&mut out, b'I');
    stream
        .write_all(&out)
        .await
        .map_err(|_| CLIENT_UNEXPECTED_EOF)
}

/// Sends AuthenticationOk, the pool's parameters (with the client's own tracked values),
/// the client's BackendKeyData and ReadyForQuery, then forwards.
pub(super) async fn welcome_and_run(
    app: &Arc<Shared>,
    pool: Arc<Pool>,
    stream: &mut ClientStream,
    rbuf: BytesMut,
    req: StartupRequest,
    tracked: Arc<[String]>,
    entry: Arc<ClientEntry>,
) -> Result<String, ClientError> {
    // The welcome is boxed and its locals end with this block: the task's future is as large
    // as its largest state, and what the session loop does not need would otherwise stay in
    // it (and in every connected client's memory) for the whole connection.
    let (run, _cancel_key) = {
        let welcomed = welcome(app, pool, stream, rbuf, req, tracked, entry.clone());
        let (session, linked, registration) = Box::pin(welcomed).await?;
        (session.run(linked), registration)
    };
    // KILL / KILL_CLIENT: dropping the session drops its server guard, closing the server
    tokio::select! {
        reason = run => Ok(reason),
        reason = entry.killed() => Err(reason),
    }
}

/// The welcome proper; returns the session, the server it logged in with (if the pool had
/// none yet) and the client's cancel key registration, held until the client leaves.
async fn welcome<'a>(
    app: &'a Arc<Shared>,
    pool: Arc<Pool>,
    stream: &'a mut ClientStream,
    rbuf: BytesMut,
    req: StartupRequest,
    tracked: Arc<[String]>,
    entry: Arc<ClientEntry>,
) -> Result<(Session<'a>, Option<ServerGuard>, CancelRegistration<'a>), ClientError> {
    // Until a pool has logged in once it has no parameters to show: log in now, and keep
    // that server for this client (as PgBouncer does, login errors surface at client login).
    let mut linked: Option<ServerGuard> = None;
    let welcome = match pool.welcome() {
        Some(w) => w,
        None => {
            entry.start_waiting();
            let upstream = app.upstream();
            let checkout = tokio::select! {
                r = Box::pin(pool.checkout(&upstream)) => r,
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
    let registration = app
        .cancels
        .register(crate::pool::peers::own_peer_id(&app.config().settings));
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
    client_params.shrink_to_fit();
    finish_welcome(stream, out, registration.key).await?;
    let session = Session {
        app,
        def: pool.def_snapshot(),
        pool,
        stream,
        rbuf,
        params: client_params,
        tracked,
        cancel: registration.slot.clone(),
        limits: SessionLimits::resolve(&app.config(), &req.user),
        statements: Default::default(),
        entry,
    };
    Ok((session, linked, registration))
}
