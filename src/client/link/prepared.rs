//! Protocol-level prepared statements in transaction and statement pooling (PgBouncer 1.21+):
//! client statement names map to pooler-wide `PGBOUNCER_<n>` statements, each server keeps an
//! LRU of what it has prepared, and the Parse / Bind / Describe / Close messages that name a
//! statement are read and rewritten. Only the statement-name bookkeeping lives here; the watcher
//! (`client::watch`) decides what to send when.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, Bytes, BytesMut};

/// One distinct statement (query text + parameter types), shared by every client that
/// prepared the same thing.
#[derive(Debug)]
pub struct Statement {
    /// The name it has on servers: `PGBOUNCER_<n>`.
    pub server_name: String,
    /// The Parse body after the statement name: query, parameter count and types.
    pub query_and_params: Bytes,
    /// Some server accepted it once: a client preparing it again can be answered without a
    /// server (its Parse cannot fail for syntax), which libpq's synchronous PQprepare needs
    /// when every server is busy.
    validated: std::sync::atomic::AtomicBool,
}

impl Statement {
    pub fn new(server_name: String, query_and_params: Bytes) -> Statement {
        Statement {
            server_name,
            query_and_params,
            validated: Default::default(),
        }
    }

    pub fn mark_validated(&self) {
        self.validated
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_validated(&self) -> bool {
        self.validated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A Parse message preparing this statement under its server name.
    pub fn parse_message(&self) -> Bytes {
        let mut b =
            BytesMut::with_capacity(6 + self.server_name.len() + self.query_and_params.len());
        b.put_u8(b'P');
        b.put_u32((4 + self.server_name.len() + 1 + self.query_and_params.len()) as u32);
        b.put_slice(self.server_name.as_bytes());
        b.put_u8(0);
        b.put_slice(&self.query_and_params);
        b.freeze()
    }
}

/// Every statement some client or server still uses, by content. Holds weak references so a
/// statement nobody uses any more is forgotten.
#[derive(Default)]
pub struct StatementRegistry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    by_content: HashMap<Bytes, Weak<Statement>>,
    next_id: u64,
    inserts_since_prune: usize,
}

impl StatementRegistry {
    /// The statement for this Parse body, created (with a fresh server name) if new.
    pub fn intern(&self, query_and_params: &[u8]) -> Arc<Statement> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = inner
            .by_content
            .get(query_and_params)
            .and_then(Weak::upgrade)
        {
            return s;
        }
        inner.next_id += 1;
        let stmt = Arc::new(Statement::new(
            format!("PGBOUNCER_{}", inner.next_id),
            Bytes::copy_from_slice(query_and_params),
        ));
        inner
            .by_content
            .insert(stmt.query_and_params.clone(), Arc::downgrade(&stmt));
        inner.inserts_since_prune += 1;
        // amortised cleanup: the map never holds more than about twice the live statements
        if inner.inserts_since_prune > inner.by_content.len() / 2 + 64 {
            inner.by_content.retain(|_, w| w.strong_count() > 0);
            inner.inserts_since_prune = 0;
        }
        stmt
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_content
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's named statements.
#[derive(Default)]
pub struct ClientStatements {
    by_name: HashMap<String, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// Adds a name; false if the client already uses it.
    pub fn insert(&mut self, name: &str, stmt: Arc<Statement>) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        self.by_name.insert(name.to_string(), stmt);
        true
    }

    pub fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// What one server connection has prepared, least recently used first out.
#[derive(Default)]
pub struct ServerStatements {
    /// Server name -> (statement, last use tick).
    entries: HashMap<String, (Arc<Statement>, u64)>,
    tick: u64,
}

impl ServerStatements {
    /// Marks a statement used; true if the server has it.
    pub fn touch(&mut self, server_name: &str) -> bool {
        self.tick += 1;
        match self.entries.get_mut(server_name) {
            Some(e) => {
                e.1 = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records a statement as prepared, returning the statements evicted to stay within
    /// `capacity` (the caller closes them on the server first).
    pub fn insert(&mut self, stmt: Arc<Statement>, capacity: usize) -> Vec<Arc<Statement>> {
        let mut evicted = Vec::new();
        while capacity > 0 && self.entries.len() >= capacity {
            // Linear scan: capacity is small (default 200) and eviction rare next to lookups.
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&oldest) {
                evicted.push(s);
            }
        }
        self.tick += 1;
        self.entries
            .insert(stmt.server_name.clone(), (stmt, self.tick));
        evicted
    }

    /// Forgets a statement (its Parse failed, or it was closed).
    pub fn remove(&mut self, server_name: &str) {
        self.entries.remove(server_name);
    }

    /// After `DEALLOCATE ALL` / `DISCARD ALL`: the server has nothing prepared.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A malformed message naming a statement.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("broken {0} packet")]
pub struct BrokenPacket(pub &'static str);

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
pub fn parse_parse(msg: &[u8]) -> Result<(&str, &[u8]), BrokenPacket> {
    let (name, after) = cstr(msg, 5, "Parse")?;
    Ok((name, &msg[after..]))
}

/// A Bind message: portal name, statement name, and the offset where the rest begins.
pub fn parse_bind(msg: &[u8]) -> Result<(&str, &str, usize), BrokenPacket> {
    let (portal, after_portal) = cstr(msg, 5, "Bind")?;
    let (stmt, after_stmt) = cstr(msg, after_portal, "Bind")?;
    Ok((portal, stmt, after_stmt))
}

/// A Describe or Close message: the kind ('S' statement, 'P' portal) and the name.
pub fn parse_target<'m>(msg: &'m [u8], what: &'static str) -> Result<(u8, &'m str), BrokenPacket> {
    let kind = *msg.get(5).ok_or(BrokenPacket(what))?;
    let (name, _) = cstr(msg, 6, what)?;
    Ok((kind, name))
}

/// The start of a Bind naming `server_name` instead of the client's statement: tag, length,
/// portal, statement. The client's message from `rest_at` on follows unchanged.
pub fn bind_prefix(msg_len: usize, portal: &str, client_name: &str, server_name: &str) -> Bytes {
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
pub fn target_message(tag: u8, kind: u8, name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(7 + name.len());
    b.put_u8(tag);
    b.put_u32((4 + 1 + name.len() + 1) as u32);
    b.put_u8(kind);
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.freeze()
}

/// A body-less backend message (ParseComplete '1', CloseComplete '3').
pub fn empty_message(tag: u8) -> Bytes {
    Bytes::copy_from_slice(&[tag, 0, 0, 0, 4])
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unused_statements_are_forgotten() {
        let reg = StatementRegistry::default();
        for i in 0..1000 {
            let m = parse_msg("x", &format!("select {i}"));
            drop(reg.intern(parse_parse(&m).unwrap().1));
        }
        assert!(
            reg.len() < 200,
            "registry kept {} dead statements",
            reg.len()
        );
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let reg = StatementRegistry::default();
        let mut server = ServerStatements::default();
        let a = reg.intern(b"a\0\0\0");
        let b = reg.intern(b"b\0\0\0");
        let c = reg.intern(b"c\0\0\0");
        assert!(server.insert(a.clone(), 2).is_empty());
        assert!(server.insert(b.clone(), 2).is_empty());
        assert!(server.touch(&a.server_name));
        let evicted = server.insert(c.clone(), 2);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].server_name, b.server_name);
        assert!(server.touch(&a.server_name) && server.touch(&c.server_name));
        assert!(!server.touch(&b.server_name));
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
