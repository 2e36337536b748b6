//! SCRAM-SHA-256 key derivation (SaltedPassword, ClientKey, StoredKey, ServerKey), building
//! verifiers from plaintext passwords and checking a plaintext password against a verifier.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::secret::ScramSecret;

/// SHA-256 output length: every SCRAM key and signature.
pub const SCRAM_KEY_LEN: usize = 32;
/// Salt length PostgreSQL uses for new verifiers.
pub const SCRAM_SALT_LEN: usize = 16;
/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; SCRAM_KEY_LEN] {
    // invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("invariant: HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn xor(a: &[u8; SCRAM_KEY_LEN], b: &[u8; SCRAM_KEY_LEN]) -> [u8; SCRAM_KEY_LEN] {
    let mut out = *a;
    for (o, b) in out.iter_mut().zip(b) {
        *o ^= b;
    }
    out
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// SASLprep the password as PostgreSQL does (`pg_saslprep`): when the password is not UTF-8
/// or SASLprep rejects it (prohibited characters), the raw bytes are used instead.
fn normalize(password: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match std::str::from_utf8(password).ok().map(stringprep::saslprep) {
        Some(Ok(prepped)) => match prepped {
            std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
            std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
        },
        _ => std::borrow::Cow::Borrowed(password),
    }
}

/// SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations). CPU-heavy.
/// An iteration count of 0 is treated as 1 (callers validate counts from peers first).
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; SCRAM_KEY_LEN] {
    let mut out = [0u8; SCRAM_KEY_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(&normalize(password), salt, iterations.max(1), &mut out);
    out
}

/// ClientKey = HMAC(SaltedPassword, "Client Key").
pub fn client_key(salted: &[u8; SCRAM_KEY_LEN]) -> [u8; SCRAM_KEY_LEN] {
    hmac(salted, &[b"Client Key"])
}

/// ServerKey = HMAC(SaltedPassword, "Server Key").
pub fn server_key(salted: &[u8; SCRAM_KEY_LEN]) -> [u8; SCRAM_KEY_LEN] {
    hmac(salted, &[b"Server Key"])
}

/// StoredKey = SHA-256(ClientKey).
pub fn stored_key(client_key: &[u8; SCRAM_KEY_LEN]) -> [u8; SCRAM_KEY_LEN] {
    Sha256::digest(client_key).into()
}

impl ScramSecret {
    /// The verifier PostgreSQL would store for `password` with this salt and iteration count.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let salted = salted_password(password.as_bytes(), salt, iterations);
        ScramSecret {
            iterations: iterations.max(1),
            salt: salt.to_vec(),
            stored_key: stored_key(&client_key(&salted)),
            server_key: server_key(&salted),
        }
    }

    /// PgBouncer's "ad hoc" verifier for a plaintext users.txt password under SCRAM auth:
    /// a fresh random 16-byte salt. Cache it per user: every call costs a PBKDF2 run.
    pub fn ad_hoc(password: &str, iterations: u32) -> ScramSecret {
        ScramSecret::from_password(password, &random_bytes::<SCRAM_SALT_LEN>(), iterations)
    }
}

/// Checks a plaintext password (auth_type=plain) against a SCRAM verifier, in constant time.
/// CPU-heavy (PBKDF2 with the verifier's iteration count).
pub fn verify_plain_password(secret: &ScramSecret, password: &[u8]) -> bool {
    let salted = salted_password(password, &secret.salt, secret.iterations);
    let client = stored_key(&client_key(&salted));
    let server = server_key(&salted);
    bool::from(client.ct_eq(&secret.stored_key) & server.ct_eq(&secret.server_key))
}
