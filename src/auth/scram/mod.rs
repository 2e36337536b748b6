//! SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it: no channel binding offered,
//! username in the SCRAM messages ignored. Server side (clients logging in to the pooler) and
//! client side (the pooler logging in to a server, with a password or pass-through keys).
//! Sans-IO and pure: PBKDF2 is CPU-heavy at high iteration counts, so callers may run these
//! functions on `spawn_blocking`.

mod client;
mod keys;
mod messages;
mod server;

pub use client::{ScramClient, ScramClientCredentials};
pub use keys::{
    DEFAULT_ITERATIONS, SCRAM_KEY_LEN, SCRAM_SALT_LEN, client_key, salted_password, server_key,
    stored_key, verify_plain_password,
};
pub use server::{ScramServer, ScramServerOutcome};

use thiserror::Error;

/// The SASL mechanism name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Highest iteration count the client side accepts from a server (guards CPU use).
pub(crate) const MAX_CLIENT_ITERATIONS: u32 = 10_000_000;

/// A failed SCRAM exchange. Texts never include proofs or keys.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScramError {
    /// The message does not follow the SCRAM grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding ("p="), which the pooler does not offer.
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    /// The client sent an authorization identity ("a="), which PostgreSQL does not support.
    #[error("client uses authorization identity, but it is not supported")]
    AuthzidUnsupported,
    /// A mandatory extension ("m=") the pooler cannot honour.
    #[error("client requires an unsupported SCRAM extension")]
    UnsupportedExtension,
    /// The nonce in a later message does not match the exchange.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The channel binding echoed in client-final differs from the gs2 header.
    #[error("SCRAM channel binding check failed")]
    ChannelBindingMismatch,
    /// An iteration count of 0 or above the client limit.
    #[error("invalid SCRAM iteration count: {0}")]
    InvalidIterationCount(u64),
    /// The client proof did not verify (wrong password, or a mock exchange for an unknown user).
    #[error("password authentication failed")]
    WrongPassword,
    /// The server signature did not verify: the server does not know the secret.
    #[error("invalid SCRAM server signature")]
    InvalidServerSignature,
    /// The server ended the exchange with "e=<text>".
    #[error("SCRAM error from server: {0}")]
    ServerError(String),
    /// A message arrived in the wrong phase of the exchange.
    #[error("SCRAM exchange out of order")]
    OutOfOrder,
}

#[cfg(test)]
mod tests;
