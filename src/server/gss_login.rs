//! The GSSAPI leg of a server login: answers AuthenticationGSS / GSSContinue with tokens from
//! the initiator in `auth::gss`, under the `server_gssauth_negotiate` policy.

use std::time::Duration;

use crate::auth::gss::{GssError, GssPurpose, GssRuntime, GssSession, GssTarget};
pub use crate::config::GssAuthNegotiate as GssNegotiate;

/// Why the GSSAPI leg of a server login failed.
#[derive(Debug, thiserror::Error)]
pub enum GssLoginError {
    #[error("server requested GSSAPI authentication but server_gssauth_negotiate = disable")]
    Disabled,
    #[error(
        "server requested GSSAPI authentication but no service principal can be formed for this connection"
    )]
    NoTarget,
    #[error("server sent GSSContinue before AuthenticationGSS")]
    ContinueBeforeStart,
    #[error("server accepted the login before GSSAPI mutual authentication completed")]
    Incomplete,
    #[error("server did not use GSSAPI authentication but server_gssauth_negotiate = require")]
    NotUsed,
    #[error(
        "server requested password authentication, refused because server_gssauth_negotiate = require"
    )]
    PasswordRefused,
    /// The GSSAPI library (or the KDC behind it) failed.
    #[error(transparent)]
    Gss(#[from] GssError),
}

/// Everything the login loop needs to answer a GSSAPI request from the server.
pub struct GssLogin<'a> {
    pub negotiate: GssNegotiate,
    /// The service principal for this server; None when it could not be formed (unix socket).
    pub target: Option<&'a GssTarget>,
    pub runtime: &'a GssRuntime,
    pub deadline: Duration,
    /// The transport is already GSS-encrypted, so the server knows who we are.
    pub encrypted: bool,
}

impl GssLogin<'_> {
    pub(crate) fn already_encrypted(&self) -> bool {
        self.encrypted
    }

    fn target(&self) -> Result<&GssTarget, GssLoginError> {
        if self.negotiate == GssNegotiate::Disable {
            return Err(GssLoginError::Disabled);
        }
        self.target.ok_or(GssLoginError::NoTarget)
    }

    /// Starts the context and produces the first token (AP-REQ).
    pub(crate) async fn first_step(
        &self,
        session: &mut Option<GssSession>,
    ) -> Result<Option<Vec<u8>>, GssLoginError> {
        let target = self.target()?;
        let mut s = self
            .runtime
            .start(target, GssPurpose::Auth, self.deadline)
            .await?;
        let token = s.step(self.runtime, None, self.deadline).await?;
        *session = Some(s);
        Ok(token)
    }

    /// Feeds the server's token (AP-REP with mutual authentication) to the context.
    pub(crate) async fn next_step(
        &self,
        session: &mut Option<GssSession>,
        input: &[u8],
    ) -> Result<Option<Vec<u8>>, GssLoginError> {
        self.target()?;
        let Some(s) = session.as_mut() else {
            return Err(GssLoginError::ContinueBeforeStart);
        };
        if s.is_complete() && input.is_empty() {
            return Ok(None);
        }
        Ok(s.step(self.runtime, Some(input), self.deadline).await?)
    }

    pub(crate) fn is_complete(&self, session: &GssSession) -> bool {
        session.is_complete()
    }
}
