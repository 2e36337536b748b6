//! A client's authentication as a whole, within `client_login_timeout`: where the secret
//! comes from (`credentials.rs`), which method applies (`auth_type`, or with `auth_type = hba`
//! the first matching `auth_hba_file` rule), then the exchange itself (`login.rs`), the TLS
//! certificate check or the unix-socket peer check, with `auth_ident_file` maps.

use std::sync::Arc;

use bytes::BytesMut;

use crate::auth::secret::Secret;
use crate::client::credentials::{Target, UserSecret, find_secret};
use crate::client::error::ClientError;
use crate::client::login;
use crate::client::startup::StartupRequest;
use crate::config::hba::{HbaMethod, Peer};
use crate::config::ident::IdentMap;
use crate::config::{AuthType, Config};
use crate::net::stream::ClientStream;
use crate::protocol::pooler_errors::{
    CERT_AUTH_FAILED, LOGIN_REJECTED, LOGIN_TIMEOUT, NO_HBA_MATCH, PoolerError, UNIX_PEER_REJECTED,
};
use crate::server::login::ScramKeys;
use crate::shared::Shared;

/// What a successful authentication tells the pool.
pub(crate) struct Authenticated {
    /// Keys for SCRAM pass-through, when the client proved a stored SCRAM secret.
    pub scram_keys: Option<ScramKeys>,
    /// The secret auth_query returned, for the pool's own server logins.
    pub fetched_secret: Option<Secret>,
}

/// How this client must prove who it is.
enum Method<'a> {
    /// A password or SCRAM exchange (or trust / any) per this auth type.
    Exchange(AuthType),
    Cert(Option<&'a IdentMap>),
    Peer(Option<&'a IdentMap>),
    Refused(PoolerError),
}

/// Authenticates the client of `req` for `target`.
pub(crate) async fn authenticate(
    app: &Arc<Shared>,
    config: &Config,
    stream: &mut ClientStream,
    rbuf: &mut BytesMut,
    req: &StartupRequest,
    target: Target<'_>,
) -> Result<Authenticated, ClientError> {
    let settings = &config.settings;
    let deadline = super::login_deadline(settings.client_login_timeout);
    let found = if settings.auth_type == AuthType::Any {
        UserSecret::Unknown
    } else {
        tokio::time::timeout_at(deadline, find_secret(app, config, target, &req.user))
            .await
            .map_err(|_| LOGIN_TIMEOUT)??
    };
    let mut scram_keys = None;
    match method_for(config, stream, req) {
        Method::Refused(e) => return Err(e),
        Method::Cert(map) => cert_login(stream, &req.user, &found, map)?,
        Method::Peer(map) => peer_login(stream, &req.user, &found, map)?,
        Method::Exchange(auth_type) => {
            let done = tokio::time::timeout_at(
                deadline,
                login::authenticate(
                    stream,
                    rbuf,
                    auth_type,
                    &req.user,
                    found.secret(),
                    settings.scram_iterations.max(1) as u32,
                ),
            )
            .await
            .map_err(|_| LOGIN_TIMEOUT)??;
            scram_keys = done.scram_keys;
        }
    }
    Ok(Authenticated {
        scram_keys,
        fetched_secret: match found {
            UserSecret::Fetched(s) => Some(s),
            UserSecret::File(_) | UserSecret::Unknown => None,
        },
    })
}

/// `auth_type`, or the method of the first hba rule matching this connection.
fn method_for<'a>(config: &'a Config, stream: &ClientStream, req: &StartupRequest) -> Method<'a> {
    let auth_type = config.settings.auth_type;
    if auth_type == AuthType::Cert {
        return Method::Cert(None);
    }
    if auth_type != AuthType::Hba {
        return Method::Exchange(auth_type);
    }
    let peer = match stream.peer_ip() {
        Some(ip) => Peer::Tcp {
            ip,
            tls: stream.is_tls(),
        },
        None => Peer::Unix,
    };
    let Some(rule) = config.hba.eval(peer, false, &req.database, &req.user) else {
        return Method::Refused(NO_HBA_MATCH);
    };
    tracing::trace!("HBA Line {} is matched", rule.line);
    match rule.method {
        HbaMethod::Trust => Method::Exchange(AuthType::Trust),
        HbaMethod::Md5 => Method::Exchange(AuthType::Md5),
        HbaMethod::Password => Method::Exchange(AuthType::Plain),
        HbaMethod::ScramSha256 => Method::Exchange(AuthType::ScramSha256),
        HbaMethod::Cert => Method::Cert(rule.ident_map.as_ref()),
        HbaMethod::Peer => Method::Peer(rule.ident_map.as_ref()),
        HbaMethod::Reject => Method::Refused(LOGIN_REJECTED),
        HbaMethod::Ldap => Method::Refused(PoolerError::fatal_text(
            "ldap is not supported by this build".to_string(),
        )),
    }
}

/// `cert`: a TLS client certificate (verified against `client_tls_ca_file` by the handshake)
/// whose subject CN is the user name, or that `map` lets log in as it. The user must be known
/// (users.txt or auth_query), as in PgBouncer.
fn cert_login(
    stream: &ClientStream,
    user: &str,
    found: &UserSecret,
    map: Option<&IdentMap>,
) -> Result<(), ClientError> {
    let cn = stream.peer_common_name();
    let ok = match (&cn, map) {
        (None, _) => {
            tracing::error!("TLS client certificate required");
            false
        }
        _ if matches!(found, UserSecret::Unknown) => false,
        (Some(cn), Some(map)) => {
            let mapped = map.allows(cn, user);
            if !mapped {
                tracing::error!("ident map: {} does not have a match", map.name);
            }
            mapped
        }
        (Some(cn), None) => {
            if cn != user {
                tracing::error!("TLS certificate name mismatch");
            }
            cn == user
        }
    };
    if ok {
        Ok(())
    } else {
        tracing::info!(user, certificate_cn = ?cn, "certificate authentication failed");
        Err(CERT_AUTH_FAILED)
    }
}

/// `peer`: a unix-socket client whose OS user is the user name, or that `map` lets log in as
/// it. The user must be known, as in PgBouncer.
fn peer_login(
    stream: &ClientStream,
    user: &str,
    found: &UserSecret,
    map: Option<&IdentMap>,
) -> Result<(), ClientError> {
    let os_user = stream.peer_uid().and_then(|uid| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    });
    let ok = match (&os_user, map) {
        (None, _) => false,
        _ if matches!(found, UserSecret::Unknown) => false,
        (Some(os_user), Some(map)) => {
            let mapped = map.allows(os_user, user);
            if !mapped {
                tracing::error!("ident map {} cannot be matched", map.name);
            }
            mapped
        }
        (Some(os_user), None) => os_user == user,
    };
    if ok { Ok(()) } else { Err(UNIX_PEER_REJECTED) }
}
