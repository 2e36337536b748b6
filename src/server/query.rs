//! Running the pooler's own simple queries on an idle server (reset, check, parameter sync,
//! connect_query) and consuming every reply so the client never sees them.

use std::time::Duration;

use bytes::BytesMut;

use crate::net::read_message::{WireError, read_message, write_flush};
use crate::protocol::backend::{ErrorFields, parse_error_fields, parse_parameter_status};
use crate::protocol::frontend;
use crate::server::conn::ServerConn;

#[derive(Debug, thiserror::Error)]
pub(crate) enum QueryError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("{}", .0.message)]
    Server(ErrorFields),
    #[error("timed out")]
    Timeout,
    #[error("server not idle after query (status {0:?})")]
    NotIdle(char),
}

/// Sends `sql` as a simple Query and reads up to ReadyForQuery. ParameterStatus replies update
/// the connection's parameters; an ErrorResponse makes the result an error (after draining).
pub(crate) async fn run_simple(
    conn: &mut ServerConn,
    sql: &str,
    timeout: Duration,
) -> Result<(), QueryError> {
    let fut = async {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        frontend::query(&mut out, sql);
        write_flush(&mut conn.stream, &out)
            .await
            .map_err(WireError::Io)?;
        let mut failure = None;
        loop {
            let msg = read_message(&mut conn.stream, &mut conn.rbuf).await?;
            match msg.first().copied() {
                Some(b'Z') => {
                    let status = msg.get(5).copied().unwrap_or(b'?');
                    if let Some(err) = failure {
                        return Err(QueryError::Server(err));
                    }
                    if status != b'I' {
                        return Err(QueryError::NotIdle(status as char));
                    }
                    return Ok(());
                }
                Some(b'E') => {
                    failure = Some(parse_error_fields(&msg).map_err(WireError::Protocol)?);
                }
                Some(b'S') => {
                    let (name, value) =
                        parse_parameter_status(&msg).map_err(WireError::Protocol)?;
                    conn.params.set(name, value);
                }
                // CommandComplete, EmptyQueryResponse, NoticeResponse, RowDescription, DataRow...
                _ => {}
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(QueryError::Timeout),
    }
}
