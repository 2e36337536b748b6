//! Checking a cleartext password (auth_type=plain, PgBouncer's `check_client_passwd`) against
//! any stored secret form. Sans-IO; CPU-heavy for SCRAM verifiers (PBKDF2).

use super::md5::verify_cleartext_against_md5_or_plain;
use super::scram::verify_plain_password;
use super::secret::Secret;

/// True when `password` matches the stored secret: plaintext compare, md5(password||user), or
/// the SCRAM verifier recomputed with its salt and iteration count. Empty secrets never match.
pub fn verify_cleartext_password(stored: &Secret, user: &str, password: &[u8]) -> bool {
    match stored {
        Secret::Empty => false,
        Secret::Plain(_) | Secret::Md5(_) => {
            verify_cleartext_against_md5_or_plain(stored, user, password)
        }
        Secret::Scram(secret) => verify_plain_password(secret, password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::md5::md5_hash;
    use crate::auth::secret::ScramSecret;

    #[test]
    fn all_forms() {
        let scram = Secret::Scram(ScramSecret::from_password("pw", b"saltsalt", 16));
        for stored in [
            Secret::Plain("pw".into()),
            Secret::parse(&md5_hash("u", "pw")),
            scram,
        ] {
            assert!(verify_cleartext_password(&stored, "u", b"pw"), "{stored:?}");
            assert!(
                !verify_cleartext_password(&stored, "u", b"pw2"),
                "{stored:?}"
            );
        }
        assert!(!verify_cleartext_password(&Secret::Empty, "u", b""));
    }
}
