//! Backend (server -> client) messages the pooler synthesises (errors, notices, auth requests,
//! ParameterStatus, BackendKeyData, ReadyForQuery, NegotiateProtocolVersion) and the few it
//! must read from servers. Parsers take one whole message (tag + length + body), e.g. from
//! `framing::split_message`, and borrow from it.
//!
//! For the login phase towards a server, `postgres_protocol::message::backend::Message::parse`
//! also works (it decodes every Authentication subtype: GSS(7), GSSContinue(8), SASL...);
//! the parsers here are for the hot path and for messages that crate does not cover.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::message_codec::{Cursor, begin, body_of, finish, put_cstr};

/// Authentication request subtypes ('R' messages).
pub const AUTH_OK: i32 = 0;
pub const AUTH_CLEARTEXT_PASSWORD: i32 = 3;
pub const AUTH_MD5_PASSWORD: i32 = 5;
pub const AUTH_GSS: i32 = 7;
pub const AUTH_GSS_CONTINUE: i32 = 8;
pub const AUTH_SSPI: i32 = 9;
pub const AUTH_SASL: i32 = 10;
pub const AUTH_SASL_CONTINUE: i32 = 11;
pub const AUTH_SASL_FINAL: i32 = 12;

/// ErrorResponse/NoticeResponse severities. The text goes into both 'S' and 'V' (the pooler
/// does not localise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Panic,
    Warning,
    Notice,
    Debug,
    Info,
    Log,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }
}

/// ErrorResponse ('E').
pub(crate) fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    error_like(buf, b'E', severity, code, message, detail, hint);
}

/// NoticeResponse ('N'), same fields as an ErrorResponse.
pub fn notice_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    error_like(buf, b'N', severity, code, message, detail, hint);
}

fn error_like(
    buf: &mut BytesMut,
    tag: u8,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    let at = begin(buf, tag);
    let fields = [
        (b'S', Some(severity.as_str())),
        (b'V', Some(severity.as_str())),
        (b'C', Some(code)),
        (b'M', Some(message)),
        (b'D', detail),
        (b'H', hint),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            buf.put_u8(field);
            put_cstr(buf, value.as_bytes());
        }
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// ParameterStatus ('S').
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// BackendKeyData ('K'): the key is 4 bytes on protocol 3.0.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, key: &[u8]) {
    let at = begin(buf, b'K');
    buf.put_i32(pid);
    buf.put_slice(key);
    finish(buf, at);
}

/// ReadyForQuery ('Z') with status 'I', 'T' or 'E'.
pub(crate) fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let at = begin(buf, b'Z');
    buf.put_u8(status);
    finish(buf, at);
}

fn auth_request(buf: &mut BytesMut, code: i32, payload: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(code);
    buf.put_slice(payload);
    finish(buf, at);
}

pub fn authentication_ok(buf: &mut BytesMut) {
    auth_request(buf, AUTH_OK, b"");
}

pub fn authentication_cleartext_password(buf: &mut BytesMut) {
    auth_request(buf, AUTH_CLEARTEXT_PASSWORD, b"");
}

pub fn authentication_md5_password(buf: &mut BytesMut, salt: [u8; 4]) {
    auth_request(buf, AUTH_MD5_PASSWORD, &salt);
}

/// AuthenticationSASL: the mechanism list, each NUL-terminated, then an empty name.
pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(AUTH_SASL);
    for mechanism in mechanisms {
        put_cstr(buf, mechanism.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth_request(buf, AUTH_SASL_CONTINUE, data);
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth_request(buf, AUTH_SASL_FINAL, data);
}

/// NegotiateProtocolVersion ('v'): the newest version supported as a whole protocol number
/// (`3 << 16 | minor`, as PostgreSQL and PgBouncer send it; libpq reads a bare minor such as 0
/// as a downgrade below 3.0 and gives up), then the unsupported `_pq_` options.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_version: i32, unsupported: &[&str]) {
    let at = begin(buf, b'v');
    buf.put_i32(newest_version);
    // invariant: the option list comes from a startup packet of at most 10000 bytes.
    buf.put_i32(i32::try_from(unsupported.len()).expect("invariant: few startup options"));
    for option in unsupported {
        put_cstr(buf, option.as_bytes());
    }
    finish(buf, at);
}

/// The transaction status of a ReadyForQuery: b'I', b'T' or b'E'.
pub fn parse_ready_for_query(msg: &[u8]) -> Result<u8, ProtocolError> {
    let body = body_of(msg, b'Z')?;
    match body {
        [status @ (b'I' | b'T' | b'E')] => Ok(*status),
        _ => Err(ProtocolError::malformed(
            "ReadyForQuery",
            "bad transaction status",
        )),
    }
}

/// ParameterStatus name and value.
pub fn parse_parameter_status(msg: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut cur = Cursor::new(body_of(msg, b'S')?, "ParameterStatus");
    let name = cur.cstr()?;
    let value = cur.cstr()?;
    cur.expect_end()?;
    Ok((name, value))
}

/// BackendKeyData process id and key (4 bytes on 3.0, up to 256 on 3.2).
pub fn parse_backend_key_data(msg: &[u8]) -> Result<(i32, Vec<u8>), ProtocolError> {
    let mut cur = Cursor::new(body_of(msg, b'K')?, "BackendKeyData");
    let pid = cur.i32()?;
    let key = cur.rest();
    if key.len() < 4 || key.len() > 256 {
        return Err(ProtocolError::malformed("BackendKeyData", "bad key length"));
    }
    Ok((pid, key.to_vec()))
}

/// The fields of an ErrorResponse/NoticeResponse the pooler uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// Non-localised severity ('V') when present, else the localised one ('S').
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Reads an ErrorResponse ('E') or NoticeResponse ('N'). Unknown fields are skipped; text that
/// is not UTF-8 (a server with a non-UTF-8 `lc_messages`) is converted lossily.
pub fn parse_error_fields(msg: &[u8]) -> Result<ErrorFields, ProtocolError> {
    let tag = msg.first().copied().unwrap_or(0);
    let body = body_of(msg, if tag == b'N' { b'N' } else { b'E' })?;
    let mut cur = Cursor::new(body, "ErrorResponse");
    let mut fields = ErrorFields::default();
    let mut localized_severity = None;
    loop {
        let field = cur.u8()?;
        if field == 0 {
            cur.expect_end()?;
            break;
        }
        let value = String::from_utf8_lossy(cur.cstr_bytes()?).into_owned();
        match field {
            b'S' => localized_severity = Some(value),
            b'V' => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            b'D' => fields.detail = Some(value),
            b'H' => fields.hint = Some(value),
            _ => {}
        }
    }
    if fields.severity.is_empty() {
        fields.severity = localized_severity.unwrap_or_default();
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::message::backend::Message;

    fn parse_pg(buf: &mut BytesMut) -> Message {
        Message::parse(buf).unwrap().unwrap()
    }

    #[test]
    fn error_round_trip_and_postgres_protocol_agrees() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "08P01",
            "no such database: x",
            Some("d"),
            None,
        );
        let fields = parse_error_fields(&buf).unwrap();
        assert_eq!(
            fields,
            ErrorFields {
                severity: "FATAL".into(),
                code: "08P01".into(),
                message: "no such database: x".into(),
                detail: Some("d".into()),
                hint: None,
            }
        );
        assert!(matches!(parse_pg(&mut buf), Message::ErrorResponse(_)));
        assert!(buf.is_empty());
    }

    #[test]
    fn notice_and_embedded_nul() {
        let mut buf = BytesMut::new();
        notice_response(&mut buf, Severity::Notice, "00000", "a\0b", None, Some("h"));
        let f = parse_error_fields(&buf).unwrap();
        assert_eq!((f.message.as_str(), f.hint.as_deref()), ("a", Some("h")));
        assert!(matches!(parse_pg(&mut buf), Message::NoticeResponse(_)));
    }

    #[test]
    fn small_messages_round_trip() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "TimeZone", "UTC");
        assert_eq!(parse_parameter_status(&buf).unwrap(), ("TimeZone", "UTC"));
        let Message::ParameterStatus(p) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!(p.value().unwrap(), "UTC");

        backend_key_data(&mut buf, 77, &[0, 0, 1, 2]);
        assert_eq!(
            parse_backend_key_data(&buf).unwrap(),
            (77, vec![0, 0, 1, 2])
        );
        let Message::BackendKeyData(k) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!((k.process_id(), k.secret_key()), (77, 258));

        ready_for_query(&mut buf, b'T');
        assert_eq!(parse_ready_for_query(&buf).unwrap(), b'T');
        let Message::ReadyForQuery(r) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!(r.status(), b'T');
    }

    #[test]
    fn auth_requests_match_postgres_protocol() {
        let mut buf = BytesMut::new();
        authentication_ok(&mut buf);
        assert!(matches!(parse_pg(&mut buf), Message::AuthenticationOk));
        authentication_cleartext_password(&mut buf);
        assert!(matches!(
            parse_pg(&mut buf),
            Message::AuthenticationCleartextPassword
        ));
        authentication_md5_password(&mut buf, [1, 2, 3, 4]);
        let Message::AuthenticationMd5Password(b) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!(b.salt(), [1, 2, 3, 4]);
        authentication_sasl(&mut buf, &["SCRAM-SHA-256"]);
        assert_eq!(&buf[9..], b"SCRAM-SHA-256\0\0");
        assert!(matches!(parse_pg(&mut buf), Message::AuthenticationSasl(_)));
        authentication_sasl_continue(&mut buf, b"r=abc");
        let Message::AuthenticationSaslContinue(b) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!(b.data(), b"r=abc");
        authentication_sasl_final(&mut buf, b"v=xyz");
        let Message::AuthenticationSaslFinal(b) = parse_pg(&mut buf) else {
            panic!()
        };
        assert_eq!(b.data(), b"v=xyz");
    }

    #[test]
    fn negotiate_protocol_version_layout() {
        let mut buf = BytesMut::new();
        negotiate_protocol_version(&mut buf, 3 << 16, &["_pq_.foo"]);
        assert_eq!(&buf[..], b"v\0\0\0\x15\0\x03\0\0\0\0\0\x01_pq_.foo\0");
    }

    #[test]
    fn malformed_server_messages_are_errors() {
        assert!(parse_ready_for_query(b"Z\0\0\0\x05X").is_err());
        assert!(parse_ready_for_query(b"Z\0\0\0\x06II").is_err());
        assert!(parse_ready_for_query(b"Q\0\0\0\x05I").is_err());
        assert!(parse_ready_for_query(b"Z\0\0").is_err());
        assert!(parse_parameter_status(b"S\0\0\0\x06a\0").is_err());
        assert!(parse_backend_key_data(b"K\0\0\0\x08\0\0\0\x01").is_err());
        assert!(parse_error_fields(b"E\0\0\0\x07Mab").is_err());
        assert!(parse_error_fields(b"E\0\0\0\x04").is_err());
        assert!(
            parse_error_fields(b"E\0\0\0\x05\0")
                .unwrap()
                .message
                .is_empty()
        );
    }

    /// PgBouncer's CVE-2026-6666: an ErrorResponse without a SQLSTATE field crashed it.
    #[test]
    fn an_error_without_sqlstate_parses_with_an_empty_code() {
        let f = parse_error_fields(b"E\0\0\0\x12SFATAL\0Mboom\0\0").expect("parses");
        assert!(f.code.is_empty());
        assert_eq!(f.message, "boom");
    }
}
