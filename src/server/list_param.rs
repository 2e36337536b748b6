//! `search_path`-style list parameters (PostgreSQL's GUC_LIST_QUOTE) turned into a safe `SET`
//! value: each element becomes its own string literal.
//!
//! The server reports such a value already quoted as identifiers (`"$user", public`, or `""` for
//! an empty element), so it cannot be wrapped in one literal (that would make a single element
//! named `"$user", public`), nor sent as is (`SET search_path="";` is a syntax error: a
//! zero-length delimited identifier). Splitting it the way the server does
//! (SplitIdentifierString) and sending one literal per element keeps the value exact, including
//! case and empty elements, and no client-supplied text ever reaches the SQL unquoted.

/// The right-hand side of `SET search_path=...` for the reported or startup value `v`.
pub fn list_value_sql(v: &str) -> String {
    let elements = match split_identifiers(v) {
        Some(e) => e,
        // Unbalanced quotes: the server would refuse the value too; keep it one literal.
        None => vec![v.to_string()],
    };
    if elements.is_empty() {
        // An empty list has no SET spelling; one empty element is the closest, as PgBouncer.
        return "''".to_string();
    }
    elements
        .iter()
        .map(|e| format!("'{}'", e.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits a comma-separated identifier list: `"..."` elements keep their case (`""` inside is a
/// quote), bare ones are lower-cased, whitespace around elements is dropped. None if malformed.
fn split_identifiers(v: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    let skip_ws = |c: &mut std::iter::Peekable<std::str::Chars>| {
        while c.peek().is_some_and(|ch| ch.is_whitespace()) {
            c.next();
        }
    };
    skip_ws(&mut chars);
    if chars.peek().is_none() {
        return Some(out);
    }
    loop {
        skip_ws(&mut chars);
        let mut element = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        element.push('"');
                    }
                    '"' => break,
                    ch => element.push(ch),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch == ',' || ch.is_whitespace() {
                    break;
                }
                element.push(ch.to_ascii_lowercase());
                chars.next();
            }
            if element.is_empty() {
                return None;
            }
        }
        out.push(element);
        skip_ws(&mut chars);
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_values_become_one_literal_per_element() {
        assert_eq!(list_value_sql("\"$user\", public"), "'$user','public'");
        assert_eq!(list_value_sql("\"\""), "''");
        assert_eq!(list_value_sql(""), "''");
        assert_eq!(list_value_sql("\"My Schema\",x"), "'My Schema','x'");
        assert_eq!(list_value_sql("\"a\"\"b\""), "'a\"b'");
        assert_eq!(list_value_sql("Foo"), "'foo'");
    }

    #[test]
    fn nothing_reaches_sql_unquoted() {
        assert_eq!(
            list_value_sql("public; DROP TABLE t"),
            "'public; DROP TABLE t'"
        );
        assert_eq!(list_value_sql("it's"), "'it''s'");
        assert_eq!(list_value_sql("\"open"), "'\"open'");
    }
}
