//! Logging in to a server: StartupMessage, then answering AuthenticationOk / Cleartext / MD5 /
//! SASL SCRAM-SHA-256 / GSSAPI until ReadyForQuery, collecting ParameterStatus and
//! BackendKeyData on the way.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::md5::{md5_hash, md5_salted_response};
use crate::auth::scram::{ScramClient, ScramClientCredentials};
use crate::auth::secret::Secret;
use crate::net::read_message::{WireError, read_message, write_flush};
use crate::protocol::backend::{ErrorFields, parse_error_fields};
use crate::protocol::frontend;
use crate::server::gss_login::{GssLogin, GssLoginError, GssNegotiate};
use crate::server::params::ParamSet;

/// SCRAM keys learned from a client's SCRAM login (PgBouncer's "SCRAM pass-through").
#[derive(Clone, Copy)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// What the login needs to know: who, where, and with which secrets.
pub struct LoginRequest<'a> {
    pub user: &'a str,
    pub database: &'a str,
    /// Extra startup parameters (client_encoding, DateStyle, TimeZone, application_name).
    pub extra_params: &'a [(String, String)],
    /// The password or hash for `user`, from `[databases]` or users.txt.
    pub secret: Option<&'a Secret>,
    /// Pass-through keys, when the client logged in with SCRAM against a stored SCRAM secret.
    pub scram_keys: Option<ScramKeys>,
    pub gss: GssLogin<'a>,
}

/// What a successful login leaves behind.
pub struct LoginOutcome {
    pub params: ParamSet,
    pub pid: i32,
    pub key: Vec<u8>,
    /// Whether GSSAPI authenticated this session (by token exchange or GSS encryption).
    pub gss_authenticated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{}", .0.message)]
    Server(ErrorFields),
    /// The server asked for something we cannot answer with what we have.
    #[error("{0}")]
    Auth(String),
    #[error(transparent)]
    Gss(#[from] GssLoginError),
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> Self {
        LoginError::Wire(WireError::Io(e))
    }
}

/// Runs the whole login on `stream`. `rbuf` keeps whatever the server sent after
/// ReadyForQuery (normally nothing).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    req: LoginRequest<'_>,
) -> Result<LoginOutcome, LoginError> {
    let mut params: Vec<(&str, &str)> = vec![("user", req.user), ("database", req.database)];
    params.extend(
        req.extra_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut out = BytesMut::with_capacity(256);
    frontend::startup_message(&mut out, &params);
    write_flush(stream, &out).await?;

    let mut outcome = LoginOutcome {
        params: ParamSet::new(),
        pid: 0,
        key: Vec::new(),
        gss_authenticated: req.gss.already_encrypted(),
    };
    let mut scram: Option<ScramClient> = None;
    let mut gss_session = None;
    loop {
        let mut raw = read_message(stream, rbuf).await?;
        if raw.first() == Some(&b'E') {
            return Err(LoginError::Server(error_fields_of(&raw)));
        }
        let msg = Message::parse(&mut raw)
            .map_err(|e| WireError::Protocol(e.to_string()))?
            .ok_or_else(|| WireError::Protocol("truncated message".into()))?;
        out.clear();
        match msg {
            Message::AuthenticationOk => {}
            Message::AuthenticationCleartextPassword => {
                refuse_password_if_gss_required(&req)?;
                let Some(Secret::Plain(pw)) = req.secret else {
                    return Err(LoginError::Auth(no_password_text(&req, "plain-text")));
                };
                frontend::password_message(&mut out, pw.as_bytes());
            }
            Message::AuthenticationMd5Password(body) => {
                refuse_password_if_gss_required(&req)?;
                let hash = match req.secret {
                    Some(Secret::Plain(pw)) => md5_hash(req.user, pw),
                    Some(Secret::Md5(h)) => h.clone(),
                    _ => return Err(LoginError::Auth(no_password_text(&req, "MD5"))),
                };
                let resp = md5_salted_response(&hash, body.salt());
                frontend::password_message(&mut out, resp.as_bytes());
            }
            Message::AuthenticationSasl(body) => {
                refuse_password_if_gss_required(&req)?;
                if !sasl_offers_scram(&body) {
                    return Err(LoginError::Auth(
                        "server offered no supported SASL mechanism".into(),
                    ));
                }
                let creds = scram_credentials(&req)?;
                let mut client = ScramClient::new(creds);
                let first = client.client_first();
                frontend::sasl_initial_response(&mut out, "SCRAM-SHA-256", &first);
                scram = Some(client);
            }
            Message::AuthenticationSaslContinue(body) => {
                let Some(client) = scram.take() else {
                    return Err(WireError::Protocol("unexpected SASLContinue".into()).into());
                };
                let data = body.data().to_vec();
                // PBKDF2 with a plaintext password costs milliseconds: keep it off the workers.
                let (client, reply) = tokio::task::spawn_blocking(move || {
                    let mut client = client;
                    let reply = client.handle_server_first(&data);
                    (client, reply)
                })
                .await
                .map_err(|e| LoginError::Auth(format!("SCRAM worker failed: {e}")))?;
                let reply = reply
                    .map_err(|e| LoginError::Auth(format!("SCRAM authentication failed: {e}")))?;
                frontend::sasl_response(&mut out, &reply);
                scram = Some(client);
            }
            Message::AuthenticationSaslFinal(body) => {
                let Some(client) = scram.as_ref() else {
                    return Err(WireError::Protocol("unexpected SASLFinal".into()).into());
                };
                client
                    .verify_server_final(body.data())
                    .map_err(|e| LoginError::Auth(format!("SCRAM authentication failed: {e}")))?;
            }
            Message::AuthenticationGss => {
                let token = req
                    .gss
                    .first_step(&mut gss_session)
                    .await
                    .map_err(LoginError::Gss)?;
                if let Some(token) = token {
                    frontend::gss_response(&mut out, &token);
                }
            }
            Message::AuthenticationGssContinue(body) => {
                let token = req
                    .gss
                    .next_step(&mut gss_session, body.data())
                    .await
                    .map_err(LoginError::Gss)?;
                if let Some(token) = token {
                    frontend::gss_response(&mut out, &token);
                }
            }
            Message::AuthenticationSspi
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential => {
                return Err(LoginError::Auth(
                    "unsupported authentication method requested by server".into(),
                ));
            }
            Message::ParameterStatus(body) => {
                let name = body
                    .name()
                    .map_err(|e| WireError::Protocol(e.to_string()))?;
                let value = body
                    .value()
                    .map_err(|e| WireError::Protocol(e.to_string()))?;
                outcome.params.set(name, value);
            }
            Message::BackendKeyData(body) => {
                outcome.pid = body.process_id();
                outcome.key = body.secret_key().to_be_bytes().to_vec();
            }
            Message::NoticeResponse(_) => {}
            Message::ReadyForQuery(_) => {
                if let Some(gss) = gss_session.as_ref() {
                    if !req.gss.is_complete(gss) {
                        return Err(GssLoginError::Incomplete.into());
                    }
                    outcome.gss_authenticated = true;
                }
                if req.gss.negotiate == GssNegotiate::Require && !outcome.gss_authenticated {
                    return Err(GssLoginError::NotUsed.into());
                }
                return Ok(outcome);
            }
            _ => return Err(WireError::Protocol("unexpected message during login".into()).into()),
        }
        if !out.is_empty() {
            write_flush(stream, &out).await?;
        }
    }
}

fn error_fields_of(raw: &[u8]) -> ErrorFields {
    parse_error_fields(raw).unwrap_or_else(|_| ErrorFields {
        severity: "FATAL".into(),
        code: "08P01".into(),
        message: "malformed ErrorResponse from server".into(),
        detail: None,
        hint: None,
    })
}

fn sasl_offers_scram(body: &postgres_protocol::message::backend::AuthenticationSaslBody) -> bool {
    body.mechanisms()
        .any(|m| Ok(m == "SCRAM-SHA-256"))
        .unwrap_or(false)
}

fn refuse_password_if_gss_required(req: &LoginRequest<'_>) -> Result<(), LoginError> {
    if req.gss.negotiate == GssNegotiate::Require {
        return Err(GssLoginError::PasswordRefused.into());
    }
    Ok(())
}

fn scram_credentials(req: &LoginRequest<'_>) -> Result<ScramClientCredentials, LoginError> {
    match (req.secret, req.scram_keys) {
        (Some(Secret::Plain(pw)), _) => Ok(ScramClientCredentials::Password(pw.clone())),
        (Some(Secret::Scram(_)), Some(keys)) => Ok(ScramClientCredentials::Keys {
            client_key: keys.client_key,
            server_key: keys.server_key,
        }),
        (Some(Secret::Scram(_)), None) => Err(LoginError::Auth(
            "password is SCRAM secret but client authentication did not provide SCRAM keys".into(),
        )),
        _ => Err(LoginError::Auth(no_password_text(req, "SCRAM"))),
    }
}

fn no_password_text(req: &LoginRequest<'_>, method: &str) -> String {
    match req.secret {
        None | Some(Secret::Empty) => format!(
            "cannot do {method} authentication: no password available for user \"{}\"",
            req.user
        ),
        Some(s) => format!(
            "cannot do {method} authentication: wrong password type ({})",
            s.kind()
        ),
    }
}
