//! SCRAM-SHA-256 server side: verifies a client logging in to the pooler against a stored
//! verifier, and recovers the ClientKey for SCRAM pass-through to servers. A mock exchange for
//! unknown users sends the same kinds of messages and fails at the end, so user existence
//! does not leak.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ScramError;
use super::keys::{SCRAM_KEY_LEN, SCRAM_SALT_LEN, b64, hmac, random_bytes, stored_key, xor};
use super::messages::{parse_client_final, parse_client_first, utf8};
use crate::auth::secret::ScramSecret;

/// Raw server nonce length (PostgreSQL's `SCRAM_RAW_NONCE_LEN`): 24 base64 characters.
const SERVER_NONCE_LEN: usize = 18;

/// A successful exchange.
pub struct ScramServerOutcome {
    /// server-final-message ("v=..."), sent in AuthenticationSASLFinal.
    pub server_final: Vec<u8>,
    /// ClientKey = ClientProof XOR ClientSignature: with the verifier's ServerKey this lets the
    /// pooler log in to a server holding the same verifier (SCRAM pass-through).
    pub client_key: [u8; SCRAM_KEY_LEN],
}

impl std::fmt::Debug for ScramServerOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramServerOutcome(<redacted>)")
    }
}

enum State {
    AwaitClientFirst,
    AwaitClientFinal {
        gs2_header: String,
        nonce: String,
        auth_message_prefix: String,
    },
    Done,
}

/// One server-side SCRAM exchange: `handle_client_first`, then `handle_client_final`.
pub struct ScramServer {
    secret: ScramSecret,
    /// Mock exchanges always fail at the proof check.
    mock: bool,
    state: State,
}

impl ScramServer {
    /// An exchange against a real verifier.
    pub fn new(secret: ScramSecret) -> ScramServer {
        ScramServer {
            secret,
            mock: false,
            state: State::AwaitClientFirst,
        }
    }

    /// An exchange for an unknown user (PostgreSQL's `scram_mock_salt`): the salt is derived
    /// from the user name and a per-process random `mock_nonce`, so repeated attempts for the
    /// same name see the same salt, like a real user. `iterations` should be the count real
    /// verifiers use. Always ends in `ScramError::WrongPassword`.
    pub fn mock(user: &str, mock_nonce: &[u8], iterations: u32) -> ScramServer {
        let digest = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update(mock_nonce)
            .finalize();
        let secret = ScramSecret {
            iterations: iterations.max(1),
            salt: digest.iter().take(SCRAM_SALT_LEN).copied().collect(),
            stored_key: random_bytes(),
            server_key: random_bytes(),
        };
        ScramServer {
            secret,
            mock: true,
            state: State::AwaitClientFirst,
        }
    }

    /// Reads client-first-message (the SASLInitialResponse data) and returns
    /// server-first-message for AuthenticationSASLContinue.
    pub fn handle_client_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitClientFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.client_first_with_nonce(msg, &b64(&random_bytes::<SERVER_NONCE_LEN>()))
    }

    /// `handle_client_first` with a given server nonce part (tests use the RFC's).
    pub(super) fn client_first_with_nonce(
        &mut self,
        msg: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        self.state = State::Done;
        let first = parse_client_first(utf8(msg)?)?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64(&self.secret.salt),
            self.secret.iterations
        );
        let auth_message_prefix = format!("{},{server_first},", first.bare);
        self.state = State::AwaitClientFinal {
            gs2_header: first.gs2_header.to_string(),
            nonce,
            auth_message_prefix,
        };
        Ok(server_first.into_bytes())
    }

    /// Reads client-final-message (SASLResponse data), checks the proof in constant time and
    /// returns server-final-message plus the recovered ClientKey.
    pub fn handle_client_final(&mut self, msg: &[u8]) -> Result<ScramServerOutcome, ScramError> {
        let State::AwaitClientFinal {
            gs2_header,
            nonce,
            auth_message_prefix,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let fin = parse_client_final(utf8(msg)?)?;
        if fin.channel_binding != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if fin.nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!("{auth_message_prefix}{}", fin.without_proof);
        let client_signature = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&fin.proof, &client_signature);
        let proof_ok: bool = stored_key(&client_key)
            .ct_eq(&self.secret.stored_key)
            .into();
        if self.mock || !proof_ok {
            return Err(ScramError::WrongPassword);
        }
        let server_signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        Ok(ScramServerOutcome {
            server_final: format!("v={}", b64(&server_signature)).into_bytes(),
            client_key,
        })
    }
}
