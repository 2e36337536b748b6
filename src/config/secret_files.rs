//! Warnings for secret files others can read: `auth_file` (users.txt holds password hashes
//! and SCRAM secrets, which are login-equivalent for SCRAM pass-through) and the Kerberos
//! keytabs named by `KRB5_CLIENT_KTNAME` / `KRB5_KTNAME` (a keytab is a long-lived password).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Bits that let users other than the owner read a file.
const GROUP_OR_WORLD_READ: u32 = 0o044;

/// One warning per secret file readable by group or others; missing files say nothing here
/// (loading reports them where they are required).
pub fn warnings(auth_file: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(path) = auth_file {
        out.extend(check("auth_file", Path::new(path)));
    }
    for var in ["KRB5_CLIENT_KTNAME", "KRB5_KTNAME"] {
        let Some(name) = env(var) else { continue };
        // "FILE:/path" or a bare path; other keytab types (MEMORY:, KEYRING:) have no file mode
        let path = match name.split_once(':') {
            Some(("FILE" | "WRFILE", p)) => p.to_string(),
            Some(_) => continue,
            None => name,
        };
        out.extend(check(var, Path::new(&path)));
    }
    out
}

fn check(what: &str, path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & GROUP_OR_WORLD_READ != 0).then(|| {
        format!(
            "{what} {} is readable by other users (mode {:04o}); chmod 600 it",
            path.display(),
            mode & 0o7777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> String {
        let p = dir.join(name);
        std::fs::write(&p, "x").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    }

    #[test]
    fn readable_secret_files_are_named_and_private_ones_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = file_with_mode(dir.path(), "users.txt", 0o644);
        let private = file_with_mode(dir.path(), "private.txt", 0o600);
        let keytab = file_with_mode(dir.path(), "client.keytab", 0o640);
        let w = warnings(Some(&open), |_| None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("auth_file") && w[0].contains("0644"), "{w:?}");
        assert!(warnings(Some(&private), |_| None).is_empty());
        let kt = format!("FILE:{keytab}");
        let w = warnings(None, |v| (v == "KRB5_CLIENT_KTNAME").then(|| kt.clone()));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("KRB5_CLIENT_KTNAME") && w[0].contains("0640"),
            "{w:?}"
        );
        assert!(warnings(None, |_| Some("MEMORY:x".into())).is_empty());
        assert!(warnings(Some("/nonexistent/users.txt"), |_| None).is_empty());
    }
}
