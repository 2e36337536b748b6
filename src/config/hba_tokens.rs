//! The tokenizer of `auth_hba_file` and `auth_ident_file` lines, as PgBouncer's `next_token`:
//! whitespace separates, `#` starts a comment, `,` is its own token, `"..."` is a quoted
//! string with `""` for a quote (never a keyword), anything else is a bare word ended by
//! whitespace, `,`, `#` or `"`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// A bare word: may be a keyword (`all`, `host`, `md5`...).
    Word(String),
    /// A quoted string: always a plain name.
    Quoted(String),
    Comma,
    /// An unterminated quote.
    Bad,
}

/// The tokens of one line up to its end or comment.
pub(crate) fn tokenize(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&c) = chars.peek() else {
            return out;
        };
        match c {
            '#' => return out,
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '"' {
                        if chars.next_if_eq(&'"').is_some() {
                            s.push('"');
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    s.push(c);
                }
                if !closed {
                    out.push(Token::Bad);
                    return out;
                }
                out.push(Token::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(c) =
                    chars.next_if(|&c| !(c.is_whitespace() || c == ',' || c == '#' || c == '"'))
                {
                    s.push(c);
                }
                out.push(Token::Word(s));
            }
        }
    }
}

/// A cursor over one line's tokens.
pub(crate) struct Tokens {
    tokens: Vec<Token>,
    at: usize,
}

impl Tokens {
    pub(crate) fn new(line: &str) -> Tokens {
        Tokens {
            tokens: tokenize(line),
            at: 0,
        }
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    pub(crate) fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    pub(crate) fn at_end(&self) -> bool {
        self.at >= self.tokens.len()
    }

    /// Consumes the bare word `kw` if it is next.
    pub(crate) fn eat_word(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == kw) {
            self.at += 1;
            return true;
        }
        false
    }

    pub(crate) fn eat_comma(&mut self) -> bool {
        if self.peek() == Some(&Token::Comma) {
            self.at += 1;
            return true;
        }
        false
    }

    /// A bare word or a quoted string, consumed.
    pub(crate) fn name(&mut self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(w) | Token::Quoted(w)) => {
                let w = w.clone();
                self.at += 1;
                Some(w)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Token {
        Token::Word(s.into())
    }

    #[test]
    fn words_quotes_commas_and_comments() {
        assert_eq!(
            tokenize("host\t tmp1,all  user1 , \"a , b\" # comment"),
            vec![
                w("host"),
                w("tmp1"),
                Token::Comma,
                w("all"),
                w("user1"),
                Token::Comma,
                Token::Quoted("a , b".into())
            ]
        );
        assert_eq!(
            tokenize("\"q1\"\"q2\" x#y"),
            vec![Token::Quoted("q1\"q2".into()), w("x")]
        );
        assert_eq!(tokenize(" \t # only a comment"), vec![]);
        assert_eq!(tokenize("\"open"), vec![Token::Bad]);
        // a quote ends a bare word
        assert_eq!(
            tokenize("ab\"c\""),
            vec![w("ab"), Token::Quoted("c".into())]
        );
    }
}
