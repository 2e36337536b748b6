//! Frontend (client -> server) messages: builders for what the pooler sends upstream, and
//! parsers for the login messages clients send ('p': password, SASL). Parsers take one whole
//! message (tag + length + body) and borrow from it; sizes are bounded by `framing`.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::framing::MAX_LOGIN_RESPONSE_LEN;
use super::message_codec::{Cursor, begin, begin_untagged, body_of, finish, put_cstr};
use super::startup::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE};

/// StartupMessage for protocol 3.0 with the given parameters (e.g. user, database).
pub(crate) fn startup_message(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let at = begin_untagged(buf);
    buf.put_i32(PROTOCOL_3_0);
    for (name, value) in params {
        put_cstr(buf, name.as_bytes());
        put_cstr(buf, value.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// PasswordMessage ('p'): cleartext password or md5 response, NUL-terminated.
pub(crate) fn password_message(buf: &mut BytesMut, password: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, password);
    finish(buf, at);
}

/// SASLInitialResponse ('p'): mechanism name, int32 data length, data.
pub(crate) fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    let at = begin(buf, b'p');
    put_cstr(buf, mechanism.as_bytes());
    // invariant: SCRAM client-first messages are a few hundred bytes.
    buf.put_i32(i32::try_from(data.len()).expect("invariant: small SASL message"));
    buf.put_slice(data);
    finish(buf, at);
}

/// SASLResponse ('p'): raw data.
pub(crate) fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    let at = begin(buf, b'p');
    buf.put_slice(data);
    finish(buf, at);
}

/// GSSResponse ('p'): the raw GSSAPI token, no terminator.
pub(crate) fn gss_response(buf: &mut BytesMut, token: &[u8]) {
    sasl_response(buf, token);
}

/// Query ('Q'): a simple-protocol query.
pub(crate) fn query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql.as_bytes());
    finish(buf, at);
}

/// Parse + Bind + Describe(portal) + Execute + Sync of an unnamed statement with text
/// parameters, as PgBouncer's `pktbuf_write_ExtQuery` sends auth_query.
pub(crate) fn extended_query(buf: &mut BytesMut, sql: &str, params: &[&str]) {
    let at = begin(buf, b'P');
    put_cstr(buf, b"");
    put_cstr(buf, sql.as_bytes());
    buf.put_u16(0);
    finish(buf, at);
    let at = begin(buf, b'B');
    put_cstr(buf, b"");
    put_cstr(buf, b"");
    buf.put_u16(0);
    // invariant: the pooler binds one or two short values (a user name)
    buf.put_u16(u16::try_from(params.len()).expect("invariant: few parameters"));
    for p in params {
        buf.put_i32(i32::try_from(p.len()).expect("invariant: short parameter"));
        buf.put_slice(p.as_bytes());
    }
    buf.put_u16(0);
    finish(buf, at);
    let at = begin(buf, b'D');
    buf.put_u8(b'P');
    put_cstr(buf, b"");
    finish(buf, at);
    let at = begin(buf, b'E');
    put_cstr(buf, b"");
    buf.put_i32(0);
    finish(buf, at);
    let at = begin(buf, b'S');
    finish(buf, at);
}

/// Terminate ('X').
pub fn terminate(buf: &mut BytesMut) {
    let at = begin(buf, b'X');
    finish(buf, at);
}

/// CancelRequest: 16 bytes with a 3.0 (4-byte) key.
pub(crate) fn cancel_request(buf: &mut BytesMut, pid: i32, key: &[u8]) {
    let at = begin_untagged(buf);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_slice(key);
    finish(buf, at);
}

/// SSLRequest (8 bytes).
pub(crate) fn ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST_CODE);
}

/// GSSENCRequest (8 bytes).
pub(crate) fn gssenc_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(GSSENC_REQUEST_CODE);
}

fn login_body(msg: &[u8]) -> Result<&[u8], ProtocolError> {
    if msg.len() > MAX_LOGIN_RESPONSE_LEN {
        return Err(ProtocolError::TooLong {
            tag: 'p',
            len: msg.len() as u64,
            max: MAX_LOGIN_RESPONSE_LEN,
        });
    }
    body_of(msg, b'p')
}

/// PasswordMessage: the password (cleartext or "md5..." response) without its NUL. Bytes, not
/// text: PostgreSQL compares passwords as bytes, whatever their encoding.
pub fn parse_password_message(msg: &[u8]) -> Result<&[u8], ProtocolError> {
    let mut cur = Cursor::new(login_body(msg)?, "PasswordMessage");
    let password = cur.cstr_bytes()?;
    cur.expect_end()?;
    Ok(password)
}

/// A parsed SASLInitialResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a str,
    /// `None` when the client sent length -1 (no initial response).
    pub data: Option<&'a [u8]>,
}

/// SASLInitialResponse: mechanism name and initial client data.
pub fn parse_sasl_initial_response(msg: &[u8]) -> Result<SaslInitialResponse<'_>, ProtocolError> {
    let mut cur = Cursor::new(login_body(msg)?, "SASLInitialResponse");
    let mechanism = cur.cstr()?;
    let len = cur.i32()?;
    let data = match len {
        -1 => None,
        n if n >= 0 => Some(cur.bytes(n as usize)?),
        _ => {
            return Err(ProtocolError::malformed(
                "SASLInitialResponse",
                "negative data length",
            ));
        }
    };
    cur.expect_end()?;
    Ok(SaslInitialResponse { mechanism, data })
}

/// SASLResponse: the raw data.
pub fn parse_sasl_response(msg: &[u8]) -> Result<&[u8], ProtocolError> {
    login_body(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::startup::{StartupPacket, parse_startup};
    use postgres_protocol::message::frontend as pg;

    #[test]
    fn extended_query_matches_postgres_protocol() {
        let mut ours = BytesMut::new();
        extended_query(&mut ours, "SELECT $1", &["alice"]);
        let mut theirs = BytesMut::new();
        pg::parse("", "SELECT $1", [], &mut theirs).expect("parse");
        pg::bind(
            "",
            "",
            [],
            ["alice"],
            |v, buf| {
                buf.put_slice(v.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            [],
            &mut theirs,
        )
        .map_err(|_| "bind")
        .expect("bind");
        pg::describe(b'P', "", &mut theirs).expect("describe");
        pg::execute("", 0, &mut theirs).expect("execute");
        pg::sync(&mut theirs);
        assert_eq!(ours, theirs);
    }

    /// PgBouncer's CVE-2026-6664: a SASLInitialResponse whose data length overflows the
    /// packet crashed it; here every such length is an error.
    #[test]
    fn sasl_initial_response_lengths_past_the_packet_are_refused() {
        for len in [i32::MAX, 1_000, 5, -2, i32::MIN] {
            let mut body = b"SCRAM-SHA-256\0".to_vec();
            body.extend(len.to_be_bytes());
            body.extend(b"abcd");
            let mut msg = vec![b'p'];
            msg.extend((body.len() as u32 + 4).to_be_bytes());
            msg.extend(&body);
            assert!(parse_sasl_initial_response(&msg).is_err(), "length {len}");
        }
    }

    #[test]
    fn builders_match_postgres_protocol() {
        let (mut ours, mut theirs) = (BytesMut::new(), BytesMut::new());
        startup_message(&mut ours, &[("user", "u"), ("database", "d")]);
        pg::startup_message([("user", "u"), ("database", "d")], &mut theirs).unwrap();
        password_message(&mut ours, b"md5abc");
        pg::password_message(b"md5abc", &mut theirs).unwrap();
        sasl_initial_response(&mut ours, "SCRAM-SHA-256", b"n,,n=,r=x");
        pg::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x", &mut theirs).unwrap();
        sasl_response(&mut ours, b"c=biws");
        pg::sasl_response(b"c=biws", &mut theirs).unwrap();
        query(&mut ours, "SELECT 1");
        pg::query("SELECT 1", &mut theirs).unwrap();
        terminate(&mut ours);
        pg::terminate(&mut theirs);
        cancel_request(&mut ours, 5, &9i32.to_be_bytes());
        pg::cancel_request(5, 9, &mut theirs);
        ssl_request(&mut ours);
        pg::ssl_request(&mut theirs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn gss_messages() {
        let mut buf = BytesMut::new();
        gss_response(&mut buf, &[0x60, 0, 1]);
        assert_eq!(&buf[..], b"p\0\0\0\x07\x60\0\x01");
        buf.clear();
        gssenc_request(&mut buf);
        assert_eq!(
            parse_startup(&mut buf),
            Ok(Some(StartupPacket::GssEncRequest))
        );
    }

    #[test]
    fn login_parsers_round_trip() {
        let mut buf = BytesMut::new();
        password_message(&mut buf, b"secret");
        assert_eq!(parse_password_message(&buf).unwrap(), b"secret");
        buf.clear();
        sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        assert_eq!(
            parse_sasl_initial_response(&buf).unwrap(),
            SaslInitialResponse {
                mechanism: "SCRAM-SHA-256",
                data: Some(b"n,,n=,r=abc")
            }
        );
        buf.clear();
        sasl_response(&mut buf, b"c=biws,r=x,p=y");
        assert_eq!(parse_sasl_response(&buf).unwrap(), b"c=biws,r=x,p=y");
        let none = b"p\0\0\0\x0eSCRAM\0\xff\xff\xff\xff";
        assert_eq!(parse_sasl_initial_response(none).unwrap().data, None);
    }

    fn p(body: &[u8]) -> Vec<u8> {
        let mut v = vec![b'p'];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn malformed_login_messages() {
        assert!(parse_password_message(&p(b"ab")).is_err()); // no NUL
        assert!(parse_password_message(&p(b"ab\0c")).is_err()); // trailing bytes
        assert!(parse_password_message(b"Q\0\0\0\x06a\0").is_err()); // wrong tag
        assert!(parse_password_message(b"p\0\0\0\x09a\0").is_err()); // length lies
        assert!(parse_sasl_initial_response(&p(b"SCRAM\0\0\0\0\x09ab")).is_err()); // data short
        assert!(parse_sasl_initial_response(&p(b"SCRAM\0\xff\xff\xff\xfe")).is_err()); // negative
        assert!(parse_sasl_initial_response(&p(b"SCRAM\0\0\0\0\0x")).is_err()); // trailing
        assert!(parse_sasl_initial_response(&p(b"SCR")).is_err()); // unterminated name
        assert!(parse_sasl_initial_response(&p(b"SC\xffRAM\0\0\0\0\0")).is_err()); // not UTF-8
        assert!(parse_sasl_initial_response(&p(b"SCRAM\0\0\0\0\x01x")).is_ok());
        let mut big = BytesMut::new();
        sasl_response(&mut big, &vec![b'a'; MAX_LOGIN_RESPONSE_LEN]);
        assert!(parse_sasl_response(&big).is_err());
    }
}
