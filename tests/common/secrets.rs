//! Password secrets in the forms users.txt accepts, computed independently of the crate under
//! test (md5 here; SCRAM verifiers are read from PostgreSQL with `PgCluster::stored_secret`).

use md5::{Digest, Md5};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `md5` + hex(md5(password || user)), PostgreSQL's and PgBouncer's stored md5 form.
pub fn md5_secret(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// The PasswordMessage payload for AuthenticationMD5Password: `md5` + md5(md5hex + salt).
pub fn md5_response(user: &str, password: &str, salt: &[u8; 4]) -> String {
    let inner = md5_secret(user, password);
    let mut h = Md5::new();
    h.update(&inner.as_bytes()[3..]);
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// One users.txt line with PgBouncer's quoting (a `"` inside a field is doubled).
pub fn auth_file_line(user: &str, secret: &str) -> String {
    format!(
        "\"{}\" \"{}\"",
        user.replace('"', "\"\""),
        secret.replace('"', "\"\"")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_secret_matches_pgbouncer_docs_example() {
        // doc/config.md: admin / 1234
        assert_eq!(
            md5_secret("admin", "1234"),
            "md545f2603610af569b6155c45067268c6b"
        );
    }

    #[test]
    fn auth_line_doubles_quotes() {
        assert_eq!(auth_file_line("a\"b", "x"), "\"a\"\"b\" \"x\"");
    }
}
