//! Shared integration-test fixtures: free ports, a throw-away PostgreSQL cluster, the krbouncer
//! process, a raw wire-protocol client and small wait/auth helpers.
//!
//! Each test file includes this with `mod common;`; not every file uses every helper, hence the
//! `dead_code` allowance. The Kerberos lab lives in `kdc.rs` (add `pub mod kdc;` below).
#![allow(dead_code)]

pub mod admin;
pub mod bouncer;
pub mod client;
pub mod faultproxy;
pub mod forwarder;
pub mod kdc;
pub mod pg;
pub mod pgbench;
pub mod pki;
pub mod ports;
pub mod python;
pub mod secrets;
pub mod wait;
pub mod wire;
