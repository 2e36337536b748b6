//! GSSAPI (Kerberos) initiator for upstream logins: target names, error classification and
//! off-thread context establishment. Sans-IO: callers move the tokens.
//!
//! Wiring (see `server/login`): on AuthenticationGSS (7) `rt.start(&target, GssPurpose::Auth)`
//! then `step(None)`; on AuthenticationGSSContinue (8) `step(Some(data))`; send every returned
//! token as GSSResponse ('p'); send nothing when a step returns `None`.

mod error;
mod runtime;
mod target;

pub use error::{GssError, GssStatus};
pub use runtime::{GssCountersSnapshot, GssPurpose, GssRuntime, GssSession};
pub use target::{GssTarget, SpnSource, target_name};
