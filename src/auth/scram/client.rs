//! SCRAM-SHA-256 client side: the pooler logging in to a server, either with a password or
//! with pass-through keys (ClientKey + ServerKey recovered from a client's SCRAM login).

use subtle::ConstantTimeEq;

use super::keys::{SCRAM_KEY_LEN, b64, client_key, hmac, random_bytes, salted_password};
use super::keys::{server_key, stored_key, xor};
use super::messages::{parse_server_final, parse_server_first, utf8};
use super::{MAX_CLIENT_ITERATIONS, ScramError};

/// Raw client nonce length: 24 base64 characters, like libpq.
const CLIENT_NONCE_LEN: usize = 18;
/// gs2 header "n,," base64-encoded, for client-final's c= attribute.
const GS2_HEADER_B64: &str = "biws";

/// What the pooler knows about the server login's credentials.
#[derive(Clone)]
pub enum ScramClientCredentials {
    Password(String),
    /// Pass-through: valid only when the server's verifier has the same salt and iteration
    /// count as the one the client authenticated against (see `ScramClient::server_params`).
    Keys {
        client_key: [u8; SCRAM_KEY_LEN],
        server_key: [u8; SCRAM_KEY_LEN],
    },
}

impl std::fmt::Debug for ScramClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramClientCredentials::Password(_) => f.write_str("Password(<redacted>)"),
            ScramClientCredentials::Keys { .. } => f.write_str("Keys(<redacted>)"),
        }
    }
}

enum State {
    Initial,
    SentFirst,
    SentFinal {
        server_signature: [u8; SCRAM_KEY_LEN],
    },
    Done,
}

/// One client-side exchange: `client_first`, `handle_server_first`, `verify_server_final`.
pub struct ScramClient {
    creds: ScramClientCredentials,
    nonce: String,
    state: State,
    server_params: Option<(Vec<u8>, u32)>,
}

impl ScramClient {
    pub fn new(creds: ScramClientCredentials) -> ScramClient {
        ScramClient::with_nonce(creds, b64(&random_bytes::<CLIENT_NONCE_LEN>()))
    }

    /// A client with a given nonce (tests use the RFC's).
    pub(super) fn with_nonce(creds: ScramClientCredentials, nonce: String) -> ScramClient {
        ScramClient {
            creds,
            nonce,
            state: State::Initial,
            server_params: None,
        }
    }

    fn client_first_bare(&self) -> String {
        // PostgreSQL ignores the SCRAM user name; libpq sends an empty one.
        format!("n=,r={}", self.nonce)
    }

    /// client-first-message for SASLInitialResponse: "n,,n=,r=<nonce>".
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = State::SentFirst;
        format!("n,,{}", self.client_first_bare()).into_bytes()
    }

    /// The salt and iteration count the server sent, once `handle_server_first` has run. For
    /// pass-through keys the caller compares them with the stored verifier's.
    pub fn server_params(&self) -> Option<(&[u8], u32)> {
        self.server_params
            .as_ref()
            .map(|(salt, iterations)| (salt.as_slice(), *iterations))
    }

    /// Reads server-first-message (AuthenticationSASLContinue data) and returns
    /// client-final-message for SASLResponse. Runs PBKDF2 with a password: CPU-heavy.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done;
        let server_first = utf8(msg)?;
        let parsed = parse_server_first(server_first)?;
        if parsed.nonce.len() <= self.nonce.len() || !parsed.nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let iterations = match u32::try_from(parsed.iterations) {
            Ok(n @ 1..=MAX_CLIENT_ITERATIONS) => n,
            _ => return Err(ScramError::InvalidIterationCount(parsed.iterations)),
        };
        let (client_key, server_key) = match &self.creds {
            ScramClientCredentials::Password(password) => {
                let salted = salted_password(password.as_bytes(), &parsed.salt, iterations);
                (client_key(&salted), server_key(&salted))
            }
            ScramClientCredentials::Keys {
                client_key,
                server_key,
            } => (*client_key, *server_key),
        };
        let without_proof = format!("c={GS2_HEADER_B64},r={}", parsed.nonce);
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare()
        );
        let client_signature = hmac(&stored_key(&client_key), &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &client_signature);
        let server_signature = hmac(&server_key, &[auth_message.as_bytes()]);
        self.server_params = Some((parsed.salt, iterations));
        self.state = State::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Checks server-final-message (AuthenticationSASLFinal data): the server signature in
    /// constant time; "e=..." becomes `ScramError::ServerError`.
    pub fn verify_server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let State::SentFinal { server_signature } = &self.state else {
            return Err(ScramError::OutOfOrder);
        };
        let got = parse_server_final(utf8(msg)?)?;
        if bool::from(got.ct_eq(server_signature)) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}
