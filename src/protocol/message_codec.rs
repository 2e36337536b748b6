//! Low-level encoding shared by the builders and parsers: a tagged-message writer that patches
//! the length word afterwards, and a bounds-checked cursor over a message body.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;

/// Starts a tagged message: writes the tag and a placeholder length, returns the length offset.
pub(crate) fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Starts an untagged message (startup family): placeholder length only.
pub(crate) fn begin_untagged(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Patches the length word written by [`begin`]/[`begin_untagged`] (length counts itself).
pub(crate) fn finish(buf: &mut BytesMut, len_at: usize) {
    let len = buf.len() - len_at;
    // invariant: messages the pooler builds come from its own texts and bounded peer fields,
    // far below the protocol's 2 GiB ceiling.
    let len = i32::try_from(len).expect("invariant: pooler-built message below 2 GiB");
    // In bounds: `len_at` comes from `begin`/`begin_untagged`, which wrote 4 bytes there.
    #[allow(clippy::indexing_slicing)]
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes a C string. Text is cut at an embedded NUL: a NUL inside a field would corrupt the
/// framing the peer sees, and no legitimate pooler text contains one.
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    let text = s.split(|&b| b == 0).next().unwrap_or(s);
    buf.put_slice(text);
    buf.put_u8(0);
}

/// Checks the tag and the length word of a whole message and returns its body.
pub(crate) fn body_of(msg: &[u8], tag: u8) -> Result<&[u8], ProtocolError> {
    let Some((&[got, l0, l1, l2, l3], body)) = msg.split_first_chunk::<5>() else {
        return Err(ProtocolError::malformed(
            "message",
            "shorter than its header",
        ));
    };
    if got != tag {
        return Err(ProtocolError::UnexpectedTag {
            expected: tag as char,
            got: got as char,
        });
    }
    let len = i32::from_be_bytes([l0, l1, l2, l3]);
    if len < 4 || len as usize + 1 != msg.len() {
        return Err(ProtocolError::malformed(
            "message",
            "length word does not match the message",
        ));
    }
    Ok(body)
}

/// A cursor over a message body; every read is bounds-checked.
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(body: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor { rest: body, what }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(ProtocolError::malformed(self.what, "truncated"))?;
        self.rest = rest;
        Ok(b)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        let (&word, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(ProtocolError::malformed(self.what, "truncated"))?;
        self.rest = rest;
        Ok(i32::from_be_bytes(word))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.rest.len() < n {
            return Err(ProtocolError::malformed(self.what, "truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    /// A NUL-terminated byte string, without its NUL.
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let mut parts = self.rest.splitn(2, |&b| b == 0);
        let s = parts.next().unwrap_or_default();
        // No second part: no NUL in what is left.
        self.rest = parts.next().ok_or(ProtocolError::malformed(
            self.what,
            "missing string terminator",
        ))?;
        Ok(s)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let what = self.what;
        std::str::from_utf8(self.cstr_bytes()?).map_err(|_| ProtocolError::InvalidUtf8 { what })
    }

    pub(crate) fn expect_end(&self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::malformed(self.what, "trailing bytes"))
        }
    }
}
