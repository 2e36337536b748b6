//! Authentication mechanisms, sans-IO: md5, SCRAM-SHA-256 (server and client side), GSSAPI
//! initiator. Nothing here touches a socket; callers move the bytes.

// peer bytes are parsed here: no indexing that could panic (unit tests may index)
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod gss;
pub mod md5;
pub mod password;
pub mod scram;
pub mod secret;
