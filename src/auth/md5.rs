//! PostgreSQL md5 password authentication: the stored hash, the salted response a client sends,
//! and its constant-time verification against a stored secret. Sans-IO.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::secret::Secret;

/// Length of "md5" + 32 hex digits.
pub(crate) const MD5_RESPONSE_LEN: usize = 35;

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(MD5_RESPONSE_LEN);
    out.push_str("md5");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The stored form: "md5" + hex(md5(password || user)).
pub(crate) fn md5_hash(user: &str, password: &str) -> String {
    md5_hash_bytes(user, password.as_bytes())
}

fn md5_hash_bytes(user: &str, password: &[u8]) -> String {
    md5_hex(&[password, user.as_bytes()])
}

/// What a client sends and a server expects for AuthenticationMD5Password:
/// "md5" + hex(md5(hex part of `md5_hash` || salt)). `md5_hash` must be the 35-char stored form.
pub(crate) fn md5_salted_response(md5_hash: &str, salt: [u8; 4]) -> String {
    let inner = md5_hash.strip_prefix("md5").unwrap_or(md5_hash);
    md5_hex(&[inner.as_bytes(), &salt])
}

/// Checks a client's md5 response against a stored plaintext or md5 secret, in constant time
/// over the response. SCRAM and empty secrets cannot verify an md5 response (PgBouncer switches
/// SCRAM users to SCRAM auth before it gets here).
pub fn verify_md5_response(stored: &Secret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let stored_hash = match stored {
        Secret::Plain(password) => md5_hash(user, password),
        Secret::Md5(hash) => hash.clone(),
        Secret::Empty | Secret::Scram(_) => return false,
    };
    let expected = md5_salted_response(&stored_hash, salt);
    response.len() == MD5_RESPONSE_LEN && bool::from(expected.as_bytes().ct_eq(response))
}

/// Checks a cleartext password (auth_type=plain) against a plaintext or md5 secret in constant
/// time. SCRAM secrets are checked by `scram::verify_plain_password` (CPU-heavy).
pub fn verify_cleartext_against_md5_or_plain(stored: &Secret, user: &str, password: &[u8]) -> bool {
    match stored {
        Secret::Plain(plain) => bool::from(plain.as_bytes().ct_eq(password)),
        Secret::Md5(hash) => bool::from(
            hash.as_bytes()
                .ct_eq(md5_hash_bytes(user, password).as_bytes()),
        ),
        Secret::Empty | Secret::Scram(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vector() {
        assert_eq!(
            md5_hash("admin", "1234"),
            "md545f2603610af569b6155c45067268c6b"
        );
    }

    #[test]
    fn salted_response_matches_postgres_protocol() {
        let salt = [1, 2, 3, 4];
        let theirs = postgres_protocol::authentication::md5_hash(b"admin", b"1234", salt);
        assert_eq!(
            md5_salted_response(&md5_hash("admin", "1234"), salt),
            theirs
        );
    }

    #[test]
    fn verify_against_plain_and_md5() {
        let salt = [9, 8, 7, 6];
        let good = md5_salted_response(&md5_hash("bob", "pw"), salt);
        for stored in [
            Secret::Plain("pw".into()),
            Secret::parse(&md5_hash("bob", "pw")),
        ] {
            assert!(verify_md5_response(&stored, "bob", salt, good.as_bytes()));
            assert!(!verify_md5_response(
                &stored,
                "bob",
                [0; 4],
                good.as_bytes()
            ));
            assert!(!verify_md5_response(&stored, "bob", salt, b"md5"));
        }
        // a plaintext secret is hashed with the login user's name
        assert!(!verify_md5_response(
            &Secret::Plain("pw".into()),
            "alice",
            salt,
            good.as_bytes()
        ));
        assert!(!verify_md5_response(
            &Secret::Empty,
            "bob",
            salt,
            good.as_bytes()
        ));
    }

    #[test]
    fn cleartext_against_md5_or_plain() {
        let md5 = Secret::parse(&md5_hash("bob", "pw"));
        assert!(verify_cleartext_against_md5_or_plain(&md5, "bob", b"pw"));
        assert!(!verify_cleartext_against_md5_or_plain(&md5, "bob", b"px"));
        assert!(verify_cleartext_against_md5_or_plain(
            &Secret::Plain("pw".into()),
            "x",
            b"pw"
        ));
        assert!(!verify_cleartext_against_md5_or_plain(
            &Secret::Empty,
            "x",
            b""
        ));
    }
}
