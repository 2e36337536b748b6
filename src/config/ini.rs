//! Raw ini reader with PgBouncer's exact syntax (libusual `cfparser.c`): sections, `;`/`#`
//! comment lines, bare or single-quoted keys, values to end of line, `%include` resolved against
//! the process CWD (nesting ≤ 10). Every item keeps its file and line. No typing happens here.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrorKind, Location};

/// PgBouncer's `MAX_INCLUDE`: how deep `%include` may nest.
pub const MAX_INCLUDE: usize = 10;

/// The sections PgBouncer knows (`config_sects` in `src/main.c`).
pub const SECTIONS: [&str; 4] = ["pgbouncer", "databases", "users", "peers"];

/// One `key = value` line, tagged with the section it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniEntry {
    pub section: String,
    pub key: String,
    pub value: String,
    pub location: Location,
}

/// What the reader saw, in file order (includes expanded in place).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IniItem {
    /// A `[section]` header. PgBouncer resets `[pgbouncer]` settings to defaults at each one.
    Section(String, Location),
    Entry(IniEntry),
}

/// Reads `path` and everything it includes. Relative paths (the main file's and the
/// `%include`d ones) resolve against `cwd`, as PgBouncer resolves them against its CWD.
pub fn read_ini(path: &Path, cwd: &Path) -> Result<Vec<IniItem>, ConfigError> {
    let mut reader = Reader {
        cwd,
        items: Vec::new(),
        section: None,
    };
    reader.read_file(path, 0)?;
    Ok(reader.items)
}

/// Parses ini text that came from `path` (no file access unless it has `%include`).
pub fn parse_ini_text(text: &[u8], path: &Path, cwd: &Path) -> Result<Vec<IniItem>, ConfigError> {
    let mut reader = Reader {
        cwd,
        items: Vec::new(),
        section: None,
    };
    reader.parse(text, path, 0)?;
    Ok(reader.items)
}

/// C `isspace` in the "C" locale (Rust's ASCII whitespace lacks vertical tab).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*')
}

struct Reader<'a> {
    cwd: &'a Path,
    items: Vec<IniItem>,
    /// The current section carries across `%include` boundaries, as in PgBouncer.
    section: Option<String>,
}

impl Reader<'_> {
    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.cwd.join(path)
        }
    }

    fn read_file(&mut self, path: &Path, level: usize) -> Result<(), ConfigError> {
        let bytes = std::fs::read(self.resolve(path)).map_err(|e| {
            ConfigError::bare(ConfigErrorKind::Io {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })?;
        self.parse(&bytes, path, level)
    }

    fn parse(&mut self, text: &[u8], path: &Path, level: usize) -> Result<(), ConfigError> {
        // The C parser works on a NUL-terminated buffer: nothing after a NUL byte exists.
        let buf = match text.iter().position(|&b| b == 0) {
            Some(nul) => &text[..nul],
            None => text,
        };
        let mut lx = Lexer { buf, p: 0, path };
        loop {
            lx.skip_while(is_c_space);
            let Some(first) = lx.peek() else {
                return Ok(());
            };
            let start = lx.p;
            if lx.at_include() {
                self.include(&mut lx, start, level)?;
                continue;
            }
            match first {
                b'#' | b';' => lx.skip_while(|b| b != b'\n'),
                b'[' => self.section(&mut lx, start)?,
                _ => self.entry(&mut lx, start)?,
            }
        }
    }

    /// `%include FILE`: the file's items in place, errors located at this line.
    fn include(
        &mut self,
        lx: &mut Lexer<'_>,
        start: usize,
        level: usize,
    ) -> Result<(), ConfigError> {
        if level >= MAX_INCLUDE {
            return Err(lx.error_at(start, ConfigErrorKind::IncludeTooDeep));
        }
        lx.p += 8;
        lx.skip_while(is_blank);
        let value = lx.rest_of_line();
        let target = PathBuf::from(String::from_utf8_lossy(value).into_owned());
        tracing::debug!(file = %target.display(), "processing include");
        self.read_file(&target, level + 1)
            .map_err(|e| e.located(lx.path, lx.line_at(start)))
    }

    /// `[name]`: one of the known sections.
    fn section(&mut self, lx: &mut Lexer<'_>, start: usize) -> Result<(), ConfigError> {
        lx.p += 1;
        let name_start = lx.p;
        lx.skip_while(|b| b != b']' && b != b'\n');
        if lx.peek() != Some(b']') {
            return Err(lx.error_at(start, ConfigErrorKind::Syntax));
        }
        let name = String::from_utf8_lossy(&lx.buf[name_start..lx.p]).into_owned();
        lx.p += 1;
        let loc = Location::new(lx.path, lx.line_at(start));
        if !SECTIONS.contains(&name.as_str()) {
            return Err(ConfigError {
                location: Some(loc),
                kind: ConfigErrorKind::UnknownSection(name),
            });
        }
        self.section = Some(name.clone());
        self.items.push(IniItem::Section(name, loc));
        Ok(())
    }

    /// `key = value` (the key bare or in single quotes), inside a section.
    fn entry(&mut self, lx: &mut Lexer<'_>, start: usize) -> Result<(), ConfigError> {
        let syntax = |lx: &Lexer<'_>| lx.error_at(start, ConfigErrorKind::Syntax);
        let key = if lx.peek() == Some(b'\'') {
            lx.p += 1;
            let key_start = lx.p;
            lx.skip_while(|b| b != b'\'');
            if lx.peek().is_none() || lx.p == key_start {
                return Err(syntax(lx));
            }
            let key = &lx.buf[key_start..lx.p];
            lx.p += 1;
            key
        } else {
            let key_start = lx.p;
            lx.skip_while(is_key_char);
            &lx.buf[key_start..lx.p]
        };
        lx.skip_while(is_blank);
        if key.is_empty() || lx.peek() != Some(b'=') {
            return Err(syntax(lx));
        }
        lx.p += 1;
        lx.skip_while(is_blank);
        let value = lx.rest_of_line();
        let key = String::from_utf8_lossy(key).into_owned();
        let location = Location::new(lx.path, lx.line_at(start));
        let Some(section) = self.section.clone() else {
            return Err(ConfigError {
                location: Some(location),
                kind: ConfigErrorKind::ValueWithoutSection(key),
            });
        };
        let value = String::from_utf8_lossy(value).into_owned();
        self.items.push(IniItem::Entry(IniEntry {
            section,
            key,
            value,
            location,
        }));
        Ok(())
    }
}

/// A position in one file's bytes, with the small moves the ini syntax needs.
struct Lexer<'a> {
    buf: &'a [u8],
    p: usize,
    path: &'a Path,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.p).copied()
    }

    fn skip_while(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.p += 1;
        }
    }

    /// `%include` followed by a blank.
    fn at_include(&self) -> bool {
        self.buf[self.p..].starts_with(b"%include")
            && self.buf.get(self.p + 8).is_some_and(|&b| is_blank(b))
    }

    /// The rest of the line (trailing whitespace removed); moves to the line's end.
    fn rest_of_line(&mut self) -> &'a [u8] {
        let (value, next) = rest_of_line(self.buf, self.p);
        self.p = next;
        value
    }

    fn line_at(&self, pos: usize) -> usize {
        self.buf[..pos.min(self.buf.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error_at(&self, pos: usize, kind: ConfigErrorKind) -> ConfigError {
        ConfigError::at(self.path, self.line_at(pos), kind)
    }
}

/// The value from `p` to the end of the line, trailing whitespace removed; plus where the
/// next line starts.
fn rest_of_line(buf: &[u8], p: usize) -> (&[u8], usize) {
    let mut end = p;
    while end < buf.len() && buf[end] != b'\n' {
        end += 1;
    }
    let mut vend = end;
    while vend > p && is_c_space(buf[vend - 1]) {
        vend -= 1;
    }
    (&buf[p..vend], end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(String, String, String, usize)> {
        parse_ini_text(text.as_bytes(), Path::new("t.ini"), Path::new("/"))
            .expect("parses")
            .into_iter()
            .filter_map(|i| match i {
                IniItem::Entry(e) => Some((e.section, e.key, e.value, e.location.line)),
                IniItem::Section(..) => None,
            })
            .collect()
    }

    fn err(text: &str) -> String {
        parse_ini_text(text.as_bytes(), Path::new("t.ini"), Path::new("/"))
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn comments_keys_values_and_lines() {
        let got = entries(
            "; comment\n  # also comment\n[pgbouncer]\nlisten_port = 6432 ; not a comment  \r\n\
             \n'my db' = host=x\n\ta.b-c*_1\t=\tv # x\nempty =\n",
        );
        assert_eq!(
            got,
            vec![
                (
                    "pgbouncer".into(),
                    "listen_port".into(),
                    "6432 ; not a comment".into(),
                    4
                ),
                ("pgbouncer".into(), "my db".into(), "host=x".into(), 6),
                ("pgbouncer".into(), "a.b-c*_1".into(), "v # x".into(), 7),
                ("pgbouncer".into(), "empty".into(), "".into(), 8),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        assert_eq!(
            err("[pgbouncer]\n\nfoo bar = 1\n"),
            "t.ini:3: syntax error in configuration"
        );
        assert_eq!(
            err("[pgbouncer\nx=1\n"),
            "t.ini:1: syntax error in configuration"
        );
        assert_eq!(
            err("[pgbouncer]\n'' = 1\n"),
            "t.ini:2: syntax error in configuration"
        );
        assert_eq!(
            err("[pgbouncer]\n'open = 1\n"),
            "t.ini:2: syntax error in configuration"
        );
        assert_eq!(
            err("[pgbouncer]\n= 1\n"),
            "t.ini:2: syntax error in configuration"
        );
    }

    #[test]
    fn unknown_section_and_value_without_section() {
        assert_eq!(
            err("[pgbouncer]\n[bogus]\n"),
            "t.ini:2: invalid section \"bogus\" in configuration"
        );
        assert_eq!(err("x = 1\n"), "t.ini:1: value without section: x");
    }

    #[test]
    fn nul_byte_ends_the_file() {
        assert_eq!(entries("[users]\na = x\0\nb = y\n").len(), 1);
    }

    #[test]
    fn include_is_relative_to_cwd_and_nests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        // The include names "sub/b.ini" relative to the CWD, not to the including file's dir.
        std::fs::write(
            sub.join("a.ini"),
            "[pgbouncer]\n%include sub/b.ini\nlisten_port = 1\n",
        )
        .expect("write");
        std::fs::write(sub.join("b.ini"), "max_client_conn = 5\n[databases]\n").expect("write");
        let items = read_ini(Path::new("sub/a.ini"), dir.path()).expect("reads");
        let keys: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                IniItem::Entry(e) => {
                    Some((e.section.as_str(), e.key.as_str(), e.location.to_string()))
                }
                _ => None,
            })
            .collect();
        // The section carries into the included file and back out of it.
        assert_eq!(
            keys,
            vec![
                ("pgbouncer", "max_client_conn", "sub/b.ini:1".to_string()),
                ("databases", "listen_port", "sub/a.ini:3".to_string()),
            ]
        );
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("loop.ini"),
            "[pgbouncer]\n%include loop.ini\n",
        )
        .expect("write");
        let e = read_ini(Path::new("loop.ini"), dir.path()).expect_err("too deep");
        assert_eq!(e.kind, ConfigErrorKind::IncludeTooDeep);
        let missing = read_ini(Path::new("nope.ini"), dir.path()).expect_err("missing");
        assert!(
            missing
                .to_string()
                .starts_with("could not load file \"nope.ini\""),
            "{missing}"
        );
    }
}
