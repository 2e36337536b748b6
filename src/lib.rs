//! krbouncer: a PgBouncer-compatible PostgreSQL connection pooler that logs in upstream with
//! Kerberos (GSSAPI). The binary (`main.rs`) is a thin shell over this library so that tests,
//! benches and fuzz targets reach the same code.
#![forbid(unsafe_code)]
// Cargo.toml's [lints] hold for the library; its unit tests may unwrap, expect and print.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod process;
pub mod protocol;
pub mod reload;
pub(crate) mod repr;
pub mod serve;
pub mod server;
pub mod shared;
pub mod shutdown;
pub mod signals;
pub mod stats;
pub mod stats_period;
