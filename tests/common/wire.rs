//! A tiny blocking PostgreSQL wire-protocol client for tests that need exact control over the
//! bytes: hostile startup packets, SSLRequest, protocol 3.2 negotiation, raw auth requests.
//!
//! Written from the protocol documentation; independent of the crate under test.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::secrets::md5_response;

/// Protocol 3.0 as sent in StartupMessage.
pub const PROTO_3_0: u32 = 0x0003_0000;
/// Protocol 3.2 (PostgreSQL 18 clients).
pub const PROTO_3_2: u32 = 0x0003_0002;
/// The SSLRequest code.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;

/// A backend message: tag and body (without the length word).
#[derive(Clone, Debug)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// For 'R' messages: the auth request code.
    pub fn auth_code(&self) -> Option<i32> {
        (self.tag == b'R' && self.body.len() >= 4)
            .then(|| i32::from_be_bytes([self.body[0], self.body[1], self.body[2], self.body[3]]))
    }

    /// For 'E'/'N' messages: the fields by their one-byte code ('M' message, 'C' SQLSTATE...).
    pub fn fields(&self) -> HashMap<u8, String> {
        let mut out = HashMap::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            out.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        out
    }

    /// For 'E'/'N': the primary message text.
    pub fn message(&self) -> String {
        self.fields().remove(&b'M').unwrap_or_default()
    }

    /// For 'E'/'N': the SQLSTATE.
    pub fn sqlstate(&self) -> String {
        self.fields().remove(&b'C').unwrap_or_default()
    }
}

/// A StartupMessage with the given protocol version and parameters.
pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend(body);
    pkt
}

/// An 8-byte SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    let mut v = 8u32.to_be_bytes().to_vec();
    v.extend(SSL_REQUEST_CODE.to_be_bytes());
    v
}

/// A tagged frontend message.
pub fn frontend_msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Connects to 127.0.0.1:port with a read timeout.
pub fn connect(port: u16, read_timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(read_timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one backend message (bodies over 1 MiB are refused as a test failure signal).
pub fn read_msg(s: &mut TcpStream) -> io::Result<Msg> {
    let mut hdr = [0u8; 5];
    s.read_exact(&mut hdr)?;
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if !(4..=1 << 20).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("backend message length {len}"),
        ));
    }
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body)?;
    Ok(Msg { tag: hdr[0], body })
}

/// What the peer did after we sent something it should reject.
#[derive(Debug)]
pub enum Closing {
    /// It closed (EOF or reset), after sending these messages.
    Closed(Vec<Msg>),
    /// It was still open with no more data when the time ran out.
    StillOpen(Vec<Msg>),
}

/// Reads messages until the peer closes the connection or `timeout` passes.
pub fn read_until_closed(s: &mut TcpStream, timeout: Duration) -> Closing {
    let deadline = Instant::now() + timeout;
    let mut msgs = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Closing::StillOpen(msgs);
        }
        let _ = s.set_read_timeout(Some(left));
        match read_msg(s) {
            Ok(m) => msgs.push(m),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Closing::StillOpen(msgs);
            }
            Err(_) => return Closing::Closed(msgs),
        }
    }
}

/// Result of a raw login attempt.
#[derive(Debug, Default)]
pub struct Login {
    /// NegotiateProtocolVersion ('v') if the server sent one.
    pub negotiate: Option<Msg>,
    /// The auth request codes seen, in order (0 = ok, 3 = cleartext, 5 = md5, 10 = SASL).
    pub auth_codes: Vec<i32>,
    /// ParameterStatus pairs.
    pub params: HashMap<String, String>,
    /// The ErrorResponse that ended the login, if any.
    pub error: Option<Msg>,
    /// True once ReadyForQuery arrived.
    pub ready: bool,
}

/// Sends `startup` and answers cleartext/md5 auth requests with `password` until ReadyForQuery
/// or an error. SASL is not implemented here (use tokio-postgres for SCRAM).
pub fn login(s: &mut TcpStream, startup: &[u8], user: &str, password: &str) -> io::Result<Login> {
    s.write_all(startup)?;
    let mut out = Login::default();
    loop {
        let m = read_msg(s)?;
        match m.tag {
            b'v' => out.negotiate = Some(m),
            b'R' => {
                let code = m.auth_code().unwrap_or(-1);
                out.auth_codes.push(code);
                match code {
                    0 => {}
                    3 => s.write_all(&frontend_msg(b'p', &cstr(password)))?,
                    5 if m.body.len() >= 8 => {
                        let salt = [m.body[4], m.body[5], m.body[6], m.body[7]];
                        let resp = md5_response(user, password, &salt);
                        s.write_all(&frontend_msg(b'p', &cstr(&resp)))?;
                    }
                    _ => return Ok(out),
                }
            }
            b'S' => {
                let parts: Vec<&[u8]> = m.body.split(|&b| b == 0).collect();
                if parts.len() >= 2 {
                    out.params.insert(
                        String::from_utf8_lossy(parts[0]).into_owned(),
                        String::from_utf8_lossy(parts[1]).into_owned(),
                    );
                }
            }
            b'E' => {
                out.error = Some(m);
                return Ok(out);
            }
            b'Z' => {
                out.ready = true;
                return Ok(out);
            }
            _ => {}
        }
    }
}

/// Runs a simple Query and returns the text of the first column of each row, or the error text.
pub fn simple_query(s: &mut TcpStream, sql: &str) -> io::Result<Result<Vec<String>, String>> {
    s.write_all(&frontend_msg(b'Q', &cstr(sql)))?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let m = read_msg(s)?;
        match m.tag {
            b'D' if m.body.len() >= 6 => {
                let len = i32::from_be_bytes([m.body[2], m.body[3], m.body[4], m.body[5]]);
                if len < 0 {
                    rows.push(String::new());
                } else {
                    let end = (6 + len as usize).min(m.body.len());
                    rows.push(String::from_utf8_lossy(&m.body[6..end]).into_owned());
                }
            }
            b'E' => error = Some(m.message()),
            b'Z' => break,
            _ => {}
        }
    }
    Ok(match error {
        Some(e) => Err(e),
        None => Ok(rows),
    })
}

/// Sends Terminate and closes.
pub fn terminate(mut s: TcpStream) {
    let _ = s.write_all(&frontend_msg(b'X', &[]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_packet_layout() {
        let p = startup_packet(PROTO_3_0, &[("user", "u")]);
        assert_eq!(&p[..4], &(p.len() as u32).to_be_bytes());
        assert_eq!(&p[4..8], &[0, 3, 0, 0]);
        assert_eq!(&p[8..], b"user\0u\0\0");
    }

    #[test]
    fn error_fields_parse() {
        let m = Msg {
            tag: b'E',
            body: b"SFATAL\0C08P01\0Mboom\0\0".to_vec(),
        };
        assert_eq!(m.message(), "boom");
        assert_eq!(m.sqlstate(), "08P01");
    }
}
