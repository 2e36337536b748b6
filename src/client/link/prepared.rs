//! Protocol-level prepared statements in transaction and statement pooling (PgBouncer 1.21+):
//! each client's statement names, and reading and rewriting the Parse / Bind / Describe /
//! Close messages that name a statement. The statements themselves (pooler-wide registry,
//! each server's LRU) live in `server::statements`; the watcher (`client::link::watch`)
//! decides what to send when.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::server::statements::Statement;

/// A client's named statements.
#[derive(Default)]
pub struct ClientStatements {
    by_name: HashMap<String, Arc<Statement>>,
}

impl ClientStatements {
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// Adds a name; false if the client already uses it.
    pub(crate) fn insert(&mut self, name: &str, stmt: Arc<Statement>) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        self.by_name.insert(name.to_string(), stmt);
        true
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A malformed message naming a statement.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("broken {0} packet")]
pub(crate) struct BrokenPacket(pub &'static str);

/// Reads a NUL-terminated string at `at`; returns it and the offset after the NUL.
fn cstr<'m>(
    msg: &'m [u8],
    at: usize,
    what: &'static str,
) -> Result<(&'m str, usize), BrokenPacket> {
    let rest = msg.get(at..).ok_or(BrokenPacket(what))?;
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(BrokenPacket(what))?;
    let s = std::str::from_utf8(&rest[..nul]).map_err(|_| BrokenPacket(what))?;
    Ok((s, at + nul + 1))
}

/// A Parse message: statement name and the body after it.
pub(crate) fn parse_parse(msg: &[u8]) -> Result<(&str, &[u8]), BrokenPacket> {
    let (name, after) = cstr(msg, 5, "Parse")?;
    Ok((name, &msg[after..]))
}

/// A Bind message: portal name, statement name, and the offset where the rest begins.
pub(crate) fn parse_bind(msg: &[u8]) -> Result<(&str, &str, usize), BrokenPacket> {
    let (portal, after_portal) = cstr(msg, 5, "Bind")?;
    let (stmt, after_stmt) = cstr(msg, after_portal, "Bind")?;
    Ok((portal, stmt, after_stmt))
}

/// A Describe or Close message: the kind ('S' statement, 'P' portal) and the name.
pub(crate) fn parse_target<'m>(
    msg: &'m [u8],
    what: &'static str,
) -> Result<(u8, &'m str), BrokenPacket> {
    let kind = *msg.get(5).ok_or(BrokenPacket(what))?;
    let (name, _) = cstr(msg, 6, what)?;
    Ok((kind, name))
}

/// The start of a Bind naming `server_name` instead of the client's statement: tag, length,
/// portal, statement. The client's message from `rest_at` on follows unchanged.
pub(crate) fn bind_prefix(
    msg_len: usize,
    portal: &str,
    client_name: &str,
    server_name: &str,
) -> Bytes {
    let new_len = msg_len - 1 - client_name.len() + server_name.len();
    let mut b = BytesMut::with_capacity(7 + portal.len() + server_name.len());
    b.put_u8(b'B');
    b.put_u32(new_len as u32);
    b.put_slice(portal.as_bytes());
    b.put_u8(0);
    b.put_slice(server_name.as_bytes());
    b.put_u8(0);
    b.freeze()
}

/// A Describe or Close message for a statement.
pub(crate) fn target_message(tag: u8, kind: u8, name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(7 + name.len());
    b.put_u8(tag);
    b.put_u32((4 + 1 + name.len() + 1) as u32);
    b.put_u8(kind);
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.freeze()
}

/// A body-less backend message (ParseComplete '1', CloseComplete '3').
pub(crate) fn empty_message(tag: u8) -> Bytes {
    Bytes::copy_from_slice(&[tag, 0, 0, 0, 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::statements::StatementRegistry;

    fn parse_msg(name: &str, query: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(query.as_bytes());
        body.push(0);
        body.extend_from_slice(&0u16.to_be_bytes());
        let mut m = vec![b'P'];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn same_query_same_server_name_and_rebuilt_parse_is_valid() {
        let reg = StatementRegistry::default();
        let m1 = parse_msg("a", "select 1");
        let m2 = parse_msg("other", "select 1");
        let (_, body1) = parse_parse(&m1).unwrap();
        let (_, body2) = parse_parse(&m2).unwrap();
        let s1 = reg.intern(body1);
        let s2 = reg.intern(body2);
        assert!(Arc::ptr_eq(&s1, &s2));
        let rebuilt = s1.parse_message();
        assert_eq!(rebuilt, Bytes::from(parse_msg("PGBOUNCER_1", "select 1")));
        let s3 = reg.intern(parse_parse(&parse_msg("a", "select 2")).unwrap().1);
        assert_eq!(s3.server_name, "PGBOUNCER_2");
    }

    #[test]
    fn bind_rewrite_keeps_the_rest() {
        // Bind: portal "", statement "s1", no formats, no params, no result formats
        let mut m = vec![b'B'];
        let body = b"\0s1\0\0\0\0\0\0\0";
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        let (portal, stmt, rest_at) = parse_bind(&m).unwrap();
        assert_eq!((portal, stmt), ("", "s1"));
        let prefix = bind_prefix(m.len(), portal, stmt, "PGBOUNCER_10");
        let mut rebuilt = prefix.to_vec();
        rebuilt.extend_from_slice(&m[rest_at..]);
        let len = u32::from_be_bytes(rebuilt[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, rebuilt.len());
        assert_eq!(parse_bind(&rebuilt).unwrap().1, "PGBOUNCER_10");
    }

    #[test]
    fn broken_messages_are_errors_not_panics() {
        assert!(parse_parse(b"P\0\0\0\x05x").is_err());
        assert!(parse_bind(b"B\0\0\0\x06\0").is_err());
        assert!(parse_target(b"D\0\0\0\x04", "Describe").is_err());
        assert!(parse_target(b"C\0\0\0\x05S", "Close").is_err());
        assert!(parse_parse(b"P").is_err());
    }
}
