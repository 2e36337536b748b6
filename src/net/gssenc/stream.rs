//! The GSS-encrypted byte stream (PostgreSQL GSSENC framing): every packet is
//! `u32be length ‖ gss_wrap(conf=1, chunk)`, at most 16384 bytes including the length word.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use libgssapi::context::{ClientCtx, SecurityContext};
use libgssapi::util::{GssIov, GssIovFake, GssIovType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// PQ_GSS_SEND_BUFFER_SIZE / PQ_GSS_RECV_BUFFER_SIZE: the largest packet including its 4-byte
/// length word ("effectively part of the protocol spec" in PostgreSQL's sources).
pub const MAX_PACKET: usize = 16384;
const LEN_WORD: usize = 4;
/// Wrapped bytes we queue before refusing new plaintext (write backpressure).
const WRITE_HIGH_WATER: usize = 4 * MAX_PACKET;

/// A stream whose bytes are GSS-wrapped (encrypted) in PostgreSQL's GSSENC packets.
///
/// Writes are coalesced into packets of up to `max_plaintext()` bytes and sent when a packet
/// fills up or on `poll_flush`: like `BufWriter` or a TLS stream, callers must flush (as
/// `write_all(..)` + `flush()` or `copy_bidirectional` do). Each `gss_wrap`/`gss_unwrap` is
/// CPU work on the calling task (tens of µs per 16 KiB packet); the one allocation per packet
/// made by libgssapi's `wrap`/`unwrap` is noise next to the cipher cost.
pub struct GssEncStream<S> {
    inner: S,
    ctx: ClientCtx,
    max_plain: usize,
    /// Plaintext of the packet being filled (capacity `max_plain`).
    wplain: Vec<u8>,
    /// Wrapped packets not yet written to `inner`.
    wbuf: BytesMut,
    /// Raw bytes read from `inner`, not yet unwrapped (at most one partial packet + read slack).
    rraw: BytesMut,
    /// Unwrapped plaintext not yet handed to the reader.
    rplain: BytesMut,
}

impl<S> std::fmt::Debug for GssEncStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GssEncStream")
            .field("max_plain", &self.max_plain)
            .finish_non_exhaustive()
    }
}

impl<S> GssEncStream<S> {
    /// Wrap `inner` with an established context that was granted CONF|INTEG.
    pub(crate) fn new(inner: S, mut ctx: ClientCtx) -> io::Result<Self> {
        let max_plain = max_plaintext(&mut ctx)?;
        Ok(GssEncStream {
            inner,
            ctx,
            max_plain,
            wplain: Vec::with_capacity(max_plain),
            wbuf: BytesMut::with_capacity(2 * MAX_PACKET),
            rraw: BytesMut::with_capacity(2 * MAX_PACKET),
            rplain: BytesMut::new(),
        })
    }

    /// Largest plaintext chunk per packet (16320 with aes-sha1 enctypes).
    pub fn max_plaintext(&self) -> usize {
        self.max_plain
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Wrap `plain` (≤ max_plain bytes) into one packet appended to `wbuf`.
    /// Copies as much of `buf` as fits into the staged plaintext, sealing it once it holds a
    /// full packet; returns how many bytes were taken.
    fn stage(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.max_plain - self.wplain.len();
        let taken = buf.get(..room).unwrap_or(buf);
        self.wplain.extend_from_slice(taken);
        if self.wplain.len() == self.max_plain {
            self.seal(true, &[])?;
        }
        Ok(taken.len())
    }

    fn seal(&mut self, plain_from_wplain: bool, plain: &[u8]) -> io::Result<()> {
        let data = if plain_from_wplain {
            &self.wplain[..]
        } else {
            plain
        };
        let tok = self
            .ctx
            .wrap(true, data)
            .map_err(|e| io::Error::other(format!("GSSAPI wrap failed: {e}")))?;
        if tok.len() + LEN_WORD > MAX_PACKET {
            return Err(io::Error::other(format!(
                "GSSAPI wrap produced an oversize packet ({} bytes)",
                tok.len()
            )));
        }
        self.wbuf.put_u32(tok.len() as u32); // fits: checked above
        self.wbuf.extend_from_slice(&tok);
        if plain_from_wplain {
            self.wplain.clear();
        }
        Ok(())
    }

    /// Unwrap the next complete packet in `rraw`; `None` when more bytes are needed.
    fn open_packet(&mut self) -> io::Result<Option<libgssapi::util::Buf>> {
        let len = match packet_len(&self.rraw)? {
            Framed::Complete(len) => len,
            Framed::NeedLength => return Ok(None),
            Framed::NeedBody(len) => {
                // room for the rest of this packet, so the next read can complete it
                self.rraw.reserve(LEN_WORD + len - self.rraw.len());
                return Ok(None);
            }
        };
        // In bounds: `packet_len` said Complete, so `rraw` holds the length word and `len` bytes.
        #[allow(clippy::indexing_slicing)]
        let token = &self.rraw[LEN_WORD..LEN_WORD + len];
        match wrap_token_is_sealed(token) {
            Some(true) => {}
            Some(false) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "server sent a GSSENC packet without confidentiality",
                ));
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "server sent an unrecognised GSS wrap token",
                ));
            }
        }
        let plain = self.ctx.unwrap(token).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("GSSAPI unwrap failed: {e}"),
            )
        })?;
        self.rraw.advance(LEN_WORD + len);
        Ok(Some(plain))
    }
}

impl<S: AsyncWrite + Unpin> GssEncStream<S> {
    /// Write queued packets until `wbuf` is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_one(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        while self.wbuf.len() >= WRITE_HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        let n = match buf.get(..self.max_plain) {
            Some(full) if self.wplain.is_empty() => {
                // a full packet straight from the caller's buffer: no staging copy
                self.seal(false, full)?;
                self.max_plain
            }
            _ => self.stage(buf)?,
        };
        if self.wbuf.len() >= MAX_PACKET {
            // push full packets early; a Pending here is fine: the data is accepted and the
            // next write or flush continues draining
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GssEncStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.rplain.is_empty() {
                let head = this.rplain.get(..buf.remaining()).unwrap_or(&this.rplain);
                let n = head.len();
                buf.put_slice(head);
                this.rplain.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(plain) = this.open_packet()? {
                // straight into the caller's buffer; only the overflow is staged
                let now = plain.get(..buf.remaining()).unwrap_or(&plain);
                let n = now.len();
                buf.put_slice(now);
                this.rplain
                    .extend_from_slice(plain.get(n..).unwrap_or_default());
                if n > 0 || buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue; // empty packet
            }
            if this.rraw.capacity() - this.rraw.len() < MAX_PACKET / 2 {
                this.rraw.reserve(MAX_PACKET);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.rraw
            ))?;
            if n == 0 {
                if this.rraw.is_empty() {
                    return Poll::Ready(Ok(())); // clean EOF between packets
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection in the middle of a GSSENC packet",
                )));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GssEncStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_one(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut total = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            match self.poll_write_one(cx, b) {
                Poll::Ready(Ok(n)) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Poll::Ready(Err(e)) if total == 0 => return Poll::Ready(Err(e)),
                Poll::Pending if total == 0 => return Poll::Pending,
                // report what was accepted; the error/backpressure resurfaces on the next call
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.wplain.is_empty() {
            this.seal(true, &[])?;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Header + padding + trailer bytes that `gss_wrap(conf=1)` adds to `n` bytes. Uses
/// `gss_wrap_iov_length`, which has no side effects (a real `wrap` would consume a sequence
/// number and desynchronise the server: "An expected per-message token was not received").
/// How much of one GSSENC packet `raw` holds (sans-IO, so it can be fuzzed).
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Fewer than 4 bytes: the length word is not there yet.
    NeedLength,
    /// The token is `len` bytes and not all of it has arrived.
    NeedBody(usize),
    /// A whole token of `len` bytes follows the length word.
    Complete(usize),
}

/// Reads the length word of the packet at the start of `raw`; refuses empty packets and
/// packets over [`MAX_PACKET`] before any byte of their body is buffered.
pub fn packet_len(raw: &[u8]) -> io::Result<Framed> {
    let Some(&word) = raw.first_chunk::<LEN_WORD>() else {
        return Ok(Framed::NeedLength);
    };
    let len = u32::from_be_bytes(word) as usize;
    if len == 0 || len + LEN_WORD > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "server sent a GSSENC packet of {len} bytes (limit {})",
                MAX_PACKET - LEN_WORD
            ),
        ));
    }
    Ok(if raw.len() < LEN_WORD + len {
        Framed::NeedBody(len)
    } else {
        Framed::Complete(len)
    })
}

fn wrap_overhead(ctx: &mut ClientCtx, scratch: &mut [u8]) -> io::Result<usize> {
    let mut iovs = [
        GssIovFake::new(GssIovType::Header),
        GssIov::new(GssIovType::Data, scratch).as_fake(),
        GssIovFake::new(GssIovType::Padding),
        GssIovFake::new(GssIovType::Trailer),
    ];
    ctx.wrap_iov_length(true, &mut iovs)
        .map_err(|e| io::Error::other(format!("gss_wrap_iov_length failed: {e}")))?;
    Ok(iovs[0].len() + iovs[2].len() + iovs[3].len())
}

/// Largest plaintext whose wrapped packet (with length word) fits in MAX_PACKET.
fn max_plaintext(ctx: &mut ClientCtx) -> io::Result<usize> {
    let limit = MAX_PACKET - LEN_WORD;
    let mut scratch = vec![0u8; limit];
    let mut max_plain = limit.saturating_sub(wrap_overhead(ctx, &mut scratch)?);
    // In bounds: `max_plain` starts at most `limit` (= `scratch.len()`) and only decreases.
    #[allow(clippy::indexing_slicing)]
    while max_plain > 0 && max_plain + wrap_overhead(ctx, &mut scratch[..max_plain])? > limit {
        max_plain -= 1;
    }
    if max_plain < 1024 {
        return Err(io::Error::other(format!(
            "GSS wrap overhead leaves only {max_plain} bytes per packet"
        )));
    }
    Ok(max_plain)
}

/// Whether a wrap token was encrypted (RFC 4121 "Sealed" flag, or RFC 1964/RC4 SEAL_ALG), read
/// from its header; `None` for a format we do not know. libgssapi 0.11's `unwrap` does not
/// return `conf_state`, so this is how we refuse integrity-only packets like libpq does.
pub fn wrap_token_is_sealed(tok: &[u8]) -> Option<bool> {
    match tok {
        // RFC 4121 §4.2.6.2: TOK_ID 05 04, Flags (0x02 = Sealed), Filler ff, ...
        [0x05, 0x04, flags, 0xff, ..] if tok.len() >= 16 => Some(flags & 0x02 != 0),
        // RFC 1964 §1.2 framing: [APPLICATION 0] len, mech OID, TOK_ID 02 01, SGN_ALG, SEAL_ALG
        [0x60, rest @ ..] => {
            let body = skip_der_length(rest)?;
            let [0x06, oid_len, after_tag @ ..] = body else {
                return None;
            };
            let inner = after_tag.get(usize::from(*oid_len)..)?;
            match inner {
                [0x02, 0x01, _, _, s1, s2, ..] => Some(!(*s1 == 0xff && *s2 == 0xff)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn skip_der_length(b: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = b.split_first()?;
    if first < 0x80 {
        return Some(rest);
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    rest.get(n..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfx_sealed_flag_is_read_from_the_header() {
        let mut tok = vec![
            0x05, 0x04, 0x03, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9,
        ];
        assert_eq!(wrap_token_is_sealed(&tok), Some(true));
        tok[2] = 0x01; // sent by acceptor, not sealed (integrity only)
        assert_eq!(wrap_token_is_sealed(&tok), Some(false));
        assert_eq!(wrap_token_is_sealed(&tok[..8]), None);
        assert_eq!(wrap_token_is_sealed(b"hello world, not a token"), None);
    }

    #[test]
    fn rfc1964_seal_alg_is_read_after_the_mech_oid() {
        let oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
        ];
        let mut tok = vec![0x60, 0x30];
        tok.extend_from_slice(&oid);
        tok.extend_from_slice(&[0x02, 0x01, 0x11, 0x00, 0x10, 0x00, 0xff, 0xff]);
        assert_eq!(wrap_token_is_sealed(&tok), Some(true));
        let n = tok.len();
        tok[n - 4] = 0xff;
        tok[n - 3] = 0xff;
        assert_eq!(wrap_token_is_sealed(&tok), Some(false));
        assert_eq!(wrap_token_is_sealed(&[0x60, 0x85]), None);
    }
}
