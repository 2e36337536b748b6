//! The first packet a client sends (untagged): SSLRequest, GSSENCRequest, CancelRequest or a
//! StartupMessage, parsed with hard limits; plus direct-TLS detection. Sans-IO.

use bytes::{Buf, BytesMut};

use super::error::ProtocolError;
use super::message_codec::Cursor;

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`: longer startup packets are refused.
pub(crate) const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// The shortest legal startup-family packet: length word + request code.
pub(crate) const MIN_STARTUP_PACKET_LEN: usize = 8;
/// Protocol 3.2 (PostgreSQL 18) cancel keys are at most 256 bytes.
pub(crate) const MAX_CANCEL_KEY_LEN: usize = 256;

/// Request codes in place of a protocol version (`pqcomm.h`).
pub(crate) const CANCEL_REQUEST_CODE: i32 = (1234 << 16) | 5678;
pub(crate) const SSL_REQUEST_CODE: i32 = (1234 << 16) | 5679;
pub(crate) const GSSENC_REQUEST_CODE: i32 = (1234 << 16) | 5680;
/// Protocol 3.0, the version the pooler speaks on both sides.
pub(crate) const PROTOCOL_3_0: i32 = 3 << 16;

/// A parsed first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// `key` is 4 bytes on protocol 3.0; protocol 3.2 allows 4..=256 bytes.
    CancelRequest {
        pid: i32,
        key: Vec<u8>,
    },
    /// Protocol 3.x. A minor above 0 or `_pq_.*` parameters call for NegotiateProtocolVersion.
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// The last value of a startup parameter. PostgreSQL accepts repeated names and the last
    /// one wins (`ProcessStartupPacket` overwrites user/database and applies GUCs in order).
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// True when the first byte opens a TLS handshake record (PostgreSQL 17 "direct" SSL, ALPN
/// `postgresql`). A startup packet cannot start with 0x16: that length would be > 369 MB.
pub fn is_direct_tls(first_byte: u8) -> bool {
    first_byte == 0x16
}

/// Parses the first packet from a client and consumes it from `buf` when it is complete.
///
/// `Ok(None)`: more bytes are needed (nothing consumed). The announced length is checked from
/// the first 4 bytes, so a hostile 1 GiB length is refused before any body byte arrives.
pub fn parse_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    let Some(&len_word) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let raw = i32::from_be_bytes(len_word);
    if raw < MIN_STARTUP_PACKET_LEN as i32 {
        return Err(ProtocolError::LengthTooShort {
            tag: '\0',
            len: i64::from(raw),
        });
    }
    let len = raw as usize;
    if len > MAX_STARTUP_PACKET_LEN {
        return Err(ProtocolError::TooLong {
            tag: '\0',
            len: len as u64,
            max: MAX_STARTUP_PACKET_LEN,
        });
    }
    let Some(body) = buf.get(4..len) else {
        return Ok(None);
    };
    let packet = parse_packet(body)?;
    buf.advance(len);
    Ok(Some(packet))
}

/// Parses a startup-family packet body (after the length word).
fn parse_packet(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let mut cur = Cursor::new(body, "startup packet");
    let code = cur.i32()?;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            cur.expect_end()?;
            Ok(if code == SSL_REQUEST_CODE {
                StartupPacket::SslRequest
            } else {
                StartupPacket::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            let pid = cur.i32()?;
            let key = cur.rest();
            if key.len() < 4 || key.len() > MAX_CANCEL_KEY_LEN {
                return Err(ProtocolError::malformed("cancel request", "bad key length"));
            }
            Ok(StartupPacket::CancelRequest {
                pid,
                key: key.to_vec(),
            })
        }
        _ => {
            let major = (code as u32 >> 16) as u16;
            let minor = (code as u32 & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let params = parse_params(cur.rest())?;
            Ok(StartupPacket::Startup {
                major,
                minor,
                params,
            })
        }
    }
}

/// `name\0value\0 ... \0`: the last byte must be the list terminator, as PostgreSQL requires
/// ("invalid startup packet layout: expected terminator as last byte").
fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    const WHAT: &str = "startup packet";
    let mut params = Vec::new();
    loop {
        let mut cur = Cursor::new(rest, WHAT);
        let name = cur.cstr_bytes()?;
        if name.is_empty() {
            cur.expect_end()?;
            return Ok(params);
        }
        let value = cur.cstr_bytes()?;
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 { what: WHAT })
        };
        params.push((text(name)?, text(value)?));
        rest = cur.rest();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn packet(code: i32, rest: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(8 + rest.len() as i32);
        b.put_i32(code);
        b.put_slice(rest);
        b
    }

    #[test]
    fn startup_message_with_params() {
        let mut buf = packet(PROTOCOL_3_0, b"user\0bob\0database\0db1\0user\0alice\0\0");
        buf.put_slice(b"Qtrailing");
        let p = parse_startup(&mut buf).unwrap().unwrap();
        assert_eq!(p.param("user"), Some("alice"));
        assert_eq!(p.param("database"), Some("db1"));
        assert!(
            matches!(&p, StartupPacket::Startup { major: 3, minor: 0, params } if params.len() == 3)
        );
        assert_eq!(&buf[..], b"Qtrailing");
    }

    #[test]
    fn matches_postgres_protocol_encoder() {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [("user", "u"), ("application_name", "ä")],
            &mut buf,
        )
        .unwrap();
        let p = parse_startup(&mut buf).unwrap().unwrap();
        assert_eq!(p.param("application_name"), Some("ä"));
        assert!(buf.is_empty());
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            parse_startup(&mut packet(SSL_REQUEST_CODE, b"")),
            Ok(Some(StartupPacket::SslRequest))
        );
        assert_eq!(
            parse_startup(&mut packet(GSSENC_REQUEST_CODE, b"")),
            Ok(Some(StartupPacket::GssEncRequest))
        );
        assert!(parse_startup(&mut packet(SSL_REQUEST_CODE, b"x")).is_err());
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(42, 7, &mut buf);
        assert_eq!(
            parse_startup(&mut buf),
            Ok(Some(StartupPacket::CancelRequest {
                pid: 42,
                key: vec![0, 0, 0, 7]
            }))
        );
        // protocol 3.2 long key
        let mut long = 42i32.to_be_bytes().to_vec();
        long.extend_from_slice(&[9; 32]);
        assert!(matches!(
            parse_startup(&mut packet(CANCEL_REQUEST_CODE, &long)),
            Ok(Some(StartupPacket::CancelRequest { key, .. })) if key.len() == 32
        ));
        assert!(parse_startup(&mut packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 1, 2])).is_err());
    }

    #[test]
    fn newer_minor_is_accepted_v2_is_not() {
        let p = parse_startup(&mut packet((3 << 16) | 2, b"user\0u\0_pq_.x\0y\0\0"))
            .unwrap()
            .unwrap();
        assert!(matches!(
            p,
            StartupPacket::Startup {
                major: 3,
                minor: 2,
                ..
            }
        ));
        assert_eq!(
            parse_startup(&mut packet(2 << 16, b"\0")),
            Err(ProtocolError::UnsupportedProtocol { major: 2, minor: 0 })
        );
        assert!(parse_startup(&mut packet(4 << 16, b"\0")).is_err());
    }

    #[test]
    fn hostile_lengths() {
        // incomplete length word: wait
        assert_eq!(parse_startup(&mut BytesMut::from(&b"\0\0"[..])), Ok(None));
        for len in [0i32, 4, 7, -1, i32::MIN] {
            let mut b = BytesMut::new();
            b.put_i32(len);
            assert!(parse_startup(&mut b).is_err(), "{len}");
        }
        // 1 GiB announced with only 8 bytes present: rejected now, not waited for
        let mut b = BytesMut::new();
        b.put_i32(1 << 30);
        b.put_i32(PROTOCOL_3_0);
        assert!(matches!(
            parse_startup(&mut b),
            Err(ProtocolError::TooLong { .. })
        ));
        let mut b = BytesMut::new();
        b.put_i32(10_001);
        assert!(parse_startup(&mut b).is_err());
        // legal but incomplete: wait, consume nothing
        let mut b = packet(PROTOCOL_3_0, b"user\0u\0\0");
        b.truncate(10);
        assert_eq!(parse_startup(&mut b), Ok(None));
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn malformed_params() {
        for rest in [
            &b""[..],                // no terminator at all
            b"user\0bob\0",          // missing final terminator
            b"user\0bob",            // unterminated value
            b"user\0",               // name without value
            b"user\0bob\0\0extra\0", // bytes after the terminator
            b"us\xffer\0bob\0\0",    // not UTF-8
        ] {
            assert!(
                parse_startup(&mut packet(PROTOCOL_3_0, rest)).is_err(),
                "{rest:?}"
            );
        }
        assert!(is_direct_tls(0x16));
        assert!(!is_direct_tls(0));
    }
}
