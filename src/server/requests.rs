//! Requests in flight on a linked server, in order, and what to do with their responses:
//! forward them, swallow them (the pooler's own Parse / Close), or answer in the server's place
//! (a Parse the server already has, a Close answered locally). A server is only handed to
//! another client when this queue is empty at an idle ReadyForQuery. The client link's
//! watcher fills it; it lives here so that each server connection keeps its (empty) queue
//! between links, for its capacity: no allocation per transaction.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::server::statements::Statement;

/// Which backend message completes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsAt {
    /// Parse: ParseComplete '1'.
    ParseComplete,
    /// Bind: BindComplete '2'.
    BindComplete,
    /// Close: CloseComplete '3'.
    CloseComplete,
    /// Describe: RowDescription 'T' or NoData 'n' (after ParameterDescription for statements).
    Description,
    /// Execute: CommandComplete 'C', EmptyQueryResponse 'I' or PortalSuspended 's'.
    ExecuteEnd,
    /// Sync, Query, FunctionCall: ReadyForQuery 'Z'.
    ReadyForQuery,
}

impl EndsAt {
    /// The request kind for a frontend tag that gets a response, if it does.
    pub fn for_request(tag: u8) -> Option<EndsAt> {
        Some(match tag {
            b'P' => EndsAt::ParseComplete,
            b'B' => EndsAt::BindComplete,
            b'C' => EndsAt::CloseComplete,
            b'D' => EndsAt::Description,
            b'E' => EndsAt::ExecuteEnd,
            b'S' | b'Q' | b'F' => EndsAt::ReadyForQuery,
            _ => return None,
        })
    }

    fn ended_by(self, tag: u8) -> bool {
        match self {
            EndsAt::ParseComplete => tag == b'1',
            EndsAt::BindComplete => tag == b'2',
            EndsAt::CloseComplete => tag == b'3',
            EndsAt::Description => tag == b'T' || tag == b'n',
            EndsAt::ExecuteEnd => matches!(tag, b'C' | b'I' | b's'),
            EndsAt::ReadyForQuery => tag == b'Z',
        }
    }
}

/// What happens to a request's responses.
#[derive(Debug, Clone)]
pub enum Disposition {
    /// The client asked; responses go to it.
    Forward,
    /// The pooler asked; the reply is dropped (an error still reaches the client).
    Swallow,
    /// The server is not asked; this message answers the client when the request's turn comes.
    Fake(Bytes),
}

#[derive(Debug, Clone)]
struct Request {
    ends_at: EndsAt,
    disposition: Disposition,
    /// For Parse requests: the statement the server is being asked to prepare, forgotten by
    /// the server's cache if the Parse fails or is skipped after an earlier error.
    prepares: Option<Arc<Statement>>,
    /// A Sync (not a Query): where the server stops skipping after an extended-protocol error.
    is_sync: bool,
    /// Not a request: where the client ended a COPY IN (CopyDone / CopyFail). Syncs before it
    /// and after the COPY started are ignored by the server, so get no ReadyForQuery.
    is_copy_end: bool,
}

/// What to do with one backend message.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Forward,
    Drop,
}

/// The in-order queue of requests a server still owes responses to.
#[derive(Default)]
pub struct RequestQueue {
    queue: VecDeque<Request>,
    /// Statements whose Parse failed or was skipped: the caller removes them from the
    /// server's cache.
    pub failed_prepares: Vec<Arc<Statement>>,
    /// The server is in COPY IN and the client has not ended it yet: Syncs are not requests.
    pub in_copy_in: bool,
    /// An extended-protocol error came before the client sent its Sync: the server skips
    /// (answers nothing to) every message until that Sync arrives.
    skipping_to_sync: bool,
}

impl RequestQueue {
    /// Empties the queue for a new link, keeping its capacity (a server released idle owes
    /// nothing, so this is a formality there; a link never inherits another's state).
    pub fn reset(&mut self) -> &mut RequestQueue {
        self.queue.clear();
        self.failed_prepares.clear();
        self.in_copy_in = false;
        self.skipping_to_sync = false;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Records a request sent (or answered locally), in client order.
    pub fn push(
        &mut self,
        tag: u8,
        ends_at: EndsAt,
        disposition: Disposition,
        prepares: Option<Arc<Statement>>,
    ) {
        if self.skipping_to_sync && tag != b'S' {
            // The server discards it without a reply; nothing is owed.
            if let Some(stmt) = prepares {
                self.failed_prepares.push(stmt);
            }
            return;
        }
        if tag == b'S' {
            self.skipping_to_sync = false;
        }
        self.queue.push_back(Request {
            ends_at,
            disposition,
            prepares,
            is_sync: tag == b'S',
            is_copy_end: false,
        });
    }

    /// A copy end at the head belongs to a COPY that never started (it failed first).
    fn drop_stale_copy_ends(&mut self) {
        while self.queue.front().is_some_and(|r| r.is_copy_end) {
            self.queue.pop_front();
        }
    }

    /// Records that the client ended a COPY IN it had started.
    pub fn push_copy_end(&mut self) {
        self.queue.push_back(Request {
            ends_at: EndsAt::ReadyForQuery,
            disposition: Disposition::Forward,
            prepares: None,
            is_sync: false,
            is_copy_end: true,
        });
    }

    /// The server entered COPY IN (CopyInResponse) for the request at the head: Syncs the
    /// client sent since, up to its CopyDone / CopyFail, are ignored by the server. Returns
    /// false when the client has not ended the COPY yet (later Syncs are ignored too, until it
    /// does).
    fn enter_copy_in(&mut self) -> bool {
        let mut i = 1;
        while i < self.queue.len() {
            if self.queue[i].is_copy_end {
                self.queue.remove(i);
                return true;
            }
            if self.queue[i].is_sync {
                self.queue.remove(i);
            } else {
                i += 1;
            }
        }
        false
    }

    /// Fake responses now at the head of the queue (nothing real is owed before them).
    pub fn take_due_fakes(&mut self, out: &mut Vec<Bytes>) {
        while let Some(Request {
            disposition: Disposition::Fake(_),
            ..
        }) = self.queue.front()
        {
            if let Some(Request {
                disposition: Disposition::Fake(msg),
                ..
            }) = self.queue.pop_front()
            {
                out.push(msg);
            }
        }
    }

    /// Routes one backend message. Fakes due before it are pushed to `before`. Asynchronous
    /// messages (NoticeResponse, ParameterStatus, NotificationResponse) pass untouched.
    pub fn on_response(&mut self, tag: u8, before: &mut Vec<Bytes>) -> Route {
        if matches!(tag, b'N' | b'S' | b'A') {
            return Route::Forward;
        }
        self.take_due_fakes(before);
        let Some(head) = self.queue.front() else {
            // nothing owed (e.g. a FATAL error as the server goes away): the client's anyway
            return Route::Forward;
        };
        let swallow = matches!(head.disposition, Disposition::Swallow);
        let ends_at = head.ends_at;
        if tag == b'E' && ends_at != EndsAt::ReadyForQuery {
            // Extended protocol: the failed request ends here and the server skips everything
            // up to the next Sync, whose ReadyForQuery still comes.
            self.fail_until_sync();
            return Route::Forward;
        }
        if tag == b'G' {
            self.in_copy_in = !self.enter_copy_in();
        }
        if ends_at.ended_by(tag) {
            if let Some(Request {
                prepares: Some(stmt),
                ..
            }) = self.queue.pop_front()
            {
                stmt.mark_validated();
            }
            self.drop_stale_copy_ends();
        }
        if swallow { Route::Drop } else { Route::Forward }
    }

    fn fail_until_sync(&mut self) {
        while let Some(front) = self.queue.front() {
            if front.is_sync {
                return;
            }
            if let Some(req) = self.queue.pop_front() {
                if let Some(stmt) = req.prepares {
                    self.failed_prepares.push(stmt);
                }
            }
        }
        // the Sync is still to come: whatever the client sends until then is skipped too
        self.skipping_to_sync = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(q: &mut RequestQueue, tag: u8) {
        q.push(
            tag,
            EndsAt::for_request(tag).unwrap(),
            Disposition::Forward,
            None,
        );
    }

    #[test]
    fn pipeline_empties_only_at_the_last_ready_for_query() {
        let mut q = RequestQueue::default();
        for t in [b'P', b'B', b'E', b'S', b'B', b'E', b'S'] {
            fwd(&mut q, t);
        }
        let mut before = Vec::new();
        for t in [b'1', b'2', b'D', b'C', b'Z', b'2', b'D', b'D', b'C'] {
            assert_eq!(q.on_response(t, &mut before), Route::Forward);
        }
        assert!(!q.is_empty());
        q.on_response(b'Z', &mut before);
        assert!(q.is_empty());
        assert!(before.is_empty());
    }

    #[test]
    fn fakes_come_out_in_order() {
        let mut q = RequestQueue::default();
        let fake = Bytes::from_static(b"1\0\0\0\x04");
        q.push(
            b'P',
            EndsAt::ParseComplete,
            Disposition::Fake(fake.clone()),
            None,
        );
        fwd(&mut q, b'B');
        fwd(&mut q, b'E');
        q.push(
            b'C',
            EndsAt::CloseComplete,
            Disposition::Fake(Bytes::from_static(b"3\0\0\0\x04")),
            None,
        );
        fwd(&mut q, b'S');
        let mut before = Vec::new();
        q.on_response(b'2', &mut before);
        assert_eq!(before, vec![fake]);
        before.clear();
        q.on_response(b'C', &mut before);
        assert!(before.is_empty());
        q.on_response(b'Z', &mut before);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0][0], b'3');
        assert!(q.is_empty());
    }

    #[test]
    fn swallowed_parse_reply_is_dropped() {
        let mut q = RequestQueue::default();
        q.push(b'P', EndsAt::ParseComplete, Disposition::Swallow, None);
        fwd(&mut q, b'B');
        let mut before = Vec::new();
        assert_eq!(q.on_response(b'1', &mut before), Route::Drop);
        assert_eq!(q.on_response(b'2', &mut before), Route::Forward);
        assert!(q.is_empty());
    }

    #[test]
    fn extended_error_before_the_sync_skips_later_requests() {
        let mut q = RequestQueue::default();
        fwd(&mut q, b'P');
        fwd(&mut q, b'B');
        fwd(&mut q, b'E');
        let mut before = Vec::new();
        assert_eq!(q.on_response(b'E', &mut before), Route::Forward);
        assert!(q.is_empty());
        // the client goes on before its Sync: the server answers none of it
        fwd(&mut q, b'P');
        fwd(&mut q, b'E');
        assert!(q.is_empty());
        fwd(&mut q, b'S');
        assert_eq!(q.on_response(b'Z', &mut before), Route::Forward);
        assert!(q.is_empty());
        fwd(&mut q, b'Q');
        assert_eq!(q.len(), 1, "after the Sync requests count again");
    }

    #[test]
    fn extended_error_skips_to_sync() {
        let mut q = RequestQueue::default();
        let stmt = Arc::new(Statement::new("PGBOUNCER_1".into(), Bytes::new()));
        q.push(
            b'P',
            EndsAt::ParseComplete,
            Disposition::Forward,
            Some(stmt),
        );
        fwd(&mut q, b'B');
        q.push(
            b'C',
            EndsAt::CloseComplete,
            Disposition::Fake(Bytes::from_static(b"3\0\0\0\x04")),
            None,
        );
        fwd(&mut q, b'E');
        fwd(&mut q, b'S');
        let mut before = Vec::new();
        assert_eq!(q.on_response(b'E', &mut before), Route::Forward);
        assert_eq!(q.failed_prepares.len(), 1);
        assert_eq!(q.len(), 1);
        q.on_response(b'Z', &mut before);
        assert!(q.is_empty() && before.is_empty());
    }

    #[test]
    fn syncs_sent_during_copy_in_get_no_ready_for_query() {
        // tokio-postgres: Bind Execute Sync, then CopyData CopyDone Sync
        let mut q = RequestQueue::default();
        fwd(&mut q, b'B');
        fwd(&mut q, b'E');
        fwd(&mut q, b'S');
        let mut before = Vec::new();
        q.on_response(b'2', &mut before);
        q.on_response(b'G', &mut before);
        assert!(q.in_copy_in, "client has not sent CopyDone yet");
        // while in_copy_in the watcher queues neither Syncs nor a copy end
        q.in_copy_in = false;
        fwd(&mut q, b'S');
        q.on_response(b'C', &mut before);
        q.on_response(b'Z', &mut before);
        assert!(q.is_empty());
    }

    #[test]
    fn copy_end_already_sent_when_copy_in_starts() {
        let mut q = RequestQueue::default();
        fwd(&mut q, b'Q');
        q.push_copy_end();
        let mut before = Vec::new();
        q.on_response(b'G', &mut before);
        assert!(!q.in_copy_in);
        q.on_response(b'C', &mut before);
        q.on_response(b'Z', &mut before);
        assert!(q.is_empty());
    }

    #[test]
    fn simple_query_error_waits_for_ready_for_query() {
        let mut q = RequestQueue::default();
        fwd(&mut q, b'Q');
        let mut before = Vec::new();
        for t in [b'T', b'D', b'C', b'E'] {
            assert_eq!(q.on_response(t, &mut before), Route::Forward);
        }
        assert!(!q.is_empty());
        q.on_response(b'Z', &mut before);
        assert!(q.is_empty());
    }
}
