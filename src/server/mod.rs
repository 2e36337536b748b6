//! Upstream connections: address, connect (TCP or unix, TLS, GSS encryption), login, the
//! tracked parameters, and the pooler's own queries (reset, check, sync, auth_query).

pub mod address;
pub mod auth_query;
pub mod cancel;
pub mod conn;
pub mod connect;
pub mod gss_login;
pub mod list_param;
pub mod login;
pub mod params;
pub mod query;
pub mod requests;
pub mod statements;
