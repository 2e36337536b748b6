//! Sockets and streams: the listener, the client/server stream types, the relay (hot loop),
//! message reading outside the relay, TLS and GSS encryption.

// peer bytes are parsed here: no indexing that could panic (unit tests may index)
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod client_tls;
pub mod defer_accept;
pub mod gssenc;
pub mod listener;
pub mod read_message;
pub mod read_pool;
pub mod relay;
pub mod server_tls;
pub mod sockopt;
pub mod stream;
pub mod tls_protocols;
pub mod x509_v1;
