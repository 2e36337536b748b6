//! The admin console grammar, equivalent to PgBouncer's three regexes (case-insensitive):
//! `WORD [WORD] [;]`, `SET WORD (=|TO) 'string' [;]` and `SET WORD (=|TO) WORD [;]`, where a
//! WORD is `[0-9a-z_]+` or a double-quoted name with `""` escapes. Pure; no I/O.

/// A parsed admin query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminQuery {
    /// `cmd [arg]`; `arg` is empty when absent. Both unquoted.
    Command {
        name: String,
        arg: String,
    },
    Set {
        key: String,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No rule matched: "invalid command '...', use SHOW HELP;".
    Syntax,
    /// A part too long for PgBouncer's buffers: "bad arguments".
    BadArguments,
}

/// PgBouncer's buffer sizes (`cmd[16]`, `arg[64]`, `val[256]`): raw lengths must stay below.
const CMD_MAX: usize = 16;
const ARG_MAX: usize = 64;
const VAL_MAX: usize = 256;

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while self.pos < self.s.len() && is_ws(self.s[self.pos]) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A WORD: returns (raw length, unquoted text).
    fn word(&mut self) -> Option<(usize, String)> {
        let start = self.pos;
        if self.s.get(self.pos) == Some(&b'"') {
            let text = self.quoted(b'"')?;
            return Some((self.pos - start, text));
        }
        while self.pos < self.s.len() && is_word_char(self.s[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        Some((self.pos - start, text))
    }

    /// A quoted token with doubled-quote escapes, starting at the opening quote.
    fn quoted(&mut self, q: u8) -> Option<String> {
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        loop {
            match self.s.get(i) {
                None => return None,
                Some(&b) if b == q => {
                    if self.s.get(i + 1) == Some(&q) {
                        out.push(q);
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return Some(String::from_utf8_lossy(&out).into_owned());
                    }
                }
                Some(&b) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }

    /// `WS0 (; WS0)? $`
    fn at_tail(&self) -> bool {
        let mut t = Scanner {
            s: self.s,
            pos: self.pos,
        };
        t.skip_ws();
        if t.s.get(t.pos) == Some(&b';') {
            t.pos += 1;
            t.skip_ws();
        }
        t.pos == t.s.len()
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        if end <= self.s.len() && self.s[self.pos..end].eq_ignore_ascii_case(kw.as_bytes()) {
            self.pos = end;
            true
        } else {
            false
        }
    }
}

/// Parses one admin query.
pub fn parse(query: &str) -> Result<AdminQuery, ParseError> {
    if let Some(r) = parse_command(query) {
        return r;
    }
    if let Some(r) = parse_set(query) {
        return r;
    }
    Err(ParseError::Syntax)
}

fn parse_command(query: &str) -> Option<Result<AdminQuery, ParseError>> {
    let mut sc = Scanner {
        s: query.as_bytes(),
        pos: 0,
    };
    sc.skip_ws();
    let (cmd_len, name) = sc.word()?;
    let after_cmd = sc.pos;
    let mut arg = (0, String::new());
    if sc.skip_ws() > 0 {
        if let Some(w) = sc.word() {
            if sc.at_tail() {
                arg = w;
            } else {
                return None;
            }
        } else {
            sc.pos = after_cmd;
        }
    }
    if arg.0 == 0 && !sc.at_tail() {
        return None;
    }
    if cmd_len >= CMD_MAX || arg.0 >= ARG_MAX {
        return Some(Err(ParseError::BadArguments));
    }
    Some(Ok(AdminQuery::Command { name, arg: arg.1 }))
}

fn parse_set(query: &str) -> Option<Result<AdminQuery, ParseError>> {
    let mut sc = Scanner {
        s: query.as_bytes(),
        pos: 0,
    };
    sc.skip_ws();
    if !sc.keyword("set") || sc.skip_ws() == 0 {
        return None;
    }
    let (key_len, key) = sc.word()?;
    sc.skip_ws();
    if !(sc.keyword("=") || sc.keyword("to")) {
        return None;
    }
    sc.skip_ws();
    let start = sc.pos;
    let value = if sc.s.get(sc.pos) == Some(&b'\'') {
        sc.quoted(b'\'')?
    } else {
        sc.word()?.1
    };
    let val_len = sc.pos - start;
    if !sc.at_tail() {
        return None;
    }
    if key_len >= ARG_MAX || key.is_empty() || val_len >= VAL_MAX {
        return Some(Err(ParseError::BadArguments));
    }
    Some(Ok(AdminQuery::Set { key, value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(name: &str, arg: &str) -> Result<AdminQuery, ParseError> {
        Ok(AdminQuery::Command {
            name: name.into(),
            arg: arg.into(),
        })
    }

    #[test]
    fn commands_with_and_without_argument() {
        assert_eq!(parse("SHOW POOLS;"), cmd("SHOW", "POOLS"));
        assert_eq!(parse("  pause  "), cmd("pause", ""));
        assert_eq!(parse("kill \"my db\" ; "), cmd("kill", "my db"));
        assert_eq!(parse("RESUME \"a\"\"b\""), cmd("RESUME", "a\"b"));
        assert_eq!(parse("show pools extra"), Err(ParseError::Syntax));
        assert_eq!(parse("BEGIN; SELECT 1"), Err(ParseError::Syntax));
        assert_eq!(parse(""), Err(ParseError::Syntax));
        assert_eq!(parse("abcdefghijklmnopq"), Err(ParseError::BadArguments));
    }

    #[test]
    fn set_forms() {
        let set = |k: &str, v: &str| {
            Ok(AdminQuery::Set {
                key: k.into(),
                value: v.into(),
            })
        };
        assert_eq!(
            parse("SET default_pool_size = 5"),
            set("default_pool_size", "5")
        );
        assert_eq!(parse("set log_stats to 0;"), set("log_stats", "0"));
        assert_eq!(
            parse("SET server_reset_query = 'DISCARD ''ALL'''"),
            set("server_reset_query", "DISCARD 'ALL'")
        );
        assert_eq!(parse("SET x = "), Err(ParseError::Syntax));
    }
}
