//! Client authentication against users.txt for each `auth_type` (trust, any, plain, md5,
//! scram-sha-256), with mock challenges for unknown users so existence does not leak.

use bytes::BytesMut;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::md5::{md5_hash, verify_md5_response};
use crate::auth::scram::{ScramServer, ScramServerOutcome};
use crate::auth::secret::{ScramSecret, Secret};
use crate::client::error::ClientError;
use crate::config::AuthType;
use crate::net::wire::{read_message_limited, write_flush};
use crate::protocol::{backend, frontend};
use crate::server::login::ScramKeys;

/// Largest password or SASL message a client may send during login.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// What a successful login tells the pool.
pub struct Authenticated {
    /// Keys for SCRAM pass-through, when the client proved a stored SCRAM secret.
    pub scram_keys: Option<ScramKeys>,
}

fn auth_failed(user: &str) -> ClientError {
    ClientError::fatal("28P01", format!("password authentication failed for user \"{user}\""))
}

/// Runs the challenge for `auth_type`; `secret` is the user's users.txt entry, if any.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    auth_type: AuthType,
    user: &str,
    secret: Option<&Secret>,
    scram_iterations: u32,
) -> Result<Authenticated, ClientError> {
    let none = Authenticated { scram_keys: None };
    match auth_type {
        AuthType::Any => Ok(none),
        AuthType::Trust => match secret {
            Some(_) => Ok(none),
            None => Err(ClientError::fatal("28000", "\"trust\" authentication failed")),
        },
        AuthType::Plain => {
            let password = ask_password(stream, rbuf, AskFor::Cleartext).await?;
            if check_plain(user, secret, &password).await { Ok(none) } else { Err(auth_failed(user)) }
        }
        AuthType::Md5 => match secret {
            Some(Secret::Scram(s)) => scram(stream, rbuf, user, Some(s.clone()), true).await,
            _ => {
                let salt: [u8; 4] = rand::random();
                let response = ask_password(stream, rbuf, AskFor::Md5(salt)).await?;
                match secret {
                    Some(s) if verify_md5_response(s, user, salt, &response) => Ok(none),
                    _ => Err(auth_failed(user)),
                }
            }
        },
        AuthType::ScramSha256 => {
            let (verifier, stored) = match secret {
                Some(Secret::Scram(s)) => (Some(s.clone()), true),
                Some(Secret::Plain(pw)) => (Some(ad_hoc_secret(pw.clone(), scram_iterations).await?), false),
                _ => (None, false),
            };
            scram(stream, rbuf, user, verifier, stored).await
        }
        other => Err(ClientError::fatal("28000", format!("auth_type {other:?} is not supported by krbouncer yet"))),
    }
}

enum AskFor {
    Cleartext,
    Md5([u8; 4]),
}

async fn ask_password<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    ask: AskFor,
) -> Result<Vec<u8>, ClientError> {
    let mut out = BytesMut::with_capacity(16);
    match ask {
        AskFor::Cleartext => backend::auth_cleartext(&mut out),
        AskFor::Md5(salt) => backend::auth_md5(&mut out, salt),
    }
    write_flush(stream, &out).await.map_err(|_| eof())?;
    let msg = read_auth_message(stream, rbuf).await?;
    let pw = frontend::parse_password_message(&msg).map_err(|e| ClientError::protocol(e.to_string()))?;
    Ok(pw.to_vec())
}

async fn read_auth_message<S: AsyncRead + Unpin>(stream: &mut S, rbuf: &mut BytesMut) -> Result<BytesMut, ClientError> {
    let msg = read_message_limited(stream, rbuf, MAX_AUTH_MESSAGE).await.map_err(|e| match e {
        crate::net::wire::WireError::Protocol(p) => ClientError::protocol(p),
        _ => eof(),
    })?;
    if msg.first() != Some(&b'p') {
        return Err(ClientError::protocol("expected a password message"));
    }
    Ok(msg)
}

fn eof() -> ClientError {
    ClientError::protocol("client unexpected eof")
}

/// Checks a cleartext password against any stored form.
async fn check_plain(user: &str, secret: Option<&Secret>, password: &[u8]) -> bool {
    let Ok(password) = std::str::from_utf8(password) else { return false };
    match secret {
        Some(Secret::Plain(stored)) => stored.as_bytes().ct_eq(password.as_bytes()).into(),
        Some(Secret::Md5(stored)) => stored.as_bytes().ct_eq(md5_hash(user, password).as_bytes()).into(),
        Some(Secret::Scram(stored)) => {
            let stored = stored.clone();
            let password = password.to_string();
            tokio::task::spawn_blocking(move || {
                let derived = ScramSecret::from_password(&password, &stored.salt, stored.iterations);
                let ok: bool = derived.stored_key.ct_eq(&stored.stored_key).into();
                ok && bool::from(derived.server_key.ct_eq(&stored.server_key))
            })
            .await
            .unwrap_or(false)
        }
        Some(Secret::Empty) | None => false,
    }
}

/// A SCRAM verifier for a plaintext users.txt password, as PgBouncer makes "ad hoc".
async fn ad_hoc_secret(password: String, iterations: u32) -> Result<ScramSecret, ClientError> {
    tokio::task::spawn_blocking(move || {
        let salt: [u8; 16] = rand::random();
        ScramSecret::from_password(&password, &salt, iterations.max(1))
    })
    .await
    .map_err(|_| ClientError::fatal("58000", "SCRAM secret computation failed"))
}

/// The SASL SCRAM-SHA-256 exchange. `verifier` None = unknown user: a mock exchange that fails
/// at the end. `stored` = the verifier came from users.txt, so its keys serve pass-through.
async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    user: &str,
    verifier: Option<ScramSecret>,
    stored: bool,
) -> Result<Authenticated, ClientError> {
    let server_key = verifier.as_ref().map(|v| v.server_key);
    let mut server = match verifier {
        Some(v) => ScramServer::new(v),
        None => ScramServer::mock(),
    };
    let mut out = BytesMut::with_capacity(128);
    backend::auth_sasl(&mut out, &["SCRAM-SHA-256"]);
    write_flush(stream, &out).await.map_err(|_| eof())?;

    let msg = read_auth_message(stream, rbuf).await?;
    let (mechanism, data) =
        frontend::parse_sasl_initial_response(&msg).map_err(|e| ClientError::protocol(e.to_string()))?;
    if mechanism != "SCRAM-SHA-256" {
        return Err(ClientError::protocol("client selected an invalid SASL authentication mechanism"));
    }
    let server_first = server.handle_client_first(data).map_err(|_| auth_failed(user))?;
    out.clear();
    backend::auth_sasl_continue(&mut out, &server_first);
    write_flush(stream, &out).await.map_err(|_| eof())?;

    let msg = read_auth_message(stream, rbuf).await?;
    let data = frontend::parse_sasl_response(&msg).map_err(|e| ClientError::protocol(e.to_string()))?;
    let ScramServerOutcome { server_final, client_key } =
        server.handle_client_final(data).map_err(|_| auth_failed(user))?;
    out.clear();
    backend::auth_sasl_final(&mut out, &server_final);
    write_flush(stream, &out).await.map_err(|_| eof())?;
    let scram_keys = match (stored, server_key) {
        (true, Some(server_key)) => Some(ScramKeys { client_key, server_key }),
        _ => None,
    };
    Ok(Authenticated { scram_keys })
}
