//! A client's authentication as a whole, within `client_login_timeout`: which method applies
//! (`auth_type`), where the secret comes from (`credentials.rs`), then the exchange itself
//! (`login.rs`) or the TLS certificate check.

use std::sync::Arc;

use bytes::BytesMut;

use crate::auth::secret::Secret;
use crate::client::credentials::{Target, UserSecret, find_secret};
use crate::client::error::ClientError;
use crate::client::login;
use crate::client::startup::StartupRequest;
use crate::config::{AuthType, Config};
use crate::net::stream::ClientStream;
use crate::protocol::pooler_errors::{CERT_AUTH_FAILED, LOGIN_TIMEOUT};
use crate::server::login::ScramKeys;
use crate::shared::Shared;

/// What a successful authentication tells the pool.
pub(crate) struct Authenticated {
    /// Keys for SCRAM pass-through, when the client proved a stored SCRAM secret.
    pub scram_keys: Option<ScramKeys>,
    /// The secret auth_query returned, for the pool's own server logins.
    pub fetched_secret: Option<Secret>,
}

/// Authenticates the client of `req` for `target` per `auth_type`.
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
    if settings.auth_type == AuthType::Cert {
        cert_login(stream, &req.user)?;
        return Ok(Authenticated {
            scram_keys: None,
            fetched_secret: None,
        });
    }
    let found = if settings.auth_type == AuthType::Any {
        UserSecret::Unknown
    } else {
        tokio::time::timeout_at(deadline, find_secret(app, config, target, &req.user))
            .await
            .map_err(|_| LOGIN_TIMEOUT)??
    };
    let done = tokio::time::timeout_at(
        deadline,
        login::authenticate(
            stream,
            rbuf,
            settings.auth_type,
            &req.user,
            found.secret(),
            settings.scram_iterations.max(1) as u32,
        ),
    )
    .await
    .map_err(|_| LOGIN_TIMEOUT)??;
    Ok(Authenticated {
        scram_keys: done.scram_keys,
        fetched_secret: match found {
            UserSecret::Fetched(s) => Some(s),
            UserSecret::File(_) | UserSecret::Unknown => None,
        },
    })
}

/// `auth_type = cert`: a TLS client certificate (already verified against
/// `client_tls_ca_file` by the handshake) whose subject CN is the user name.
fn cert_login(stream: &ClientStream, user: &str) -> Result<(), ClientError> {
    match stream.peer_common_name() {
        Some(cn) if cn == user => Ok(()),
        cn => {
            tracing::info!(user, certificate_cn = ?cn, "certificate authentication failed");
            Err(CERT_AUTH_FAILED)
        }
    }
}
