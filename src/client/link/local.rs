//! Requests an unlinked client can be answered for without a server (transaction / statement
//! pooling with prepared statements): a Parse of a statement some server already accepted, a
//! Close of a statement, Sync and Flush. libpq's PQprepare (Parse + Sync) is synchronous, so a
//! single-threaded client such as pgbench would otherwise stall all its connections while one
//! waits for a server, including those holding servers in open transactions.
//!
//! A statement no server has checked yet still goes to a server when one is free, so syntax
//! errors surface at Parse as usual; only when the pool is exhausted is it taken on trust, and
//! an error then surfaces at the first Bind / Describe (when it is prepared on a server).

use bytes::{Buf, BytesMut};

use crate::client::error::{ClientError, protocol};
use crate::client::link::prepared::{ClientStatements, parse_parse, parse_target};
use crate::protocol::backend::ready_for_query;
use crate::protocol::framing::peek_header;
use crate::protocol::pooler_errors::PREPARED_STATEMENT_IN_USE;
use crate::server::statements::StatementRegistry;
use crate::stats::PoolStats;

/// What local answering needs.
pub(crate) struct LocalContext<'a> {
    pub registry: &'a StatementRegistry,
    pub statements: &'a mut ClientStatements,
    pub stats: &'a PoolStats,
    pub max_packet_size: usize,
    /// Take Parses of statements no server has checked yet (the pool is exhausted).
    pub accept_unchecked: bool,
}

/// Answers the leading messages of `rbuf` that need no server, consuming them and appending
/// the responses to `out`. Stops at the first message that needs a server (or is incomplete).
pub(crate) fn answer_unlinked(
    rbuf: &mut BytesMut,
    cx: &mut LocalContext<'_>,
    out: &mut BytesMut,
) -> Result<(), ClientError> {
    loop {
        let header = match peek_header(rbuf, cx.max_packet_size) {
            Ok(Some(h)) if rbuf.len() >= h.len => h,
            Ok(_) => return Ok(()),
            Err(e) => return Err(protocol(e.to_string())),
        };
        let msg = &rbuf[..header.len];
        match header.tag {
            b'P' => {
                let (name, body) = parse_parse(msg).map_err(|e| protocol(e.to_string()))?;
                if name.is_empty() {
                    return Ok(());
                }
                let stmt = cx.registry.intern(body);
                if !stmt.is_validated() && !cx.accept_unchecked {
                    return Ok(()); // a server must check it first
                }
                cx.stats.record_client_parse();
                if !cx.statements.insert(name, stmt) {
                    tracing::error!("prepared statement '{name}' was already prepared");
                    return Err(PREPARED_STATEMENT_IN_USE);
                }
                out.extend_from_slice(&[b'1', 0, 0, 0, 4]);
            }
            b'C' => {
                let (kind, name) =
                    parse_target(msg, "Close").map_err(|e| protocol(e.to_string()))?;
                if kind != b'S' || name.is_empty() {
                    return Ok(());
                }
                cx.statements.remove(name);
                out.extend_from_slice(&[b'3', 0, 0, 0, 4]);
            }
            // unlinked clients are always idle outside a transaction
            b'S' => ready_for_query(out, b'I'),
            b'H' => {}
            _ => return Ok(()),
        }
        rbuf.advance(header.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_message as msg;

    #[test]
    fn known_statements_are_prepared_locally_until_a_server_is_needed() {
        let registry = StatementRegistry::default();
        let known = registry.intern(b"BEGIN;\0\0\0");
        known.mark_validated();
        let stats = PoolStats::default();
        let mut statements = ClientStatements::default();
        let mut cx = LocalContext {
            registry: &registry,
            statements: &mut statements,
            stats: &stats,
            max_packet_size: 1 << 20,
            accept_unchecked: false,
        };
        let mut rbuf = BytesMut::new();
        rbuf.extend_from_slice(&msg(b'P', b"p1\0BEGIN;\0\0\0"));
        rbuf.extend_from_slice(&msg(b'S', b""));
        rbuf.extend_from_slice(&msg(b'P', b"p2\0SELECT 1\0\0\0"));
        rbuf.extend_from_slice(&msg(b'S', b""));
        let mut out = BytesMut::new();
        answer_unlinked(&mut rbuf, &mut cx, &mut out).unwrap();
        assert_eq!(&out[..], b"1\0\0\0\x04Z\0\0\0\x05I");
        assert_eq!(rbuf[0], b'P', "the unknown statement waits for a server");
        cx.accept_unchecked = true;
        answer_unlinked(&mut rbuf, &mut cx, &mut out).unwrap();
        assert!(rbuf.is_empty(), "an exhausted pool takes it on trust");
        assert!(statements.get("p1").is_some() && statements.get("p2").is_some());
    }
}
