//! Running `auth_query` on a server of the auth pool: one extended-protocol query with the
//! client's user name as its only parameter, read up to ReadyForQuery, as PgBouncer's
//! `start_auth_query` / `handle_auth_query_response` do. No SET from the client's startup
//! parameters is ever sent on this connection (the client is not authenticated yet).

use bytes::BytesMut;

use crate::net::read_message::{WireError, read_message, write_flush};
use crate::protocol::backend::{ErrorFields, parse_error_fields, parse_parameter_status};
use crate::protocol::frontend;
use crate::protocol::result_set::{parse_data_row, parse_row_description_columns};
use crate::server::conn::ServerConn;

/// What one auth_query row says about a user.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedUser {
    /// The first column (PgBouncer keeps the name the query returned).
    pub name: String,
    /// The second column; `None` for NULL (no password, or `rolvaliduntil` passed).
    pub password: Option<String>,
}

impl std::fmt::Debug for FetchedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FetchedUser({}, <redacted>)", self.name)
    }
}

/// Why the auth query gave no usable answer. The texts are PgBouncer's server-close reasons.
#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The server refused the query (a missing table, a permission error...).
    #[error("error response from auth_query")]
    Server(ErrorFields),
    #[error("expected 2 columns from auth_query, not {0}")]
    Columns(usize),
    #[error("auth_query response contained null user name")]
    NullUserName,
    #[error("unexpected response from auth_query")]
    Unexpected(char),
}

/// Runs `query` with `user` as `$1`; the last row wins, as in PgBouncer. `Ok(None)`: no row.
/// The caller bounds the time (the client's `client_login_timeout`).
pub(crate) async fn run_auth_query(
    conn: &mut ServerConn,
    query: &str,
    user: &str,
) -> Result<Option<FetchedUser>, AuthQueryError> {
    let mut out = BytesMut::with_capacity(query.len() + user.len() + 64);
    frontend::extended_query(&mut out, query, &[user]);
    write_flush(&mut conn.stream, &out)
        .await
        .map_err(WireError::Io)?;
    let mut found = None;
    let mut failure = None;
    loop {
        let msg = read_message(&mut conn.stream, &mut conn.rbuf).await?;
        let tag = msg.first().copied().unwrap_or(0);
        match tag {
            b'T' => {
                let n = parse_row_description_columns(&msg).map_err(WireError::Protocol)?;
                if n != 2 {
                    return Err(AuthQueryError::Columns(n.into()));
                }
            }
            b'D' => found = Some(fetched_user(&msg)?),
            b'E' => {
                failure = Some(parse_error_fields(&msg).map_err(WireError::Protocol)?);
            }
            b'S' => {
                let (name, value) = parse_parameter_status(&msg).map_err(WireError::Protocol)?;
                conn.params.set(name, value);
            }
            b'Z' => {
                return match failure {
                    Some(e) => Err(AuthQueryError::Server(e)),
                    None => Ok(found),
                };
            }
            // ParseComplete, BindComplete, CommandComplete, NoticeResponse, NoData
            b'1' | b'2' | b'C' | b'N' | b'n' => {}
            other => return Err(AuthQueryError::Unexpected(other as char)),
        }
    }
}

fn fetched_user(msg: &[u8]) -> Result<FetchedUser, AuthQueryError> {
    let values = parse_data_row(msg).map_err(WireError::Protocol)?;
    let [name, password] = values.as_slice() else {
        return Err(AuthQueryError::Columns(values.len()));
    };
    let name = name.ok_or(AuthQueryError::NullUserName)?;
    Ok(FetchedUser {
        name: String::from_utf8_lossy(name).into_owned(),
        password: password.map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::result_set::{ColType, data_row, row_description};

    #[test]
    fn a_row_gives_name_and_password_and_null_is_none() {
        let mut row = BytesMut::new();
        data_row(&mut row, &[Some("alice"), Some("md5abc")]);
        let u = fetched_user(&row).expect("row");
        assert_eq!(
            (u.name.as_str(), u.password.as_deref()),
            ("alice", Some("md5abc"))
        );
        row.clear();
        data_row::<&str>(&mut row, &[Some("alice"), None]);
        assert_eq!(fetched_user(&row).expect("row").password, None);
        row.clear();
        data_row::<&str>(&mut row, &[None, Some("x")]);
        assert!(matches!(
            fetched_user(&row),
            Err(AuthQueryError::NullUserName)
        ));
        row.clear();
        data_row(&mut row, &[Some("a")]);
        assert!(matches!(
            fetched_user(&row),
            Err(AuthQueryError::Columns(1))
        ));
        let mut desc = BytesMut::new();
        row_description(&mut desc, &[("a", ColType::Text)]);
        assert_eq!(parse_row_description_columns(&desc).expect("desc"), 1);
    }

    #[test]
    fn debug_hides_the_password() {
        let u = FetchedUser {
            name: "u".into(),
            password: Some("hunter2".into()),
        };
        assert!(!format!("{u:?}").contains("hunter2"));
    }
}
