//! A replication (walsender) client, as PgBouncer 1.23+ serves it: a server of its own is
//! logged in before the welcome with `replication=...`, the client's tracked parameters and
//! its `options` verbatim, the two are relayed byte for byte (CopyBoth streams, BASE_BACKUP,
//! SQL on logical connections) until either leaves, and the server is then closed, never
//! reused. Session pooling applies whatever the pool's mode.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::client::error::ClientError;
use crate::client::link::session::checkout_error;
use crate::client::startup::StartupRequest;
use crate::client::welcome::finish_welcome;
use crate::net::relay::{Dir, Pump, RelayEnd, Verdict, Watcher, relay};
use crate::net::stream::ClientStream;
use crate::pool::Pool;
use crate::pool::cancel::CancelShow;
use crate::pool::clients::ClientEntry;
use crate::protocol::backend;
use crate::protocol::pooler_errors::SERVER_CONN_CRASHED;
use crate::shared::Shared;

/// PgBouncer's reason for a client that left by itself.
const CLIENT_CLOSE: &str = "client close request";

/// The server's extra StartupMessage parameters: the database's own (`client_encoding`...)
/// unless the client set the same name, the client's tracked parameters, `replication`, and
/// the client's `options` as it sent them.
pub(crate) fn startup_params(
    base: &[(String, String)],
    req: &StartupRequest,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| req.params.get(k).is_none())
        .cloned()
        .collect();
    out.extend(
        req.params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    if let Some(v) = req.replication.startup_value() {
        out.push(("replication".to_string(), v.to_string()));
    }
    if let Some(o) = &req.replication_options {
        out.push(("options".to_string(), o.clone()));
    }
    out
}

/// Logs in the client's server, welcomes the client with that server's parameters and
/// relays until one side leaves; returns why the client's connection closes.
pub(crate) async fn welcome_and_run(
    app: &Arc<Shared>,
    pool: Arc<Pool>,
    stream: &mut ClientStream,
    rbuf: BytesMut,
    req: StartupRequest,
    entry: Arc<ClientEntry>,
) -> Result<String, ClientError> {
    entry.start_waiting();
    let params = startup_params(&pool.def().extra_params, &req);
    let upstream = app.upstream();
    let checkout = tokio::select! {
        r = pool.checkout_replication(&upstream, &params) => r,
        reason = entry.killed() => return Err(reason),
    };
    let mut guard = match checkout {
        Ok(g) => g,
        // the client's "closing because" line is logged by `client::serve` with every login
        // error (the server's by `pool/replication.rs`)
        Err(e) => return Err(checkout_error(e)),
    };
    guard.link_client(entry.id);
    entry.linked(guard.server_id());
    let registration = app
        .cancels
        .register(crate::pool::peers::own_peer_id(&app.config().settings));
    let mut out = BytesMut::with_capacity(512);
    backend::authentication_ok(&mut out);
    for (name, value) in guard.conn().params.iter() {
        backend::parameter_status(&mut out, name, value);
    }
    finish_welcome(stream, out, registration.key).await?;
    let show = CancelShow {
        pool: pool.clone(),
        server: guard.server_entry(),
    };
    registration
        .slot
        .link(guard.conn().cancel.clone(), Some(show));
    let max_packet_size = app.config().settings.max_packet_size as usize;
    let conn = guard.conn();
    let mut c2s = Pump::new(Dir::ToServer, max_packet_size).with_pending(rbuf);
    let mut s2c =
        Pump::new(Dir::ToClient, max_packet_size).with_pending(std::mem::take(&mut conn.rbuf));
    let mut watcher = PassThrough;
    let end = tokio::select! {
        end = relay(&mut *stream, &mut conn.stream, &mut c2s, &mut s2c, &mut watcher) => end,
        reason = entry.killed() => return Err(reason),
    };
    pool.stats
        .record_bytes(c2s.forwarded_bytes, s2c.forwarded_bytes);
    // the guard is dropped, not released: a walsender is never handed to anyone else
    match end {
        RelayEnd::ClientStop | RelayEnd::ClientEof | RelayEnd::ClientError(_) => {
            Ok(CLIENT_CLOSE.to_string())
        }
        RelayEnd::ClientProtocol(e) => Err(crate::client::error::protocol(e.to_string())),
        RelayEnd::ServerStop
        | RelayEnd::ServerEof
        | RelayEnd::ServerError(_)
        | RelayEnd::ServerProtocol(_) => {
            tracing::info!(server = conn.id, reason = ?end, "server connection ended");
            Err(SERVER_CONN_CRASHED)
        }
    }
}

/// Forwards everything; the client's Terminate is passed on (so the walsender exits at once)
/// and ends the relay.
struct PassThrough;

impl Watcher for PassThrough {
    fn wants_whole(&self, dir: Dir, tag: u8) -> bool {
        dir == Dir::ToServer && tag == b'X'
    }

    fn on_message(&mut self, _dir: Dir, _tag: u8, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict {
        inject.push(Bytes::copy_from_slice(msg));
        Verdict::DropAndStop
    }

    fn on_tag(&mut self, _dir: Dir, _tag: u8, _inject: &mut Vec<Bytes>) {}
}
