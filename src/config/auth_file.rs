//! `auth_file` (users.txt), parsed byte for byte like PgBouncer's `load_auth_file`: `;` comment
//! lines, `"user" "password"` with `""` escaping a quote, the rest of the line ignored, and the
//! first malformed line ("broken auth file") or over-long field stopping the parse while keeping
//! the users read so far. Also the stat fingerprint that decides whether a reload re-reads it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::auth::secret::Secret;

/// PgBouncer's `MAX_USERNAME` (bytes, with the C terminator): 127 usable.
pub const MAX_USERNAME: usize = 128;
/// PgBouncer 1.25.2's `MAX_PASSWORD` (bytes, with the C terminator): 2047 usable.
pub const MAX_PASSWORD: usize = 2048;

/// The `stat()` fields PgBouncer compares (`auth_loaded`) to skip re-reading an unchanged file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileFingerprint {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
}

impl FileFingerprint {
    /// `None` when the file cannot be stat'ed.
    pub fn of(path: &Path) -> Option<FileFingerprint> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileFingerprint {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            size: m.size(),
        })
    }
}

/// The users of an auth_file. Never printed with secrets (`Secret`'s Debug redacts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthFile {
    /// The file as resolved (after joining a relative path with the CWD); `None` if unset.
    pub path: Option<PathBuf>,
    /// A later line for the same user replaces the earlier one, as in PgBouncer.
    pub users: HashMap<String, Secret>,
    /// What was logged while reading: "broken auth file", "... too long in auth file",
    /// "could not open auth_file ...".
    pub warnings: Vec<String>,
    /// The file's fingerprint when it was read.
    pub fingerprint: Option<FileFingerprint>,
}

/// `find_quote`: the next `"`; unless `start`, a doubled `""` is skipped as an escaped quote.
fn find_quote(b: &[u8], mut p: usize, start: bool) -> usize {
    loop {
        while p < b.len() && b[p] != b'"' {
            p += 1;
        }
        if !start && p + 1 < b.len() && b[p + 1] == b'"' {
            p += 2;
            continue;
        }
        return p;
    }
}

/// `copy_quoted`: drops the first quote of each `""` pair.
fn unquote(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'"' {
            i += 1;
            if i >= raw.len() {
                break;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl AuthFile {
    /// Parses auth_file contents. Problems are logged (`tracing::warn!`) and kept in
    /// `warnings`; they never fail the load.
    pub fn parse(text: &[u8]) -> AuthFile {
        let mut file = AuthFile::default();
        let b = match text.iter().position(|&c| c == 0) {
            Some(nul) => &text[..nul],
            None => text,
        };
        let mut p = 0;
        while p < b.len() {
            while p < b.len() && is_c_space(b[p]) {
                p += 1;
            }
            if p >= b.len() {
                break;
            }
            if b[p] == b';' {
                while p < b.len() && b[p] != b'\n' {
                    p += 1;
                }
                continue;
            }
            let line = b[..p].iter().filter(|&&c| c == b'\n').count() + 1;
            let Some((user, pass, next)) = Self::parse_entry(b, p, line, &mut file.warnings) else {
                break;
            };
            file.users.insert(user, Secret::parse(&pass));
            p = next;
            while p < b.len() && b[p] != b'\n' {
                p += 1;
            }
        }
        for w in &file.warnings {
            tracing::warn!("{w}");
        }
        file
    }

    /// One `"user" "password"` entry starting at `p`; `None` (with a warning) stops parsing.
    fn parse_entry(
        b: &[u8],
        mut p: usize,
        line: usize,
        warnings: &mut Vec<String>,
    ) -> Option<(String, String, usize)> {
        let mut stop = |msg: &str| {
            warnings.push(format!("{msg} (line {line})"));
            None
        };
        if b[p] != b'"' {
            return stop("broken auth file");
        }
        let user_start = p + 1;
        p = find_quote(b, user_start, false);
        if p >= b.len() {
            return stop("broken auth file");
        }
        if p - user_start >= MAX_USERNAME {
            return stop("username too long in auth file");
        }
        let user = unquote(&b[user_start..p]);
        // Anything (even a line break) may separate the two fields.
        p = find_quote(b, p + 1, true);
        if p >= b.len() {
            return stop("broken auth file");
        }
        let pass_start = p + 1;
        p = find_quote(b, pass_start, false);
        if p >= b.len() {
            return stop("broken auth file");
        }
        if p - pass_start >= MAX_PASSWORD {
            return stop("password too long in auth file");
        }
        Some((user, unquote(&b[pass_start..p]), p + 1))
    }

    /// Reads the file at `path` (relative paths against `cwd`). A missing or unreadable file
    /// gives an empty user list and a warning, as PgBouncer logs and carries on.
    pub fn load_with_base(path: &Path, cwd: &Path) -> AuthFile {
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        let fingerprint = FileFingerprint::of(&resolved);
        let mut file = match std::fs::read(&resolved) {
            Ok(bytes) => AuthFile::parse(&bytes),
            Err(e) => {
                let msg = format!("could not open auth_file {}: {e}", path.display());
                tracing::warn!("{msg}");
                AuthFile {
                    warnings: vec![msg],
                    ..AuthFile::default()
                }
            }
        };
        file.path = Some(resolved);
        file.fingerprint = fingerprint;
        file
    }

    /// `load_with_base` against the process CWD.
    pub fn load(path: &Path) -> AuthFile {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        AuthFile::load_with_base(path, &cwd)
    }

    /// Whether the file on disk differs (by `stat()`) from what was read, so a reload should
    /// re-read it. A file that could not be stat'ed either time counts as unchanged.
    pub fn changed_on_disk(&self) -> bool {
        match &self.path {
            Some(path) => FileFingerprint::of(path) != self.fingerprint,
            None => false,
        }
    }

    /// The stored secret for `user`.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AuthFile {
        AuthFile::parse(s.as_bytes())
    }

    fn plain(s: &str) -> Secret {
        Secret::Plain(s.to_string())
    }

    #[test]
    fn basic_comments_and_garbage_after_fields() {
        let f = parse(
            "\n  ; comment \"x\" \"y\"\n\"alice\" \"pw1\" trailing junk\n   \"bob\"   \"md545f2603610af569b6155c45067268c6b\"\n\"empty\" \"\"\n",
        );
        assert_eq!(f.users.len(), 3);
        assert_eq!(f.get("alice"), Some(&plain("pw1")));
        assert!(matches!(f.get("bob"), Some(Secret::Md5(_))));
        assert_eq!(f.get("empty"), Some(&Secret::Empty));
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn doubled_quotes_escape_and_backslash_does_not() {
        let f = parse("\"a\"\"b\" \"p\"\"q\"\"\"\n\"helm\" \"x\\\"y\"\n");
        assert_eq!(f.get("a\"b"), Some(&plain("p\"q\"")));
        // Helm's \" is not an escape: the password ends at the quote after the backslash.
        assert_eq!(f.get("helm"), Some(&plain("x\\")));
    }

    #[test]
    fn hash_line_stops_parsing_but_keeps_earlier_users() {
        let f = parse("\"a\" \"1\"\n# comment?\n\"b\" \"2\"\n");
        assert_eq!(f.users.len(), 1);
        assert!(f.get("a").is_some() && f.get("b").is_none());
        assert_eq!(f.warnings, vec!["broken auth file (line 2)".to_string()]);
        let unterminated = parse("\"a\" \"1\"\n\"b\" \"2\n");
        assert_eq!(unterminated.users.len(), 1);
        assert!(unterminated.warnings[0].starts_with("broken auth file"));
    }

    #[test]
    fn fields_may_be_separated_by_anything_even_newlines() {
        let f = parse("\"a\" junk\n\"1\"\n\"b\" \"2\"");
        assert_eq!(f.get("a"), Some(&plain("1")));
        assert_eq!(f.get("b"), Some(&plain("2")));
    }

    #[test]
    fn length_limits() {
        let ok_user = "u".repeat(127);
        let f = parse(&format!(
            "\"{ok_user}\" \"p\"\n\"{}\" \"p\"\n\"after\" \"x\"\n",
            "v".repeat(128)
        ));
        assert!(f.get(&ok_user).is_some());
        assert_eq!(f.users.len(), 1);
        assert!(f.warnings[0].starts_with("username too long in auth file"));
        let ok_pass = "p".repeat(2047);
        let f = parse(&format!(
            "\"a\" \"{ok_pass}\"\n\"b\" \"{}\"\n",
            "q".repeat(2048)
        ));
        assert_eq!(f.get("a"), Some(&plain(&ok_pass)));
        assert!(f.get("b").is_none());
        assert!(f.warnings[0].starts_with("password too long in auth file"));
    }

    #[test]
    fn later_entry_wins_and_warnings_never_hold_secrets() {
        let f = parse("\"a\" \"old\"\n\"a\" \"new\"\n\"b\" \"hunter2\" \n#\n");
        assert_eq!(f.get("a"), Some(&plain("new")));
        assert!(!format!("{f:?}").contains("hunter2"));
        assert!(f.warnings.iter().all(|w| !w.contains("hunter2")));
    }

    #[test]
    fn missing_file_and_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = AuthFile::load_with_base(Path::new("nope.txt"), dir.path());
        assert!(missing.users.is_empty());
        assert!(missing.warnings[0].starts_with("could not open auth_file nope.txt"));
        let path = dir.path().join("users.txt");
        std::fs::write(&path, "\"a\" \"1\"\n").expect("write");
        let f = AuthFile::load_with_base(Path::new("users.txt"), dir.path());
        assert_eq!(f.users.len(), 1);
        assert!(f.fingerprint.is_some());
        assert!(!f.changed_on_disk());
        std::fs::write(&path, "\"a\" \"1\"\n\"b\" \"2\"\n").expect("rewrite");
        assert!(f.changed_on_disk(), "size changed");
    }
}
