//! The hot loop: moves PostgreSQL messages between a client and a server without copying them.
//!
//! Each direction owns one read buffer. Only message headers are parsed in place; whole runs of
//! messages leave as `Bytes` views of that buffer (`split_to(n).freeze()`), and a message larger
//! than what has arrived streams through piece by piece instead of being buffered whole. The few
//! messages the pooler must see (ReadyForQuery, ParameterStatus, Terminate, ...) are handed to a
//! [`Watcher`] whole; it decides whether they pass, are dropped, or end the relay.
//!
//! Both directions are driven from one future by polling, so a peer that stops reading only
//! stalls its own direction (no deadlock when both sides write at once) and no lock or task split
//! is needed.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::protocol::ProtocolError;
use crate::protocol::framing::peek_header;

/// Smallest free space kept in a read buffer before reading; also its first allocation.
const READ_CHUNK: usize = 16 * 1024;
/// Largest empty read buffer a pump keeps from a previous link (see [`Pump::with_pending`]).
const KEEP_IDLE_CAPACITY: usize = 4 * READ_CHUNK;
/// Iterations of the pump loop before yielding to other tasks.
const YIELD_BUDGET: u32 = 64;

/// What the watcher wants done with a message it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the message on.
    Forward,
    /// Pass the message on without its first `n` bytes (the watcher injected a rewritten
    /// prefix; the rest, e.g. a Bind's parameter values, still leaves without a copy).
    ForwardTail(usize),
    /// Drop the message; keep relaying.
    Drop,
    /// Drop the message and end the relay once everything before it has been written.
    DropAndStop,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server: requests.
    ToServer,
    /// Server to client: responses.
    ToClient,
}

/// Decides which messages the pooler must read, and what happens to them. One watcher sees
/// both directions, so request bookkeeping and response handling share plain fields.
pub trait Watcher {
    /// Whether messages with this tag must be seen whole. Others stream through, and
    /// [`Watcher::on_tag`] is told their tag only.
    fn wants_whole(&self, dir: Dir, tag: u8) -> bool;
    /// Called for every message the watcher asked to see whole. Bytes pushed to `inject`
    /// are sent, in order, before the message's own verdict applies.
    fn on_message(&mut self, dir: Dir, tag: u8, msg: &[u8], inject: &mut Vec<Bytes>) -> Verdict;
    /// Called with the tag of every message that streams through unseen; `inject` as above.
    fn on_tag(&mut self, dir: Dir, tag: u8, inject: &mut Vec<Bytes>);
    /// Called after a direction's writes have fully reached their destination and its input is
    /// empty: a point where the watcher may decide the relay should stop (a server is idle).
    fn stop_when_drained(&self, _dir: Dir) -> bool {
        false
    }
    /// Messages for `dir` that no incoming message carries (e.g. a locally answered Close
    /// that is due now). Polled after every step.
    fn take_unsolicited(&mut self, _dir: Dir, _out: &mut Vec<Bytes>) {}
}

/// One direction of the relay: a read buffer, the output queue and the streaming state.
pub struct Pump {
    rbuf: BytesMut,
    out: VecDeque<Bytes>,
    /// Bytes of a message that is streaming through and has not fully arrived yet.
    streaming_left: usize,
    needs_flush: bool,
    stop_requested: bool,
    max_packet_size: usize,
    /// Which way this pump moves messages (what the watcher is told).
    dir: Dir,
    /// Scratch for the watcher's injected messages, reused to avoid an allocation per message.
    inject: Vec<Bytes>,
    /// Total bytes this pump forwarded (for statistics).
    pub forwarded_bytes: u64,
}

/// Why the relay ended.
#[derive(Debug, thiserror::Error)]
pub enum RelayEnd {
    /// The client side's watcher stopped the relay (e.g. Terminate), everything flushed.
    #[error("client side stopped")]
    ClientStop,
    /// The server side's watcher stopped the relay, everything flushed.
    #[error("server side stopped")]
    ServerStop,
    /// The client closed its socket.
    #[error("client closed the connection")]
    ClientEof,
    /// The server closed its socket.
    #[error("server closed the connection")]
    ServerEof,
    /// Reading or writing the client failed.
    #[error("client connection error")]
    ClientError(#[source] io::Error),
    /// Reading or writing the server failed.
    #[error("server connection error")]
    ServerError(#[source] io::Error),
    /// The client sent a malformed or oversized message.
    #[error("bad message from the client")]
    ClientProtocol(#[source] ProtocolError),
    /// The server sent a malformed or oversized message.
    #[error("bad message from the server")]
    ServerProtocol(#[source] ProtocolError),
}

enum Side {
    Src,
    Dst,
}

enum StepEnd {
    Eof,
    Stop,
    Io(Side, io::Error),
    Protocol(ProtocolError),
}

impl Pump {
    pub fn new(dir: Dir, max_packet_size: usize) -> Pump {
        Pump {
            dir,
            inject: Vec::new(),
            // allocated at the first read: a pump that starts with pending input (the usual
            // case for a client's next request) reuses that buffer instead
            rbuf: BytesMut::new(),
            out: VecDeque::new(),
            streaming_left: 0,
            needs_flush: false,
            stop_requested: false,
            max_packet_size,
            forwarded_bytes: 0,
        }
    }

    /// Takes bytes that were read before the relay started (e.g. during login) as input. An
    /// empty buffer is taken too, for its capacity: a server's buffer from its previous link
    /// then serves this one, instead of a new 16 KiB at every transaction; one a big message
    /// grew is let go.
    pub fn with_pending(mut self, pending: BytesMut) -> Pump {
        if !pending.is_empty() || pending.capacity() <= KEEP_IDLE_CAPACITY {
            self.rbuf = pending;
        }
        self
    }

    /// Takes an output queue kept from a previous link (empty; for its capacity), so a link
    /// allocates no queue of its own.
    pub fn with_out_queue(mut self, queue: VecDeque<Bytes>) -> Pump {
        if queue.is_empty() {
            self.out = queue;
        }
        self
    }

    /// Hands back the output queue once it is empty (for the next link); an empty new one
    /// otherwise.
    pub fn take_out_queue(&mut self) -> VecDeque<Bytes> {
        if self.out.is_empty() {
            std::mem::take(&mut self.out)
        } else {
            VecDeque::new()
        }
    }

    /// True when nothing is buffered in either the input or the output of this direction.
    pub(crate) fn is_idle(&self) -> bool {
        self.rbuf.is_empty() && self.out.is_empty() && self.streaming_left == 0
    }

    /// True while bytes are queued for, or partly streamed to, the destination.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty() || self.streaming_left > 0
    }

    /// Hands back unread input (used when the relay stops at a message boundary).
    pub fn take_unread(&mut self) -> BytesMut {
        std::mem::take(&mut self.rbuf)
    }

    /// Cuts the buffered input into forwardable runs, consulting the watcher.
    fn scan<W: Watcher>(&mut self, watcher: &mut W) -> Result<(), ProtocolError> {
        let mut run = 0usize;
        loop {
            // In bounds: `run` only grows by bytes of `rbuf` already scanned (and is reset when
            // they are emitted), so it never passes `rbuf.len()`.
            #[allow(clippy::indexing_slicing)]
            let avail = &self.rbuf[run..];
            if self.streaming_left > 0 {
                let n = self.streaming_left.min(avail.len());
                if n == 0 {
                    break;
                }
                self.streaming_left -= n;
                run += n;
                continue;
            }
            let header = match peek_header(avail, self.max_packet_size) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(e),
            };
            if watcher.wants_whole(self.dir, header.tag) {
                let Some(whole) = avail.get(..header.len) else {
                    break; // wait for the rest; its size was bounded by peek_header
                };
                let verdict = watcher.on_message(self.dir, header.tag, whole, &mut self.inject);
                if !self.inject.is_empty() || verdict != Verdict::Forward {
                    self.emit(run);
                    run = 0;
                    self.push_injected();
                }
                match verdict {
                    Verdict::Forward => run += header.len,
                    Verdict::ForwardTail(skip) => {
                        let skip = skip.min(header.len);
                        self.rbuf.advance(skip);
                        run = header.len - skip;
                    }
                    Verdict::Drop => self.rbuf.advance(header.len),
                    Verdict::DropAndStop => {
                        self.rbuf.advance(header.len);
                        self.stop_requested = true;
                        return Ok(());
                    }
                }
            } else {
                watcher.on_tag(self.dir, header.tag, &mut self.inject);
                if !self.inject.is_empty() {
                    self.emit(run);
                    run = 0;
                    self.push_injected();
                }
                let avail_len = self.rbuf.len() - run;
                let n = header.len.min(avail_len);
                self.streaming_left = header.len - n;
                run += n;
            }
        }
        self.emit(run);
        Ok(())
    }

    fn push_injected(&mut self) {
        for b in self.inject.drain(..) {
            self.forwarded_bytes += b.len() as u64;
            self.out.push_back(b);
        }
    }

    /// Queues what the watcher has to say unprompted in this pump's direction.
    fn collect_unsolicited<W: Watcher>(&mut self, watcher: &mut W) {
        watcher.take_unsolicited(self.dir, &mut self.inject);
        self.push_injected();
    }

    fn emit(&mut self, n: usize) {
        if n > 0 {
            self.forwarded_bytes += n as u64;
            self.out.push_back(self.rbuf.split_to(n).freeze());
        }
    }

    /// Makes as much progress as possible without blocking. Returns Ready(Some(end)) when the
    /// direction is finished, Ready(None) after progress, Pending when blocked.
    fn poll_step<S, D, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
        watcher: &mut W,
    ) -> Poll<Option<StepEnd>>
    where
        S: AsyncRead + Unpin,
        D: AsyncWrite + Unpin,
        W: Watcher,
    {
        self.collect_unsolicited(watcher);
        // 1. drain the output queue
        while let Some(front) = self.out.front_mut() {
            match Pin::new(&mut *dst).poll_write(cx, front) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(StepEnd::Io(
                        Side::Dst,
                        io::ErrorKind::WriteZero.into(),
                    )));
                }
                Poll::Ready(Ok(n)) => {
                    front.advance(n);
                    if front.is_empty() {
                        self.out.pop_front();
                    }
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(StepEnd::Io(Side::Dst, e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.needs_flush {
            match Pin::new(&mut *dst).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(StepEnd::Io(Side::Dst, e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.stop_requested
            || (self.streaming_left == 0
                && self.rbuf.is_empty()
                && watcher.stop_when_drained(self.dir))
        {
            return Poll::Ready(Some(StepEnd::Stop));
        }
        // 2. read more input
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        match poll_read_buf(Pin::new(&mut *src), cx, &mut self.rbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Some(StepEnd::Eof)),
            Poll::Ready(Ok(_)) => match self.scan(watcher) {
                Ok(()) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(StepEnd::Protocol(e))),
            },
            Poll::Ready(Err(e)) => Poll::Ready(Some(StepEnd::Io(Side::Src, e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Scans input that was already buffered when the relay started.
    fn prime<W: Watcher>(&mut self, watcher: &mut W) -> Result<(), ProtocolError> {
        if self.rbuf.is_empty() {
            Ok(())
        } else {
            self.scan(watcher)
        }
    }
}

/// Relays between `client` and `server` until one side ends or a watcher stops it.
pub async fn relay<C, S, W>(
    client: &mut C,
    server: &mut S,
    c2s: &mut Pump,
    s2c: &mut Pump,
    watcher: &mut W,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
    W: Watcher,
{
    debug_assert!(c2s.dir == Dir::ToServer && s2c.dir == Dir::ToClient);
    if let Err(e) = c2s.prime(watcher) {
        return RelayEnd::ClientProtocol(e);
    }
    if let Err(e) = s2c.prime(watcher) {
        return RelayEnd::ServerProtocol(e);
    }
    poll_fn(|cx| {
        let mut budget = YIELD_BUDGET;
        loop {
            let mut progressed = false;
            match c2s.poll_step(cx, client, server, watcher) {
                Poll::Ready(Some(end)) => {
                    return Poll::Ready(match end {
                        StepEnd::Eof => RelayEnd::ClientEof,
                        StepEnd::Stop => RelayEnd::ClientStop,
                        StepEnd::Io(Side::Src, e) => RelayEnd::ClientError(e),
                        StepEnd::Io(Side::Dst, e) => RelayEnd::ServerError(e),
                        StepEnd::Protocol(e) => RelayEnd::ClientProtocol(e),
                    });
                }
                Poll::Ready(None) => progressed = true,
                Poll::Pending => {}
            }
            match s2c.poll_step(cx, server, client, watcher) {
                Poll::Ready(Some(end)) => {
                    return Poll::Ready(match end {
                        StepEnd::Eof => RelayEnd::ServerEof,
                        StepEnd::Stop => RelayEnd::ServerStop,
                        StepEnd::Io(Side::Src, e) => RelayEnd::ServerError(e),
                        StepEnd::Io(Side::Dst, e) => RelayEnd::ClientError(e),
                        StepEnd::Protocol(e) => RelayEnd::ServerProtocol(e),
                    });
                }
                Poll::Ready(None) => progressed = true,
                Poll::Pending => {}
            }
            if !progressed {
                return Poll::Pending;
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;
    use crate::protocol::ProtocolError;
    use crate::protocol::test_message as msg;

    /// Sees Terminate ('X') and ReadyForQuery ('Z') whole; drops and stops at Terminate,
    /// injects a NoticeResponse before every ReadyForQuery; records the tags it saw.
    #[derive(Default)]
    struct Recorder {
        tags: Vec<(Dir, u8)>,
    }

    impl Watcher for Recorder {
        fn wants_whole(&self, _dir: Dir, tag: u8) -> bool {
            tag == b'X' || tag == b'Z'
        }
        fn on_message(
            &mut self,
            dir: Dir,
            tag: u8,
            _msg: &[u8],
            inject: &mut Vec<Bytes>,
        ) -> Verdict {
            self.tags.push((dir, tag));
            match tag {
                b'X' => Verdict::DropAndStop,
                _ => {
                    inject.push(Bytes::from(msg(b'N', b"\0")));
                    Verdict::Forward
                }
            }
        }
        fn on_tag(&mut self, dir: Dir, tag: u8, _inject: &mut Vec<Bytes>) {
            self.tags.push((dir, tag));
        }
    }

    fn pumps(max: usize) -> (Pump, Pump) {
        (Pump::new(Dir::ToServer, max), Pump::new(Dir::ToClient, max))
    }

    #[tokio::test]
    async fn forwards_both_ways_injects_and_stops_at_the_watchers_word() {
        let (mut client, mut client_peer) = duplex(4096);
        let (mut server, mut server_peer) = duplex(4096);
        let (mut c2s, mut s2c) = pumps(1 << 20);
        let mut w = Recorder::default();
        let peers = tokio::spawn(async move {
            let query = msg(b'Q', b"SELECT 1\0");
            client_peer.write_all(&query).await.expect("client writes");
            let mut got = vec![0u8; query.len()];
            server_peer
                .read_exact(&mut got)
                .await
                .expect("server reads");
            assert_eq!(got, query, "the query reaches the server unchanged");
            server_peer
                .write_all(&msg(b'Z', b"I"))
                .await
                .expect("server writes");
            let mut back = vec![0u8; 6 + 6];
            client_peer
                .read_exact(&mut back)
                .await
                .expect("client reads");
            assert_eq!(back[..6], msg(b'N', b"\0")[..], "injected first");
            assert_eq!(back[6..], msg(b'Z', b"I")[..]);
            client_peer
                .write_all(&msg(b'X', b""))
                .await
                .expect("terminate");
            (client_peer, server_peer)
        });
        let end = relay(&mut client, &mut server, &mut c2s, &mut s2c, &mut w).await;
        let _peers = peers.await.expect("peer task");
        assert!(matches!(end, RelayEnd::ClientStop), "{end:?}");
        assert_eq!(
            w.tags,
            vec![
                (Dir::ToServer, b'Q'),
                (Dir::ToClient, b'Z'),
                (Dir::ToServer, b'X')
            ]
        );
        assert!(c2s.is_idle() && s2c.is_idle());
    }

    #[tokio::test]
    async fn an_oversized_message_ends_the_relay_with_its_protocol_error() {
        let (mut client, mut client_peer) = duplex(4096);
        let (mut server, _server_peer) = duplex(4096);
        let (mut c2s, mut s2c) = pumps(64);
        let mut w = Recorder::default();
        // announces 1000 bytes with a limit of 64: refused before anything is buffered
        let mut big = vec![b'Q'];
        big.extend_from_slice(&1000u32.to_be_bytes());
        client_peer.write_all(&big).await.expect("client writes");
        let end = relay(&mut client, &mut server, &mut c2s, &mut s2c, &mut w).await;
        match end {
            RelayEnd::ClientProtocol(e) => {
                assert!(matches!(e, ProtocolError::TooLong { .. }), "{e:?}");
                assert!(std::error::Error::source(&RelayEnd::ClientProtocol(e)).is_some());
            }
            other => panic!("expected ClientProtocol, got {other:?}"),
        }
    }

    /// Relays with one peer gone from the start: the client's if `client_gone`, else the
    /// server's.
    async fn relay_with_one_side_closed(client_gone: bool) -> RelayEnd {
        let (mut client, client_peer) = duplex(64);
        let (mut server, server_peer) = duplex(64);
        let (mut c2s, mut s2c) = pumps(1 << 20);
        let _kept = if client_gone {
            drop(client_peer);
            server_peer
        } else {
            drop(server_peer);
            client_peer
        };
        let mut w = Recorder::default();
        relay(&mut client, &mut server, &mut c2s, &mut s2c, &mut w).await
    }

    #[tokio::test]
    async fn each_side_closing_is_reported_as_its_eof() {
        let end = relay_with_one_side_closed(true).await;
        assert!(matches!(end, RelayEnd::ClientEof), "{end:?}");
        let end = relay_with_one_side_closed(false).await;
        assert!(matches!(end, RelayEnd::ServerEof), "{end:?}");
    }

    #[tokio::test]
    async fn a_message_larger_than_what_arrived_streams_through() {
        let (mut client, mut client_peer) = duplex(1 << 16);
        let (mut server, mut server_peer) = duplex(1 << 16);
        let (mut c2s, mut s2c) = pumps(1 << 20);
        let mut w = Recorder::default();
        let body = vec![7u8; 100_000];
        let data = msg(b'd', &body);
        let expected = data.clone();
        let peers = tokio::spawn(async move {
            let writer = async {
                client_peer.write_all(&data).await.expect("client writes");
                client_peer
                    .write_all(&msg(b'X', b""))
                    .await
                    .expect("terminate");
                client_peer
            };
            let reader = async {
                let mut got = vec![0u8; expected.len()];
                server_peer
                    .read_exact(&mut got)
                    .await
                    .expect("server reads");
                assert_eq!(got, expected);
                server_peer
            };
            tokio::join!(writer, reader)
        });
        let end = relay(&mut client, &mut server, &mut c2s, &mut s2c, &mut w).await;
        let _ = peers.await.expect("peer task");
        assert!(matches!(end, RelayEnd::ClientStop), "{end:?}");
        assert_eq!(c2s.forwarded_bytes, 100_005);
    }

    #[test]
    fn an_empty_pending_buffer_keeps_its_capacity() {
        let kept =
            Pump::new(Dir::ToClient, 1 << 20).with_pending(BytesMut::with_capacity(READ_CHUNK));
        assert!(kept.rbuf.capacity() >= READ_CHUNK);
        let big = BytesMut::with_capacity(KEEP_IDLE_CAPACITY + 1);
        let dropped = Pump::new(Dir::ToClient, 1 << 20).with_pending(big);
        assert_eq!(dropped.rbuf.capacity(), 0);
        let mut data = BytesMut::with_capacity(KEEP_IDLE_CAPACITY + 1);
        data.extend_from_slice(b"Z");
        let pending = Pump::new(Dir::ToClient, 1 << 20).with_pending(data);
        assert_eq!(&pending.rbuf[..], b"Z");
    }
}
