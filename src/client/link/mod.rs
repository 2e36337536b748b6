//! The linked phase of a client: after login, each request is forwarded to a server of the
//! pool (`session`), watched in both directions (`watch`), owed responses are queued
//! (`server::requests`, kept with the server between links), an unlinked client is answered
//! locally where PgBouncer does (`local`), and
//! protocol-level prepared statements follow the client from server to server (`prepared`);
//! a replication client has a server of its own (`replication`); a client queued too long is
//! told so (`wait_notify`).

pub mod local;
pub mod prepared;
pub mod replication;
pub mod session;
pub mod wait_notify;
pub mod watch;
