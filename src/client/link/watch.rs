//! What the relay reads while a client is linked to a server, in every pool mode: requests are
//! queued as they go out and matched with their responses (so a server is only released at an
//! idle ReadyForQuery with nothing owed), ParameterStatus keeps both sides' tracked values,
//! timings feed the pool's statistics and timeouts, and in transaction / statement pooling the
//! statement-naming messages are rewritten for prepared-statement support.
//!
//! Everything else (DataRow, CopyData, Bind parameters...) streams through unread.

use std::time::Instant;

use bytes::Bytes;

use crate::client::error::ClientError;
use crate::client::link::prepared::{
    BrokenPacket, ClientStatements, bind_prefix, empty_message, parse_bind, parse_parse,
    parse_target, target_message,
};
use crate::config::PoolMode;
use crate::net::relay::{Dir, Verdict, Watcher};
use crate::protocol::backend::parse_parameter_status;
use crate::protocol::pooler_errors::{
    PREPARED_STATEMENT_IN_USE, PREPARED_STATEMENT_MISSING, STATEMENT_MODE_TRANSACTION,
};
use crate::server::params::{ParamSet, is_tracked};
use crate::server::requests::{Disposition, EndsAt, RequestQueue, Route};
use crate::server::statements::{ServerStatements, Statement, StatementRegistry};
use crate::stats::PoolStats;

/// Prepared-statement state a link works with: the client's names, the server's cache.
pub struct PreparedLink<'a> {
    pub registry: &'a StatementRegistry,
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    /// `max_prepared_statements`: the server cache size.
    pub capacity: usize,
}

/// Times the session loop's timeouts look at.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the oldest unanswered request went out (None while nothing is owed).
    pub query_start: Option<Instant>,
    /// When the current transaction began (None outside a transaction).
    pub xact_start: Option<Instant>,
    /// When the server last became idle inside a transaction (None otherwise).
    pub idle_in_xact_since: Option<Instant>,
}

/// The watcher of one link (one client on one server until released).
pub struct LinkWatcher<'a> {
    pub mode: PoolMode,
    /// The server's queue (kept with its connection between links, for its capacity).
    pub requests: &'a mut RequestQueue,
    /// Extended-protocol messages sent since the last Sync.
    pub unsynced: bool,
    /// Status byte of the last ReadyForQuery ('I', 'T', 'E').
    pub status: u8,
    pub server_params: &'a mut ParamSet,
    pub client_params: &'a mut ParamSet,
    pub tracked: &'a [String],
    pub prepared: Option<PreparedLink<'a>>,
    pub stats: &'a PoolStats,
    pub timing: Timing,
    /// Transaction / statement pooling: the server is idle with nothing owed.
    pub release_ready: bool,
    /// Why the client must be disconnected, when the watcher stopped the relay for it.
    pub failure: Option<ClientError>,
    /// The client said Terminate.
    pub client_terminated: bool,
}

impl<'a> LinkWatcher<'a> {
    pub fn new(
        mode: PoolMode,
        requests: &'a mut RequestQueue,
        server_params: &'a mut ParamSet,
        client_params: &'a mut ParamSet,
        tracked: &'a [String],
        prepared: Option<PreparedLink<'a>>,
        stats: &'a PoolStats,
    ) -> LinkWatcher<'a> {
        LinkWatcher {
            mode,
            requests: requests.reset(),
            unsynced: false,
            status: b'I',
            server_params,
            client_params,
            tracked,
            prepared,
            stats,
            timing: Timing {
                query_start: None,
                xact_start: None,
                idle_in_xact_since: None,
            },
            release_ready: false,
            failure: None,
            client_terminated: false,
        }
    }

    /// Idle, outside a transaction, nothing owed: safe to reset and reuse.
    pub fn is_idle(&self) -> bool {
        self.requests.is_empty() && !self.unsynced && self.status == b'I'
    }

    fn fail(&mut self, e: ClientError) -> Verdict {
        self.failure = Some(e);
        Verdict::DropAndStop
    }

    fn broken(&mut self, e: BrokenPacket) -> Verdict {
        self.fail(crate::client::error::protocol(e.to_string()))
    }

    /// Bookkeeping common to every request the client sends.
    fn note_request(&mut self, tag: u8) {
        match tag {
            b'P' | b'B' | b'D' | b'E' | b'C' => self.unsynced = true,
            b'S' => self.unsynced = false,
            _ => {}
        }
        if EndsAt::for_request(tag).is_none() {
            return; // Flush, CopyData/Done/Fail: no response of their own
        }
        self.release_ready = false;
        if self.timing.query_start.is_none() {
            let now = Instant::now();
            self.timing.query_start = Some(now);
            self.timing.idle_in_xact_since = None;
            if self.timing.xact_start.is_none() {
                self.timing.xact_start = Some(now);
            }
        }
    }

    fn forward_request(&mut self, tag: u8) {
        match tag {
            b'c' | b'f' => {
                // CopyDone / CopyFail: the Syncs the server ignored during COPY IN end here
                if self.requests.in_copy_in {
                    self.requests.in_copy_in = false;
                } else {
                    self.requests.push_copy_end();
                }
                return;
            }
            b'S' | b'H' if self.requests.in_copy_in => return,
            _ => {}
        }
        self.note_request(tag);
        if let Some(ends) = EndsAt::for_request(tag) {
            self.requests.push(tag, ends, Disposition::Forward, None);
        }
    }

    fn on_ready_for_query(&mut self, msg: &[u8]) -> Verdict {
        let status = msg.get(5).copied().unwrap_or(b'I');
        self.status = status;
        let now = Instant::now();
        if self.requests.is_empty() {
            if let Some(start) = self.timing.query_start.take() {
                self.stats.record_query(now.duration_since(start));
            }
            if status == b'I' {
                if let Some(start) = self.timing.xact_start.take() {
                    self.stats.record_xact(now.duration_since(start));
                }
            } else {
                self.timing.idle_in_xact_since = Some(now);
            }
        }
        if status != b'I' && self.mode == PoolMode::Statement {
            return self.fail(STATEMENT_MODE_TRANSACTION);
        }
        self.release_ready = self.mode != PoolMode::Session && self.is_idle();
        Verdict::Forward
    }

    fn on_parameter_status(&mut self, msg: &[u8]) {
        if let Ok((name, value)) = parse_parameter_status(msg) {
            self.server_params.set(name, value);
            if is_tracked(name, self.tracked) {
                self.client_params.set(name, value);
            }
        }
    }

    fn on_command_complete(&mut self, msg: &[u8]) {
        // DEALLOCATE ALL / DISCARD ALL drop every prepared statement of the session
        let tag = msg.get(5..msg.len().saturating_sub(1)).unwrap_or_default();
        if tag == b"DEALLOCATE ALL" || tag == b"DISCARD ALL" {
            if let Some(p) = self.prepared.as_mut() {
                p.server.clear();
                p.client.clear();
            }
        }
    }

    fn forget_failed_prepares(&mut self) {
        if self.requests.failed_prepares.is_empty() {
            return;
        }
        let failed = std::mem::take(&mut self.requests.failed_prepares);
        if let Some(p) = self.prepared.as_mut() {
            for s in failed {
                p.server.remove(&s.server_name);
            }
        }
    }

    // ---- prepared statements (transaction / statement pooling) ---------------------------

    /// Prepares `stmt` on the server ahead of what the client sent, evicting the least
    /// recently used statements beyond the cache size.
    fn prepare_on_server(
        &mut self,
        stmt: std::sync::Arc<Statement>,
        disposition: Disposition,
        inject: &mut Vec<Bytes>,
    ) {
        let Some(p) = self.prepared.as_mut() else {
            return;
        };
        for old in p.server.insert(stmt.clone(), p.capacity) {
            inject.push(target_message(b'C', b'S', &old.server_name));
            self.requests
                .push(b'C', EndsAt::CloseComplete, Disposition::Swallow, None);
        }
        inject.push(stmt.parse_message());
        self.stats.record_server_parse();
        self.requests
            .push(b'P', EndsAt::ParseComplete, disposition, Some(stmt));
    }

    /// The client's statement by name, prepared on this server if it is not yet.
    fn ensure_prepared(
        &mut self,
        name: &str,
        inject: &mut Vec<Bytes>,
    ) -> Option<std::sync::Arc<Statement>> {
        let p = self.prepared.as_mut()?;
        let stmt = p.client.get(name)?.clone();
        if !p.server.touch(&stmt.server_name) {
            self.prepare_on_server(stmt.clone(), Disposition::Swallow, inject);
        }
        Some(stmt)
    }

    fn on_parse(&mut self, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict {
        let (name, body) = match parse_parse(msg) {
            Ok(v) => v,
            Err(e) => return self.broken(e),
        };
        self.note_request(b'P');
        if name.is_empty() {
            self.requests
                .push(b'P', EndsAt::ParseComplete, Disposition::Forward, None);
            return Verdict::Forward;
        }
        self.stats.record_client_parse();
        let Some(p) = self.prepared.as_mut() else {
            return Verdict::Forward;
        };
        let stmt = p.registry.intern(body);
        if !p.client.insert(name, stmt.clone()) {
            // PgBouncer's words (operators grep for them)
            tracing::error!("prepared statement '{name}' was already prepared");
            return self.fail(PREPARED_STATEMENT_IN_USE);
        }
        if p.server.touch(&stmt.server_name) {
            self.requests.push(
                b'P',
                EndsAt::ParseComplete,
                Disposition::Fake(empty_message(b'1')),
                None,
            );
        } else {
            self.prepare_on_server(stmt, Disposition::Forward, inject);
        }
        Verdict::Drop
    }

    fn on_bind(&mut self, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict {
        let (portal, stmt_name, rest_at) = match parse_bind(msg) {
            Ok(v) => v,
            Err(e) => return self.broken(e),
        };
        self.note_request(b'B');
        if stmt_name.is_empty() {
            self.requests
                .push(b'B', EndsAt::BindComplete, Disposition::Forward, None);
            return Verdict::Forward;
        }
        self.stats.record_bind();
        let Some(stmt) = self.ensure_prepared(stmt_name, inject) else {
            tracing::info!(name = stmt_name, "prepared statement not found");
            return self.fail(PREPARED_STATEMENT_MISSING);
        };
        inject.push(bind_prefix(msg.len(), portal, stmt_name, &stmt.server_name));
        self.requests
            .push(b'B', EndsAt::BindComplete, Disposition::Forward, None);
        Verdict::ForwardTail(rest_at)
    }

    fn on_describe(&mut self, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict {
        let (kind, name) = match parse_target(msg, "Describe") {
            Ok(v) => v,
            Err(e) => return self.broken(e),
        };
        self.note_request(b'D');
        if kind == b'S' && !name.is_empty() && self.prepared.is_some() {
            // any Parse that ensure_prepared queues must go (and be answered) first
            let Some(stmt) = self.ensure_prepared(name, inject) else {
                tracing::info!(name, "prepared statement not found");
                return self.fail(PREPARED_STATEMENT_MISSING);
            };
            self.requests
                .push(b'D', EndsAt::Description, Disposition::Forward, None);
            inject.push(target_message(b'D', b'S', &stmt.server_name));
            return Verdict::Drop;
        }
        self.requests
            .push(b'D', EndsAt::Description, Disposition::Forward, None);
        Verdict::Forward
    }

    fn on_close(&mut self, msg: &[u8]) -> Verdict {
        let (kind, name) = match parse_target(msg, "Close") {
            Ok(v) => v,
            Err(e) => return self.broken(e),
        };
        self.note_request(b'C');
        if kind == b'S' && !name.is_empty() {
            if let Some(p) = self.prepared.as_mut() {
                // The server keeps its copy (other clients may use it); only the name goes.
                p.client.remove(name);
                self.requests.push(
                    b'C',
                    EndsAt::CloseComplete,
                    Disposition::Fake(empty_message(b'3')),
                    None,
                );
                return Verdict::Drop;
            }
        }
        self.requests
            .push(b'C', EndsAt::CloseComplete, Disposition::Forward, None);
        Verdict::Forward
    }
}

impl Watcher for LinkWatcher<'_> {
    fn wants_whole(&self, dir: Dir, tag: u8) -> bool {
        let ps = self.prepared.is_some();
        match dir {
            Dir::ToServer => tag == b'X' || (ps && matches!(tag, b'P' | b'B' | b'D' | b'C')),
            Dir::ToClient => {
                matches!(tag, b'Z' | b'S') || (ps && matches!(tag, b'1' | b'3' | b'C'))
            }
        }
    }

    fn on_message(&mut self, dir: Dir, tag: u8, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict {
        tracing::trace!(?dir, tag = %(tag as char), len = msg.len(), queued = self.requests.len(), "message");
        match dir {
            Dir::ToServer => match tag {
                // Terminate: the server stays with the pool, so it never sees it
                b'X' => {
                    self.client_terminated = true;
                    Verdict::DropAndStop
                }
                b'P' => self.on_parse(msg, inject),
                b'B' => self.on_bind(msg, inject),
                b'D' => self.on_describe(msg, inject),
                b'C' => self.on_close(msg),
                _ => {
                    self.forward_request(tag);
                    Verdict::Forward
                }
            },
            Dir::ToClient => {
                let route = self.requests.on_response(tag, inject);
                let verdict = match tag {
                    b'Z' => self.on_ready_for_query(msg),
                    b'S' => {
                        self.on_parameter_status(msg);
                        Verdict::Forward
                    }
                    b'C' => {
                        self.on_command_complete(msg);
                        Verdict::Forward
                    }
                    _ => Verdict::Forward,
                };
                self.forget_failed_prepares();
                match (route, verdict) {
                    (Route::Drop, Verdict::Forward) => Verdict::Drop,
                    (_, v) => v,
                }
            }
        }
    }

    fn on_tag(&mut self, dir: Dir, tag: u8, inject: &mut Vec<Bytes>) {
        tracing::trace!(?dir, tag = %(tag as char), queued = self.requests.len(), "tag");
        match dir {
            Dir::ToServer => self.forward_request(tag),
            Dir::ToClient => {
                let _ = self.requests.on_response(tag, inject);
                self.forget_failed_prepares();
            }
        }
    }

    fn stop_when_drained(&self, dir: Dir) -> bool {
        dir == Dir::ToClient && self.release_ready
    }

    fn take_unsolicited(&mut self, dir: Dir, out: &mut Vec<Bytes>) {
        if dir == Dir::ToClient {
            self.requests.take_due_fakes(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::link::prepared::ClientStatements;
    use crate::server::statements::{ServerStatements, StatementRegistry};

    use crate::protocol::test_message as msg;

    struct Rig {
        registry: StatementRegistry,
        client: ClientStatements,
        server: ServerStatements,
        stats: PoolStats,
        queue: RequestQueue,
        sp: ParamSet,
        cp: ParamSet,
        tracked: Vec<String>,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                registry: StatementRegistry::default(),
                client: ClientStatements::default(),
                server: ServerStatements::default(),
                stats: PoolStats::default(),
                queue: RequestQueue::default(),
                sp: ParamSet::new(),
                cp: ParamSet::new(),
                tracked: vec!["TimeZone".into()],
            }
        }

        fn watcher(&mut self, capacity: usize) -> LinkWatcher<'_> {
            let prepared = PreparedLink {
                registry: &self.registry,
                client: &mut self.client,
                server: &mut self.server,
                capacity,
            };
            LinkWatcher::new(
                PoolMode::Transaction,
                &mut self.queue,
                &mut self.sp,
                &mut self.cp,
                &self.tracked,
                Some(prepared),
                &self.stats,
            )
        }
    }

    /// Feeds one message the way the relay does; returns the verdict and what was injected.
    fn feed(w: &mut LinkWatcher<'_>, dir: Dir, m: &[u8]) -> (Verdict, Vec<Bytes>) {
        let mut inject = Vec::new();
        let v = if w.wants_whole(dir, m[0]) {
            w.on_message(dir, m[0], m, &mut inject)
        } else {
            w.on_tag(dir, m[0], &mut inject);
            Verdict::Forward
        };
        (v, inject)
    }

    #[test]
    fn named_statement_moves_to_a_server_that_lacks_it() {
        let mut rig = Rig::new();
        // first server: the client's Parse is rewritten to the pooler-wide name
        {
            let mut w = rig.watcher(10);
            let (v, inj) = feed(&mut w, Dir::ToServer, &msg(b'P', b"s1\0SELECT 1\0\0\0"));
            assert_eq!(v, Verdict::Drop);
            assert_eq!(&inj[0][5..17], b"PGBOUNCER_1\0");
            feed(&mut w, Dir::ToServer, &msg(b'S', b""));
            assert_eq!(
                feed(&mut w, Dir::ToClient, &msg(b'1', b"")).0,
                Verdict::Forward
            );
            feed(&mut w, Dir::ToClient, &msg(b'Z', b"I"));
            assert!(w.release_ready);
        }
        // second server (empty cache): Bind gets the Parse injected first, its reply swallowed
        rig.server = ServerStatements::default();
        let mut w = rig.watcher(10);
        let bind = msg(b'B', b"\0s1\0\0\0\0\0\0\0");
        let (v, inj) = feed(&mut w, Dir::ToServer, &bind);
        assert_eq!(inj.len(), 2, "Parse, then the rewritten Bind prefix");
        assert_eq!(inj[0][0], b'P');
        assert_eq!(inj[1][0], b'B');
        assert_eq!(v, Verdict::ForwardTail(9));
        feed(&mut w, Dir::ToServer, &msg(b'E', b"\0\0\0\0\0"));
        feed(&mut w, Dir::ToServer, &msg(b'S', b""));
        assert_eq!(
            feed(&mut w, Dir::ToClient, &msg(b'1', b"")).0,
            Verdict::Drop
        );
        feed(&mut w, Dir::ToClient, &msg(b'2', b""));
        feed(&mut w, Dir::ToClient, &msg(b'C', b"SELECT 1\0"));
        feed(&mut w, Dir::ToClient, &msg(b'Z', b"I"));
        assert!(w.release_ready && w.failure.is_none());
    }

    #[test]
    fn unknown_statement_disconnects_with_pgbouncers_error() {
        let mut rig = Rig::new();
        let mut w = rig.watcher(10);
        let (v, _) = feed(&mut w, Dir::ToServer, &msg(b'B', b"\0nope\0\0\0\0\0\0\0"));
        assert_eq!(v, Verdict::DropAndStop);
        let f = w.failure.expect("failure");
        assert_eq!(f.message, "prepared statement did not exist");
    }

    #[test]
    fn statement_mode_refuses_a_transaction_status() {
        let mut rig = Rig::new();
        let mut w = LinkWatcher::new(
            PoolMode::Statement,
            &mut rig.queue,
            &mut rig.sp,
            &mut rig.cp,
            &rig.tracked,
            None,
            &rig.stats,
        );
        feed(&mut w, Dir::ToServer, &msg(b'Q', b"BEGIN\0"));
        let (v, _) = feed(&mut w, Dir::ToClient, &msg(b'Z', b"T"));
        assert_eq!(v, Verdict::DropAndStop);
        assert_eq!(
            w.failure.expect("failure").message,
            "transaction blocks not allowed in statement pooling mode"
        );
    }

    #[test]
    fn random_message_streams_never_panic() {
        // a small LCG instead of a fuzzing dependency; cargo-fuzz target: fuzz/link_watcher
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let tags = b"PBDECSHQFXdcf123nsTtZINAGWKR";
        for _ in 0..2000 {
            let mut rig = Rig::new();
            let mut w = rig.watcher(2);
            for _ in 0..40 {
                let dir = if next() % 2 == 0 {
                    Dir::ToServer
                } else {
                    Dir::ToClient
                };
                let tag = tags[(next() as usize) % tags.len()];
                let len = (next() % 12) as usize;
                let mut body: Vec<u8> = (0..len).map(|_| (next() % 4) as u8).collect();
                if next() % 3 == 0 {
                    body.push(0);
                }
                let mut inject = Vec::new();
                let m = msg(tag, &body);
                if w.wants_whole(dir, tag) {
                    if w.on_message(dir, tag, &m, &mut inject) == Verdict::DropAndStop {
                        break;
                    }
                } else {
                    w.on_tag(dir, tag, &mut inject);
                }
                w.take_unsolicited(Dir::ToClient, &mut inject);
            }
        }
    }
}
