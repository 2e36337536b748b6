//! Message framing for tagged (post-startup) messages: peek the 5-byte header, enforce per-tag
//! length limits, split whole messages off a read buffer. Zero-copy: nothing here copies or
//! allocates based on a peer-given length.

use bytes::BytesMut;

use super::error::ProtocolError;

/// The size of a tagged message header: one tag byte plus the int32 length.
pub(crate) const HEADER_LEN: usize = 5;

/// Limit for authentication requests from a server ('R'), including GSS continue tokens.
/// PostgreSQL caps client auth tokens at 65535 (`PG_MAX_AUTH_TOKEN_LENGTH`).
pub const MAX_AUTH_REQUEST_LEN: usize = 64 * 1024;
/// Limit for client login messages ('p'): passwords and SASL messages are tiny.
pub const MAX_LOGIN_RESPONSE_LEN: usize = 8 * 1024;
/// Limit for ErrorResponse/NoticeResponse read whole by the pooler (server login, checks).
pub const MAX_ERROR_NOTICE_LEN: usize = 256 * 1024;
/// Limit for ParameterStatus ('S' from a server; 'S' from a client is Sync, length 4).
pub const MAX_PARAMETER_STATUS_LEN: usize = 64 * 1024;
/// BackendKeyData: 4-byte key on protocol 3.0; 3.2 allows up to 256 bytes.
pub const MAX_BACKEND_KEY_DATA_LEN: usize = HEADER_LEN + 4 + 256;
/// ReadyForQuery is always exactly 6 bytes.
pub const READY_FOR_QUERY_LEN: usize = 6;

/// A tagged message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type byte.
    pub tag: u8,
    /// The whole message length, including the tag byte (int32 length + 1).
    pub len: usize,
}

impl Header {
    /// Length of the body after the 5-byte header.
    pub fn body_len(&self) -> usize {
        self.len - HEADER_LEN
    }
}

/// The largest acceptable whole-message length (tag included) for a message type.
///
/// Works for both directions: the small-limit tags are either backend-only ('Z', 'K', 'R',
/// 'N'), frontend-only ('p'), or harmless in the other direction ('S' from a client is Sync,
/// 'E' from a client is Execute, both small). Everything else (DataRow, Query, CopyData...)
/// gets the configured `max_packet_size`. A limit never rises above the configured one,
/// except for the fixed-size messages.
pub fn max_len_for(tag: u8, configured_max_packet_size: usize) -> usize {
    let capped = |limit: usize| limit.min(configured_max_packet_size.max(HEADER_LEN));
    match tag {
        b'Z' => READY_FOR_QUERY_LEN,
        b'K' => MAX_BACKEND_KEY_DATA_LEN,
        b'S' => capped(MAX_PARAMETER_STATUS_LEN),
        b'R' => capped(MAX_AUTH_REQUEST_LEN),
        b'p' => capped(MAX_LOGIN_RESPONSE_LEN),
        b'E' | b'N' => capped(MAX_ERROR_NOTICE_LEN),
        _ => configured_max_packet_size.max(HEADER_LEN),
    }
}

/// Reads the header at the start of `buf`.
///
/// `Ok(None)`: fewer than 5 bytes buffered. Errors when the int32 length is below 4 or the
/// whole message would exceed `max_len` (checked before any byte of the body is awaited).
pub fn peek_header(buf: &[u8], max_len: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(&[tag, l0, l1, l2, l3]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes([l0, l1, l2, l3]);
    if raw < 4 {
        return Err(ProtocolError::LengthTooShort {
            tag: tag as char,
            len: i64::from(raw),
        });
    }
    // raw >= 4, so the conversion and the +1 cannot overflow on any supported target.
    let len = raw as usize + 1;
    if len > max_len {
        return Err(ProtocolError::TooLong {
            tag: tag as char,
            len: len as u64,
            max: max_len,
        });
    }
    Ok(Some(Header { tag, len }))
}

/// Like [`peek_header`] with the limit from [`max_len_for`].
pub fn peek_header_checked(
    buf: &[u8],
    configured_max_packet_size: usize,
) -> Result<Option<Header>, ProtocolError> {
    match buf.first() {
        Some(&tag) => peek_header(buf, max_len_for(tag, configured_max_packet_size)),
        None => Ok(None),
    }
}

/// Splits one whole message (header included) off the front of `buf` when it is complete.
/// `Ok(None)` means more bytes are needed; `buf` is untouched then. Zero-copy (`split_to`).
pub fn split_message(
    buf: &mut BytesMut,
    configured_max_packet_size: usize,
) -> Result<Option<(Header, BytesMut)>, ProtocolError> {
    match peek_header_checked(buf, configured_max_packet_size)? {
        Some(header) if buf.len() >= header.len => Ok(Some((header, buf.split_to(header.len)))),
        _ => Ok(None),
    }
}

/// The body of a whole message (after the 5-byte header); empty if `msg` is shorter.
pub fn body(msg: &[u8]) -> &[u8] {
    msg.get(HEADER_LEN..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, len: i32) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn needs_five_bytes() {
        assert_eq!(peek_header(b"", 100), Ok(None));
        assert_eq!(peek_header(b"Z\0\0\0", 100), Ok(None));
        assert_eq!(
            peek_header(&msg(b'Z', 5), 100),
            Ok(Some(Header { tag: b'Z', len: 6 }))
        );
    }

    #[test]
    fn rejects_short_and_negative_lengths() {
        assert!(matches!(
            peek_header(&msg(b'Q', 3), 100),
            Err(ProtocolError::LengthTooShort { .. })
        ));
        assert!(matches!(
            peek_header(&msg(b'Q', -1), 100),
            Err(ProtocolError::LengthTooShort { .. })
        ));
        assert_eq!(
            peek_header(&msg(b'Q', 4), 100),
            Ok(Some(Header { tag: b'Q', len: 5 }))
        );
    }

    #[test]
    fn rejects_huge_lengths_from_header_alone() {
        let err = peek_header(&msg(b'D', i32::MAX), 1 << 20).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLong { .. }), "{err}");
    }

    #[test]
    fn per_tag_limits() {
        let cfg = 2_147_483_647;
        assert_eq!(max_len_for(b'Z', cfg), 6);
        assert!(peek_header_checked(&msg(b'Z', 6), cfg).is_err());
        assert!(peek_header_checked(&msg(b'Z', 5), cfg).is_ok());
        assert!(peek_header_checked(&msg(b'R', 1 << 20), cfg).is_err());
        assert!(peek_header_checked(&msg(b'p', 9000), cfg).is_err());
        assert!(peek_header_checked(&msg(b'D', 1 << 30), cfg).is_ok());
        assert!(peek_header_checked(&msg(b'D', 1 << 30), 1 << 20).is_err());
        // a tiny configured limit never makes the small fixed messages unparseable
        assert_eq!(max_len_for(b'Z', 1), 6);
        assert_eq!(max_len_for(b'E', 1000), 1000);
    }

    #[test]
    fn split_is_zero_copy_and_waits_for_whole_messages() {
        let mut buf = BytesMut::from(&b"Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0"[..]);
        buf.extend_from_slice(b"Z\0\0");
        let base = buf.as_ptr();
        let (h, m) = split_message(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((h.tag, h.len, &m[..]), (b'Z', 6, &b"Z\0\0\0\x05I"[..]));
        assert_eq!(m.as_ptr(), base);
        let (h, m) = split_message(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!((h.tag, body(&m)), (b'C', &b"SELECT 1\0"[..]));
        assert_eq!(split_message(&mut buf, 1 << 20), Ok(None));
        assert_eq!(buf.len(), 3);
    }
}
