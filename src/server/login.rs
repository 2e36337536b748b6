//! Logging in to a server: StartupMessage, then answering AuthenticationOk / Cleartext / MD5 /
//! SASL SCRAM-SHA-256 / GSSAPI until ReadyForQuery, collecting ParameterStatus and
//! BackendKeyData on the way.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::gss::GssSession;
use crate::auth::md5::{md5_hash, md5_salted_response};
use crate::auth::scram::{ScramClient, ScramClientCredentials, ScramError};
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
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Gss(#[from] GssLoginError),
}

/// Why the pooler could not answer the server's authentication request.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unsupported authentication method requested by server")]
    UnsupportedMethod,
    #[error("server offered no supported SASL mechanism")]
    NoSaslMechanism,
    #[error("cannot do {method} authentication: no password available for user \"{user}\"")]
    NoPassword { method: &'static str, user: String },
    #[error("cannot do {method} authentication: wrong password type ({secret_kind})")]
    WrongSecretType {
        method: &'static str,
        secret_kind: &'static str,
    },
    #[error(
        "cannot do SCRAM authentication: password is SCRAM secret but client authentication did not provide SCRAM keys"
    )]
    NoScramKeys,
    /// The blocking task computing the SCRAM proof panicked or was cancelled.
    #[error("SCRAM worker failed: {0}")]
    ScramWorker(#[source] tokio::task::JoinError),
    #[error("SCRAM authentication failed: {0}")]
    Scram(#[source] ScramError),
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

    let mut login = Login {
        outcome: LoginOutcome {
            params: ParamSet::new(),
            pid: 0,
            key: Vec::new(),
            gss_authenticated: req.gss.already_encrypted(),
        },
        req,
        scram: None,
        gss_session: None,
    };
    loop {
        let mut raw = read_message(stream, rbuf).await?;
        if raw.first() == Some(&b'E') {
            return Err(LoginError::Server(error_fields_of(&raw)));
        }
        let msg = Message::parse(&mut raw)
            .map_err(WireError::Decode)?
            .ok_or(WireError::Truncated)?;
        out.clear();
        if login.answer(msg, &mut out).await? {
            return Ok(login.outcome);
        }
        if !out.is_empty() {
            write_flush(stream, &out).await?;
        }
    }
}

/// One login in progress: what it needs and what it has learned so far.
struct Login<'a> {
    req: LoginRequest<'a>,
    outcome: LoginOutcome,
    scram: Option<ScramClient>,
    gss_session: Option<GssSession>,
}

impl Login<'_> {
    /// Handles one server message, appending the answer (if any) to `out`; true at
    /// ReadyForQuery, when the login is done.
    async fn answer(&mut self, msg: Message, out: &mut BytesMut) -> Result<bool, LoginError> {
        match msg {
            Message::AuthenticationOk | Message::NoticeResponse(_) => {}
            Message::AuthenticationCleartextPassword => self.cleartext(out)?,
            Message::AuthenticationMd5Password(body) => self.md5(body.salt(), out)?,
            Message::AuthenticationSasl(body) => self.sasl_start(&body, out)?,
            Message::AuthenticationSaslContinue(body) => {
                self.sasl_continue(body.data(), out).await?
            }
            Message::AuthenticationSaslFinal(body) => self.sasl_final(body.data())?,
            Message::AuthenticationGss => {
                let token = self.req.gss.first_step(&mut self.gss_session).await?;
                gss_answer(token, out);
            }
            Message::AuthenticationGssContinue(body) => {
                let token = self
                    .req
                    .gss
                    .next_step(&mut self.gss_session, body.data())
                    .await?;
                gss_answer(token, out);
            }
            Message::AuthenticationSspi
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential => {
                return Err(AuthError::UnsupportedMethod.into());
            }
            Message::ParameterStatus(body) => {
                let name = body.name().map_err(WireError::Decode)?;
                let value = body.value().map_err(WireError::Decode)?;
                self.outcome.params.set(name, value);
            }
            Message::BackendKeyData(body) => {
                self.outcome.pid = body.process_id();
                self.outcome.key = body.secret_key().to_be_bytes().to_vec();
            }
            Message::ReadyForQuery(_) => {
                self.ready()?;
                return Ok(true);
            }
            _ => return Err(WireError::Unexpected("message during login").into()),
        }
        Ok(false)
    }

    fn cleartext(&self, out: &mut BytesMut) -> Result<(), LoginError> {
        refuse_password_if_gss_required(&self.req)?;
        let Some(Secret::Plain(pw)) = self.req.secret else {
            return Err(no_password(&self.req, "plain-text").into());
        };
        frontend::password_message(out, pw.as_bytes());
        Ok(())
    }

    fn md5(&self, salt: [u8; 4], out: &mut BytesMut) -> Result<(), LoginError> {
        refuse_password_if_gss_required(&self.req)?;
        let hash = match self.req.secret {
            Some(Secret::Plain(pw)) => md5_hash(self.req.user, pw),
            Some(Secret::Md5(h)) => h.clone(),
            _ => return Err(no_password(&self.req, "MD5").into()),
        };
        let resp = md5_salted_response(&hash, salt);
        frontend::password_message(out, resp.as_bytes());
        Ok(())
    }

    fn sasl_start(
        &mut self,
        body: &postgres_protocol::message::backend::AuthenticationSaslBody,
        out: &mut BytesMut,
    ) -> Result<(), LoginError> {
        refuse_password_if_gss_required(&self.req)?;
        if !sasl_offers_scram(body) {
            return Err(AuthError::NoSaslMechanism.into());
        }
        let creds = scram_credentials(&self.req)?;
        let mut client = ScramClient::new(creds);
        let first = client.client_first();
        frontend::sasl_initial_response(out, "SCRAM-SHA-256", &first);
        self.scram = Some(client);
        Ok(())
    }

    async fn sasl_continue(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), LoginError> {
        let Some(client) = self.scram.take() else {
            return Err(WireError::Unexpected("SASLContinue").into());
        };
        let data = data.to_vec();
        // PBKDF2 with a plaintext password costs milliseconds: keep it off the workers.
        let (client, reply) = tokio::task::spawn_blocking(move || {
            let mut client = client;
            let reply = client.handle_server_first(&data);
            (client, reply)
        })
        .await
        .map_err(AuthError::ScramWorker)?;
        let reply = reply.map_err(AuthError::Scram)?;
        frontend::sasl_response(out, &reply);
        self.scram = Some(client);
        Ok(())
    }

    fn sasl_final(&self, data: &[u8]) -> Result<(), LoginError> {
        let Some(client) = self.scram.as_ref() else {
            return Err(WireError::Unexpected("SASLFinal").into());
        };
        client
            .verify_server_final(data)
            .map_err(|e| AuthError::Scram(e).into())
    }

    /// ReadyForQuery: GSSAPI, when used or required, must have finished.
    fn ready(&mut self) -> Result<(), LoginError> {
        if let Some(gss) = self.gss_session.as_ref() {
            if !self.req.gss.is_complete(gss) {
                return Err(GssLoginError::Incomplete.into());
            }
            self.outcome.gss_authenticated = true;
        }
        if self.req.gss.negotiate == GssNegotiate::Require && !self.outcome.gss_authenticated {
            return Err(GssLoginError::NotUsed.into());
        }
        Ok(())
    }
}

fn gss_answer(token: Option<Vec<u8>>, out: &mut BytesMut) {
    if let Some(token) = token {
        frontend::gss_response(out, &token);
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
        (Some(Secret::Scram(_)), None) => Err(AuthError::NoScramKeys.into()),
        _ => Err(no_password(req, "SCRAM").into()),
    }
}

/// The secret for `req.user` cannot answer a `method` request: none, or the wrong type.
fn no_password(req: &LoginRequest<'_>, method: &'static str) -> AuthError {
    match req.secret {
        None | Some(Secret::Empty) => AuthError::NoPassword {
            method,
            user: req.user.to_string(),
        },
        Some(s) => AuthError::WrongSecretType {
            method,
            secret_kind: s.kind(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;
    use crate::auth::gss::GssRuntime;
    use crate::protocol::backend::{self, Severity};

    /// Reads the untagged StartupMessage, then one tagged message per `expect_replies`.
    async fn read_startup(s: &mut DuplexStream) -> Vec<u8> {
        let len = s.read_u32().await.expect("startup length") as usize;
        let mut rest = vec![0u8; len - 4];
        s.read_exact(&mut rest).await.expect("startup body");
        rest
    }

    async fn read_tagged(s: &mut DuplexStream) -> (u8, Vec<u8>) {
        let tag = s.read_u8().await.expect("tag");
        let len = s.read_u32().await.expect("length") as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.expect("body");
        (tag, body)
    }

    fn welcome() -> BytesMut {
        let mut b = BytesMut::new();
        backend::authentication_ok(&mut b);
        backend::parameter_status(&mut b, "server_version", "15.8");
        backend::backend_key_data(&mut b, 42, &[0, 0, 0, 7]);
        backend::ready_for_query(&mut b, b'I');
        b
    }

    async fn run_login(
        secret: Option<&Secret>,
        negotiate: GssNegotiate,
        server: impl FnOnce(DuplexStream) -> tokio::task::JoinHandle<()>,
    ) -> Result<LoginOutcome, LoginError> {
        let (mut client, server_end) = duplex(4096);
        let task = server(server_end);
        let rt = GssRuntime::new(1);
        let req = LoginRequest {
            user: "u",
            database: "db",
            extra_params: &[],
            secret,
            scram_keys: None,
            gss: GssLogin {
                negotiate,
                target: None,
                runtime: &rt,
                deadline: Duration::from_secs(5),
                encrypted: false,
            },
        };
        let mut rbuf = BytesMut::new();
        let r = login(&mut client, &mut rbuf, req).await;
        task.await.expect("server task");
        r
    }

    /// A login against a server that answers the StartupMessage with `reply`; its error.
    async fn refused_by(reply: BytesMut, negotiate: GssNegotiate) -> LoginError {
        run_login(None, negotiate, move |mut s| {
            tokio::spawn(async move {
                read_startup(&mut s).await;
                s.write_all(&reply).await.expect("reply");
            })
        })
        .await
        .err()
        .expect("the login fails")
    }

    #[tokio::test]
    async fn trust_login_collects_parameters_and_key() {
        let out = run_login(None, GssNegotiate::Disable, |mut s| {
            tokio::spawn(async move {
                let startup = read_startup(&mut s).await;
                assert!(startup.windows(5).any(|w| w == b"user\0"));
                s.write_all(&welcome()).await.expect("welcome");
            })
        })
        .await
        .expect("login");
        assert_eq!(out.params.get("server_version"), Some("15.8"));
        assert_eq!((out.pid, out.key.as_slice()), (42, &[0u8, 0, 0, 7][..]));
        assert!(!out.gss_authenticated);
    }

    #[tokio::test]
    async fn md5_is_answered_with_the_salted_hash() {
        let secret = Secret::Plain("pw".into());
        let out = run_login(Some(&secret), GssNegotiate::Disable, |mut s| {
            tokio::spawn(async move {
                read_startup(&mut s).await;
                let mut b = BytesMut::new();
                backend::authentication_md5_password(&mut b, [1, 2, 3, 4]);
                s.write_all(&b).await.expect("md5 request");
                let (tag, body) = read_tagged(&mut s).await;
                let want = md5_salted_response(&md5_hash("u", "pw"), [1, 2, 3, 4]);
                assert_eq!(tag, b'p');
                assert_eq!(body.strip_suffix(&[0]), Some(want.as_bytes()));
                s.write_all(&welcome()).await.expect("welcome");
            })
        })
        .await;
        assert!(out.is_ok(), "{:?}", out.err());
    }

    #[tokio::test]
    async fn the_servers_error_is_returned_with_its_code() {
        let mut b = BytesMut::new();
        backend::error_response(&mut b, Severity::Fatal, "28P01", "bad password", None, None);
        let e = refused_by(b, GssNegotiate::Disable).await;
        match e {
            LoginError::Server(f) => assert_eq!(
                (f.code.as_str(), f.message.as_str()),
                ("28P01", "bad password")
            ),
            other => panic!("expected the server's error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_password_request_without_a_password_is_refused() {
        let mut b = BytesMut::new();
        backend::authentication_cleartext_password(&mut b);
        let e = refused_by(b, GssNegotiate::Disable).await;
        assert!(
            e.to_string()
                .contains("no password available for user \"u\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn gss_required_but_not_used_fails_at_ready_for_query() {
        let b = welcome();
        let e = refused_by(b, GssNegotiate::Require).await;
        assert!(
            matches!(e, LoginError::Gss(GssLoginError::NotUsed)),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_an_error_not_a_panic() {
        let b = BytesMut::from(&[b'R', 0, 0][..]);
        let e = refused_by(b, GssNegotiate::Disable).await;
        assert!(matches!(e, LoginError::Wire(_)), "{e:?}");
    }
}
