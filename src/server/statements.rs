//! The statements the pooler prepares on servers (transaction / statement pooling): one
//! pooler-wide registry by content (query + parameter types -> `PGBOUNCER_<n>`, weak
//! references so unused ones are forgotten) and each server connection's LRU of what it has
//! prepared. Which client name maps to which statement is `client::link::prepared`.

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
    pub(crate) fn new(server_name: String, query_and_params: Bytes) -> Statement {
        Statement {
            server_name,
            query_and_params,
            validated: Default::default(),
        }
    }

    pub(crate) fn mark_validated(&self) {
        self.validated
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn is_validated(&self) -> bool {
        self.validated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A Parse message preparing this statement under its server name.
    pub(crate) fn parse_message(&self) -> Bytes {
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
    pub(crate) fn intern(&self, query_and_params: &[u8]) -> Arc<Statement> {
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

/// What one server connection has prepared, least recently used first out.
#[derive(Default)]
pub struct ServerStatements {
    /// Server name -> (statement, last use tick).
    entries: HashMap<String, (Arc<Statement>, u64)>,
    tick: u64,
}

impl ServerStatements {
    /// Marks a statement used; true if the server has it.
    pub(crate) fn touch(&mut self, server_name: &str) -> bool {
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
    pub(crate) fn insert(&mut self, stmt: Arc<Statement>, capacity: usize) -> Vec<Arc<Statement>> {
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
    pub(crate) fn remove(&mut self, server_name: &str) {
        self.entries.remove(server_name);
    }

    /// After `DEALLOCATE ALL` / `DISCARD ALL`: the server has nothing prepared.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_statements_are_forgotten() {
        let reg = StatementRegistry::default();
        for i in 0..1000 {
            drop(reg.intern(format!("select {i}\0\0\0").as_bytes()));
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
}
