//! Sockets and transports: listener, plain/TLS/GSS-encrypted streams, relay, TLS configs.

pub mod gssenc;
pub mod tls;
