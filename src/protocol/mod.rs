//! PostgreSQL v3 wire protocol, sans-IO: no tokio, no sockets. Framing (header peek with
//! per-tag length limits), startup packets, the backend/frontend messages the pooler inspects
//! or synthesises, SQLSTATE codes and PgBouncer's client-facing error catalogue.
//!
//! Which parser to use when:
//! - steady-state relay: [`framing::peek_header`] + [`framing::max_len_for`] only (zero-copy);
//! - the first packet from a client: [`startup::parse_startup`];
//! - server -> client messages the pooler must read (ReadyForQuery, ParameterStatus,
//!   BackendKeyData, ErrorResponse/NoticeResponse): the small parsers in [`backend`];
//! - login towards a server (Authentication* requests including GSS/SSPI/SASL): either the
//!   parsers here or `postgres_protocol::message::backend::Message::parse`, which decodes every
//!   Authentication subtype; it allocates a `Bytes` per message, fine for the login phase only;
//! - client login messages ('p'): [`frontend::parse_password_message`] and friends.

// peer bytes are parsed here: no indexing that could panic (unit tests may index)
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod backend;
pub mod error;
pub mod framing;
pub mod frontend;
mod message_codec;
pub mod pooler_errors;
pub mod replication;
pub mod result_set;
pub mod sqlstate;
pub mod startup;

pub use error::ProtocolError;

/// A whole message (tag, length, body) for unit tests.
#[cfg(test)]
pub(crate) fn test_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}
