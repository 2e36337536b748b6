//! The client's first packets: SSLRequest and GSSENCRequest (answered 'N'), CancelRequest, and
//! the StartupMessage with its parameters checked the way PgBouncer checks them.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::error::{ClientError, protocol};
use crate::protocol::pooler_errors::{
    CLIENT_UNEXPECTED_EOF, NO_USERNAME, UNSUPPORTED_OPTIONS_FORMAT, unsupported_startup_parameter,
    unsupported_startup_parameter_in_options,
};
use crate::protocol::replication::Replication;
use crate::protocol::startup::{StartupPacket, parse_startup};
use crate::server::params::{ParamSet, is_tracked};

/// What the client asked for in its StartupMessage.
#[derive(Debug)]
pub struct StartupRequest {
    pub user: String,
    pub database: String,
    pub minor_version: u16,
    /// Tracked parameters the client set (startup packet and `options`).
    pub params: ParamSet,
    /// `_pq_.*` protocol options, which krbouncer does not support.
    pub unsupported_options: Vec<String>,
    /// A walsender connection: it gets a server of its own (`client::link::replication`).
    pub replication: Replication,
    /// A replication client's `options`, passed to its server verbatim (any GUC may appear,
    /// e.g. `extra_float_digits` from CREATE SUBSCRIPTION), as PgBouncer 1.23+ does.
    pub replication_options: Option<String>,
}

/// The first real packet of a connection.
pub enum FirstPacket {
    Startup(StartupRequest),
    Cancel {
        pid: i32,
        key: Vec<u8>,
    },
    /// The peer closed the connection before sending anything.
    Gone,
}

/// Reads packets until a StartupMessage or CancelRequest arrives.
pub async fn read_first_packet<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    tracked: &[String],
    ignored: &[String],
) -> Result<FirstPacket, ClientError> {
    loop {
        let packet = loop {
            match parse_startup(rbuf) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(e) => return Err(protocol(e.to_string())),
            }
            rbuf.reserve(256);
            match stream.read_buf(rbuf).await {
                // a probe that connects and leaves without a word is not an error worth a log
                Ok(0) | Err(_) if rbuf.is_empty() => return Ok(FirstPacket::Gone),
                Ok(0) | Err(_) => return Err(CLIENT_UNEXPECTED_EOF),
                Ok(_) => {}
            }
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                let ssl = matches!(packet, StartupPacket::SslRequest);
                crate::client::encryption::nothing_after_request(ssl, rbuf)?;
                stream
                    .write_all(b"N")
                    .await
                    .map_err(|_| CLIENT_UNEXPECTED_EOF)?;
            }
            StartupPacket::CancelRequest { pid, key } => {
                return Ok(FirstPacket::Cancel {
                    pid,
                    key: key.to_vec(),
                });
            }
            StartupPacket::Startup {
                major: _,
                minor,
                params,
            } => {
                return check_params(minor, params, tracked, ignored).map(FirstPacket::Startup);
            }
        }
    }
}

fn check_params(
    minor: u16,
    params: Vec<(String, String)>,
    tracked: &[String],
    ignored: &[String],
) -> Result<StartupRequest, ClientError> {
    let mut user = None;
    let mut database = None;
    let mut set = ParamSet::new();
    let mut unsupported_options = Vec::new();
    // read first: it decides how `options` is taken, wherever it appears
    let replication = params
        .iter()
        .rev()
        .find(|(k, _)| k == "replication")
        .map(|(_, v)| Replication::parse(v))
        .unwrap_or_default();
    let mut replication_options = None;
    for (name, value) in params {
        match name.as_str() {
            "user" => user = Some(value),
            "database" => database = Some(value),
            "options" if replication.is_replication() => replication_options = Some(value),
            "options" => apply_options(&value, &mut set, tracked, ignored)?,
            "replication" => {}
            n if n.starts_with("_pq_.") => unsupported_options.push(name),
            n if is_tracked(n, tracked) => set.set(n, &value),
            n if ignored.iter().any(|i| i.eq_ignore_ascii_case(n)) => {}
            _ => return Err(unsupported_startup_parameter(&name)),
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or(NO_USERNAME)?;
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(StartupRequest {
        user,
        database,
        minor_version: minor,
        params: set,
        unsupported_options,
        replication,
        replication_options,
    })
}

/// `options` may carry `-c name=value` and `--name=value`, separated by spaces, with `\`
/// escaping the next character (libpq's rule). Each name must be tracked or ignored.
fn apply_options(
    options: &str,
    set: &mut ParamSet,
    tracked: &[String],
    ignored: &[String],
) -> Result<(), ClientError> {
    let words = split_options(options);
    let mut i = 0;
    while i < words.len() {
        let assignment = if words[i] == "-c" {
            i += 1;
            words.get(i).map(String::as_str)
        } else if let Some(rest) = words[i].strip_prefix("-c") {
            Some(rest)
        } else {
            words[i].strip_prefix("--")
        };
        let Some((name, value)) = assignment.and_then(|a| a.split_once('=')) else {
            if ignored.iter().any(|n| n == "options") {
                return Ok(());
            }
            return Err(UNSUPPORTED_OPTIONS_FORMAT);
        };
        let name = name.replace('-', "_");
        if is_tracked(&name, tracked) {
            set.set(&name, value);
        } else if !ignored
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&name) || n == "options")
        {
            return Err(unsupported_startup_parameter_in_options(&name));
        }
        i += 1;
    }
    Ok(())
}

fn split_options(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked() -> Vec<String> {
        crate::server::params::tracked_names(&["IntervalStyle".to_string()])
    }

    #[test]
    fn options_set_tracked_parameters() {
        let mut set = ParamSet::new();
        apply_options(
            "-c DateStyle=ISO,\\ DMY --application-name=x",
            &mut set,
            &tracked(),
            &[],
        )
        .expect("valid");
        assert_eq!(set.get("datestyle"), Some("ISO, DMY"));
        assert_eq!(set.get("application_name"), Some("x"));
    }

    #[test]
    fn untracked_option_is_refused_unless_ignored() {
        let mut set = ParamSet::new();
        assert!(apply_options("-c statement_timeout=5", &mut set, &tracked(), &[]).is_err());
        let ignored = vec!["statement_timeout".to_string()];
        assert!(apply_options("-c statement_timeout=5", &mut set, &tracked(), &ignored).is_ok());
    }

    #[test]
    fn unknown_startup_parameter_is_refused_with_pgbouncer_text() {
        let params = vec![
            ("user".into(), "u".into()),
            ("search_path".into(), "x".into()),
        ];
        let err = check_params(0, params, &tracked(), &[]).expect_err("refused");
        assert_eq!(err.message, "unsupported startup parameter: search_path");
        let params = vec![
            ("user".into(), "u".into()),
            ("extra_float_digits".into(), "2".into()),
        ];
        let ok =
            check_params(0, params, &tracked(), &["extra_float_digits".into()]).expect("ignored");
        assert_eq!(ok.database, "u");
    }
}
