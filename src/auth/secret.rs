//! What `users.txt` (auth_file) or a `[databases]` password holds: plaintext, an md5 hash or a
//! SCRAM-SHA-256 verifier (PostgreSQL's `rolpassword` forms).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A stored secret, classified the way PgBouncer's `get_password_type` does.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The user exists but has no password: password logins always fail.
    Empty,
    /// A plaintext password.
    Plain(String),
    /// `md5` followed by 32 lowercase hex digits: md5(password || username).
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramSecret),
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5803, as PostgreSQL stores it).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Secret {
    /// Classifies a stored password string. A string that looks like md5 or SCRAM but is
    /// malformed is taken as plaintext, as PgBouncer and PostgreSQL do.
    pub(crate) fn parse(s: &str) -> Secret {
        if s.is_empty() {
            return Secret::Empty;
        }
        if is_md5_hash(s) {
            return Secret::Md5(s.to_ascii_lowercase());
        }
        if let Some(scram) = ScramSecret::parse(s) {
            return Secret::Scram(scram);
        }
        Secret::Plain(s.to_string())
    }

    /// The short type name used in logs and errors ("plain", "md5", "scram").
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Secret::Empty => "empty",
            Secret::Plain(_) => "plain",
            Secret::Md5(_) => "md5",
            Secret::Scram(_) => "scram",
        }
    }
}

/// Never print secrets: the Debug form only says which kind it is.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret::{}(<redacted>)", self.kind())
    }
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramSecret(iterations={}, <redacted>)", self.iterations)
    }
}

fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`.
    pub(crate) fn parse(s: &str) -> Option<ScramSecret> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iter.parse().ok().filter(|&n| n > 0)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        let stored_key: [u8; 32] = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key: [u8; 32] = B64.decode(server).ok()?.try_into().ok()?;
        Some(ScramSecret {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The stored form, as `ScramSecret::parse` reads it.
    pub fn to_stored_string(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_three_forms() {
        assert_eq!(Secret::parse(""), Secret::Empty);
        assert_eq!(Secret::parse("1234"), Secret::Plain("1234".into()));
        assert_eq!(
            Secret::parse("md545f2603610af569b6155c45067268c6b"),
            Secret::Md5("md545f2603610af569b6155c45067268c6b".into())
        );
        // a broken md5 (wrong length) is plaintext
        assert!(matches!(Secret::parse("md545f26"), Secret::Plain(_)));
        let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        match Secret::parse(scram) {
            Secret::Scram(s) => {
                assert_eq!(s.iterations, 4096);
                assert_eq!(s.salt, b"saltsalt");
                assert_eq!(s.server_key, [1u8; 32]);
                assert_eq!(s.to_stored_string(), scram);
            }
            other => panic!("not scram: {other:?}"),
        }
        // a broken SCRAM verifier is plaintext
        assert!(matches!(
            Secret::parse("SCRAM-SHA-256$x:y$z:w"),
            Secret::Plain(_)
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = format!("{:?}", Secret::parse("hunter2"));
        assert!(!s.contains("hunter2"), "{s}");
    }
}
