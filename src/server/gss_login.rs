//! The GSSAPI leg of a server login: answers AuthenticationGSS / GSSContinue with tokens from
//! the initiator in `auth::gss`, under the `server_gssauth_negotiate` policy.

use std::time::Duration;

use crate::auth::gss::{GssPurpose, GssRuntime, GssSession, GssTarget};
pub use crate::config::GssAuthNegotiate as GssNegotiate;

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
    pub fn already_encrypted(&self) -> bool {
        self.encrypted
    }

    fn target(&self) -> Result<&GssTarget, String> {
        if self.negotiate == GssNegotiate::Disable {
            return Err(
                "server requested GSSAPI authentication but server_gssauth_negotiate = disable"
                    .to_string(),
            );
        }
        self.target.ok_or_else(|| {
            "server requested GSSAPI authentication but no service principal can be formed for this connection"
                .to_string()
        })
    }

    /// Starts the context and produces the first token (AP-REQ).
    pub async fn first_step(
        &self,
        session: &mut Option<GssSession>,
    ) -> Result<Option<Vec<u8>>, String> {
        let target = self.target()?;
        let mut s = self
            .runtime
            .start(target, GssPurpose::Auth, self.deadline)
            .await
            .map_err(|e| e.to_string())?;
        let token = s
            .step(self.runtime, None, self.deadline)
            .await
            .map_err(|e| e.to_string())?;
        *session = Some(s);
        Ok(token)
    }

    /// Feeds the server's token (AP-REP with mutual authentication) to the context.
    pub async fn next_step(
        &self,
        session: &mut Option<GssSession>,
        input: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        self.target()?;
        let Some(s) = session.as_mut() else {
            return Err("server sent GSSContinue before AuthenticationGSS".to_string());
        };
        if s.is_complete() && input.is_empty() {
            return Ok(None);
        }
        s.step(self.runtime, Some(input), self.deadline)
            .await
            .map_err(|e| e.to_string())
    }

    pub fn is_complete(&self, session: &GssSession) -> bool {
        session.is_complete()
    }
}
