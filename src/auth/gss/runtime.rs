//! Runs GSSAPI initiator steps off the async workers: every call that may talk to the KDC or
//! read a keytab/ccache runs in `spawn_blocking`, bounded by a semaphore and a deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::oid::{GSS_MECH_KRB5, OidSet};
use tokio::sync::Semaphore;

use super::error::GssError;
use super::target::GssTarget;

/// What the security context is for; decides the requested flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GssPurpose {
    /// AuthenticationGSS login: MUTUAL only, exactly what libpq requests. (The PgBouncer fork
    /// also asks for INTEG|SEQUENCE; the server ignores them for authentication, so MUTUAL
    /// alone keeps the KDC/ticket requirements minimal.)
    Auth,
    /// GSSENC transport: libpq's GSS_REQUIRED_FLAGS; CONF|INTEG must be granted.
    Encryption,
}

impl GssPurpose {
    fn flags(self) -> CtxFlags {
        match self {
            GssPurpose::Auth => CtxFlags::GSS_C_MUTUAL_FLAG,
            GssPurpose::Encryption => {
                CtxFlags::GSS_C_MUTUAL_FLAG
                    | CtxFlags::GSS_C_REPLAY_FLAG
                    | CtxFlags::GSS_C_SEQUENCE_FLAG
                    | CtxFlags::GSS_C_CONF_FLAG
                    | CtxFlags::GSS_C_INTEG_FLAG
            }
        }
    }
}

/// Shared by all server logins of a process (put it in `Shared`). Bounds how many GSSAPI calls
/// may be in flight on the blocking pool: a stalled KDC blocks a thread for up to ~30 s per
/// call (MIT has no request timeout), and timed-out calls keep their thread until libkrb5
/// gives up, so the bound also caps those stragglers.
///
/// Credentials: none are held. Each context uses GSS_C_NO_CREDENTIAL, so MIT krb5 takes the
/// default ccache (`KRB5CCNAME`, e.g. `MEMORY:` or `FILE:/path`) and obtains or refreshes
/// tickets from the client keytab (`KRB5_CLIENT_KTNAME`, or krb5.conf
/// `default_client_keytab_name`) when they are missing or about to expire. A long-lived
/// `Cred` would never be refreshed ("Ticket expired" after the TGT lifetime). Set those
/// variables in the process environment before start; the library never calls `set_var`.
#[derive(Debug, Clone)]
pub struct GssRuntime {
    limiter: Arc<Semaphore>,
    counters: Arc<GssCounters>,
}

/// Outcomes of context establishment, for `/metrics`: contexts established by purpose and
/// failures by [`GssError::reason_label`].
#[derive(Debug, Default)]
pub(crate) struct GssCounters {
    established_auth: AtomicU64,
    established_encryption: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

/// A copy of [`GssCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GssCountersSnapshot {
    pub established_auth: u64,
    pub established_encryption: u64,
    pub failures: BTreeMap<&'static str, u64>,
}

impl GssCounters {
    fn established(&self, purpose: GssPurpose) {
        let c = match purpose {
            GssPurpose::Auth => &self.established_auth,
            GssPurpose::Encryption => &self.established_encryption,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, e: &GssError) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        *f.entry(e.reason_label()).or_default() += 1;
    }

    pub fn snapshot(&self) -> GssCountersSnapshot {
        GssCountersSnapshot {
            established_auth: self.established_auth.load(Ordering::Relaxed),
            established_encryption: self.established_encryption.load(Ordering::Relaxed),
            failures: self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl GssRuntime {
    pub fn new(max_in_flight: usize) -> GssRuntime {
        GssRuntime {
            limiter: Arc::new(Semaphore::new(max_in_flight.max(1))),
            counters: Arc::default(),
        }
    }

    /// Established contexts and failures so far (for `/metrics`).
    pub fn counters(&self) -> GssCountersSnapshot {
        self.counters.snapshot()
    }

    /// Number of GSSAPI calls that could start right now.
    pub fn available_slots(&self) -> usize {
        self.limiter.available_permits()
    }

    /// Create a security context for `target`. Nothing blocking happens here; the first
    /// `step(rt, None, ..)` produces the initial token (and may hit the KDC).
    pub async fn start(
        &self,
        target: &GssTarget,
        purpose: GssPurpose,
        _deadline: Duration,
    ) -> Result<GssSession, GssError> {
        let name = target
            .name_for_context()
            .inspect_err(|e| self.counters.failed(e))?;
        let ctx = ClientCtx::new(None, name, purpose.flags(), Some(GSS_MECH_KRB5));
        Ok(GssSession {
            ctx: Some(ctx),
            target: target.to_string(),
            purpose,
        })
    }

    /// Run `work` on the blocking pool holding one permit, within `deadline` (waiting for the
    /// permit counts). The permit moves into the closure so it is released only when the
    /// blocking call really returns, even after a timeout.
    async fn run_blocking<T, F>(
        &self,
        target: &str,
        deadline: Duration,
        work: F,
    ) -> Result<T, GssError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let limiter = self.limiter.clone();
        let job = async move {
            let permit = limiter.acquire_owned().await;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                work()
            })
            .await
        };
        match tokio::time::timeout(deadline, job).await {
            Err(_) => Err(GssError::Timeout {
                target: target.to_string(),
                deadline,
            }),
            Ok(Err(join)) => Err(GssError::Internal {
                target: target.to_string(),
                reason: join.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// When the default initiator credential (the TGT in the default ccache, possibly obtained
    /// from the client keytab by this call) expires. `Ok(None)` when it does not expire.
    /// The credential is released right away (never kept: see the type docs).
    pub async fn ticket_expiry(&self, deadline: Duration) -> Result<Option<SystemTime>, GssError> {
        let res = self
            .run_blocking("(default credential)", deadline, || {
                let mechs = OidSet::singleton(GSS_MECH_KRB5)?;
                let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs))?;
                cred.lifetime()
            })
            .await?;
        let lifetime = res.map_err(|e| GssError::from_gss("(default credential)", e))?;
        // GSS_C_INDEFINITE (u32::MAX seconds) means "never expires".
        if lifetime.as_secs() >= u64::from(u32::MAX) {
            return Ok(None);
        }
        Ok(SystemTime::now().checked_add(lifetime))
    }
}

/// One GSSAPI security context being established (or established) with a server.
pub struct GssSession {
    /// `None` after a step timed out or panicked: the context then belongs to a blocking
    /// thread that is still inside libkrb5, and this session can only fail.
    ctx: Option<ClientCtx>,
    target: String,
    purpose: GssPurpose,
}

impl std::fmt::Debug for GssSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GssSession")
            .field("target", &self.target)
            .field("purpose", &self.purpose)
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl GssSession {
    /// One `gss_init_sec_context` step. `input` is the server's token (None for the first
    /// step). Returns the token to send, if any. With MUTUAL the last step consumes the
    /// server's AP-REP and returns `Ok(None)`: send nothing then (an empty GSSResponse would
    /// be a protocol violation).
    pub async fn step(
        &mut self,
        rt: &GssRuntime,
        input: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, GssError> {
        let was_complete = self.is_complete();
        let res = self.step_inner(rt, input, deadline).await;
        match &res {
            Err(e) => rt.counters.failed(e),
            Ok(_) if !was_complete && self.is_complete() => rt.counters.established(self.purpose),
            Ok(_) => {}
        }
        res
    }

    async fn step_inner(
        &mut self,
        rt: &GssRuntime,
        input: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<Option<Vec<u8>>, GssError> {
        let mut ctx = self.ctx.take().ok_or_else(|| GssError::Internal {
            target: self.target.clone(),
            reason: "an earlier step timed out or failed".into(),
        })?;
        let input = input.map(<[u8]>::to_vec);
        let (ctx, res) = rt
            .run_blocking(&self.target, deadline, move || {
                let res = ctx
                    .step(input.as_deref(), None)
                    .map(|tok| tok.map(|b| b.to_vec()));
                (ctx, res)
            })
            .await?;
        let out = res.map_err(|e| GssError::from_gss(&self.target, e))?;
        if self.purpose == GssPurpose::Encryption && ctx.is_complete() {
            check_encryption_flags(&ctx, &self.target)?;
        }
        self.ctx = Some(ctx);
        Ok(out)
    }

    /// True once the context is established (mutual authentication verified).
    pub fn is_complete(&self) -> bool {
        self.ctx.as_ref().is_some_and(|c| c.is_complete())
    }

    /// The target as given (see `GssTarget`'s Display).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// After completion: the principal the context was actually established with (the
    /// canonical server principal, e.g. for a host-based target). Local call.
    pub fn established_target(&self) -> Option<String> {
        let ctx = self.ctx.as_ref().filter(|c| c.is_complete())?;
        ctx.target_name().ok().map(|n| n.to_string())
    }

    /// After completion: our own principal. Local call.
    pub fn established_source(&self) -> Option<String> {
        let ctx = self.ctx.as_ref().filter(|c| c.is_complete())?;
        ctx.source_name().ok().map(|n| n.to_string())
    }

    /// Hand the established context to the GSSENC transport.
    pub(crate) fn into_established_context(self) -> Result<ClientCtx, GssError> {
        match self.ctx {
            Some(ctx) if ctx.is_complete() => Ok(ctx),
            _ => Err(GssError::Internal {
                target: self.target,
                reason: "context is not established".into(),
            }),
        }
    }
}

fn check_encryption_flags(ctx: &ClientCtx, target: &str) -> Result<(), GssError> {
    let need = CtxFlags::GSS_C_CONF_FLAG | CtxFlags::GSS_C_INTEG_FLAG;
    let flags = ctx.flags().map_err(|e| GssError::from_gss(target, e))?;
    if flags.contains(need) {
        Ok(())
    } else {
        Err(GssError::EncryptionNotGranted {
            target: target.to_string(),
            flags: format!("{flags:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::gss::target_name;

    #[test]
    fn purposes_request_libpq_flags() {
        assert_eq!(GssPurpose::Auth.flags(), CtxFlags::GSS_C_MUTUAL_FLAG);
        let enc = GssPurpose::Encryption.flags();
        assert!(enc.contains(
            CtxFlags::GSS_C_CONF_FLAG | CtxFlags::GSS_C_INTEG_FLAG | CtxFlags::GSS_C_MUTUAL_FLAG
        ));
    }

    #[tokio::test]
    async fn timeout_when_no_slot_frees_up() {
        // All permits taken: the step cannot start, and the deadline must still hold.
        let rt = GssRuntime::new(1);
        let _held = rt
            .limiter
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let target = target_name("postgres/h@EXAMPLE.COM", "postgres", "h").expect("valid");
        let mut s = rt
            .start(&target, GssPurpose::Auth, Duration::from_secs(1))
            .await
            .expect("start");
        let e = s
            .step(&rt, None, Duration::from_millis(50))
            .await
            .expect_err("must time out");
        assert_eq!(e.reason_label(), "timeout");
        assert!(e.to_string().contains("did not answer within"), "{e}");
        // the context was dropped with the cancelled job: the session now refuses to continue
        let e = s
            .step(&rt, None, Duration::from_millis(50))
            .await
            .expect_err("poisoned");
        assert_eq!(e.reason_label(), "internal");
    }

    #[tokio::test]
    async fn permit_is_held_by_the_blocking_closure() {
        let rt = GssRuntime::new(1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rt2 = rt.clone();
        let r = rt2
            .run_blocking("t", Duration::from_millis(30), move || rx.recv().ok())
            .await;
        assert_eq!(r.expect_err("timed out").reason_label(), "timeout");
        // the straggler still holds the only permit
        assert_eq!(rt.available_slots(), 0);
        tx.send(()).expect("straggler alive");
        for _ in 0..200 {
            if rt.available_slots() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("permit not released after the blocking call returned");
    }
}
