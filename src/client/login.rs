//! Client authentication against users.txt for each `auth_type` (trust, any, plain, md5,
//! scram-sha-256), with mock challenges for unknown users so existence does not leak.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::md5::verify_md5_response;
use crate::auth::password::verify_cleartext_password;
use crate::auth::scram::{ScramServer, ScramServerOutcome};
use crate::auth::secret::{ScramSecret, Secret};
use crate::client::error::{ClientError, fatal_with, protocol};
use crate::config::AuthType;
use crate::net::read_message::{read_message_limited, write_flush};
use crate::protocol::pooler_errors::{
    CLIENT_UNEXPECTED_EOF, EMPTY_PASSWORD, INVALID_SASL_MECHANISM, PASSWORD_AUTH_FAILED,
    SASL_AUTH_FAILED, TRUST_AUTH_FAILED,
};
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
    tracing::info!(user, "password authentication failed");
    PASSWORD_AUTH_FAILED
}

fn sasl_failed(user: &str) -> ClientError {
    tracing::info!(user, "SCRAM authentication failed");
    SASL_AUTH_FAILED
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
            None => Err(TRUST_AUTH_FAILED),
        },
        AuthType::Plain => {
            let password = ask_password(stream, rbuf, AskFor::Cleartext).await?;
            let ok = match secret {
                Some(s) => {
                    let (s, user) = (s.clone(), user.to_string());
                    tokio::task::spawn_blocking(move || {
                        verify_cleartext_password(&s, &user, &password)
                    })
                    .await
                    .unwrap_or(false)
                }
                None => false,
            };
            if ok { Ok(none) } else { Err(auth_failed(user)) }
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
                Some(Secret::Plain(pw)) => (
                    Some(ad_hoc_secret(pw.clone(), scram_iterations).await?),
                    false,
                ),
                _ => (None, false),
            };
            scram(stream, rbuf, user, verifier, stored).await
        }
        other => Err(fatal_with(
            "28000",
            format!("auth_type {other:?} is not supported by krbouncer yet"),
        )),
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
        AskFor::Cleartext => backend::authentication_cleartext_password(&mut out),
        AskFor::Md5(salt) => backend::authentication_md5_password(&mut out, salt),
    }
    write_flush(stream, &out).await.map_err(|_| eof())?;
    let msg = read_auth_message(stream, rbuf).await?;
    let pw = frontend::parse_password_message(&msg).map_err(|e| protocol(e.to_string()))?;
    if pw.is_empty() {
        return Err(EMPTY_PASSWORD);
    }
    Ok(pw.to_vec())
}

async fn read_auth_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
) -> Result<BytesMut, ClientError> {
    let msg = read_message_limited(stream, rbuf, MAX_AUTH_MESSAGE)
        .await
        .map_err(|e| match e {
            crate::net::read_message::WireError::Protocol(p) => protocol(p.to_string()),
            _ => eof(),
        })?;
    if msg.first() != Some(&b'p') {
        return Err(protocol("expected a password message"));
    }
    Ok(msg)
}

fn eof() -> ClientError {
    CLIENT_UNEXPECTED_EOF
}

/// A SCRAM verifier for a plaintext users.txt password, as PgBouncer makes "ad hoc".
async fn ad_hoc_secret(password: String, iterations: u32) -> Result<ScramSecret, ClientError> {
    tokio::task::spawn_blocking(move || ScramSecret::ad_hoc(&password, iterations.max(1)))
        .await
        .map_err(|_| fatal_with("58000", "SCRAM secret computation failed"))
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
        None => ScramServer::mock(user, mock_nonce(), crate::auth::scram::DEFAULT_ITERATIONS),
    };
    let mut out = BytesMut::with_capacity(128);
    backend::authentication_sasl(&mut out, &["SCRAM-SHA-256"]);
    write_flush(stream, &out).await.map_err(|_| eof())?;

    let msg = read_auth_message(stream, rbuf).await?;
    let initial =
        frontend::parse_sasl_initial_response(&msg).map_err(|e| protocol(e.to_string()))?;
    if initial.mechanism != "SCRAM-SHA-256" {
        return Err(INVALID_SASL_MECHANISM);
    }
    let server_first = server
        .handle_client_first(initial.data.unwrap_or_default())
        .map_err(|_| sasl_failed(user))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &server_first);
    write_flush(stream, &out).await.map_err(|_| eof())?;

    let msg = read_auth_message(stream, rbuf).await?;
    let data = frontend::parse_sasl_response(&msg).map_err(|e| protocol(e.to_string()))?;
    let ScramServerOutcome {
        server_final,
        client_key,
    } = server
        .handle_client_final(data)
        .map_err(|_| sasl_failed(user))?;
    out.clear();
    backend::authentication_sasl_final(&mut out, &server_final);
    write_flush(stream, &out).await.map_err(|_| eof())?;
    let scram_keys = match (stored, server_key) {
        (true, Some(server_key)) => Some(ScramKeys {
            client_key,
            server_key,
        }),
        _ => None,
    };
    Ok(Authenticated { scram_keys })
}

/// One random nonce per process for mock SCRAM salts: stable per user name, so repeated
/// attempts for an unknown user look like a real user's.
fn mock_nonce() -> &'static [u8] {
    static NONCE: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    NONCE.get_or_init(rand::random)
}
