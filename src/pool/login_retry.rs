//! Clients queued while the server cannot be reached: PgBouncer keeps them waiting and
//! retries the connect every `server_login_retry`, bounded by `query_wait_timeout`, so a
//! PostgreSQL restart is a pause for clients, not an error. A server that answers and refuses
//! the login (bad password, no such database) still fails the client at once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::pool::{Pool, lock};
use crate::server::connect::{ConnectError, TlsConnectError};
use crate::server::login::LoginError;

/// Whether a failed connect is the server being away (down, restarting, unreachable) rather
/// than a refusal: only those are retried for waiting clients.
pub(super) fn server_away(e: &ConnectError) -> bool {
    match e {
        ConnectError::Socket { .. } => true,
        // Not a timeout: it also stands for a Kerberos KDC that does not answer, where new
        // logins must fail within server_connect_timeout (tests/kerberos_upstream.rs).
        // PgBouncer retries it (test_server_connect_timeout_establish): a known difference.
        ConnectError::Timeout => false,
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up / shutting down)
        ConnectError::Login(LoginError::Server(f)) => f.code.starts_with("57P0"),
        ConnectError::Login(LoginError::Wire(_)) => true,
        // a PostgreSQL shutting down closes new connections during the SSLRequest/handshake;
        // PgBouncer treats every failed handshake so ("server conn crashed?"), a certificate
        // refused too: clients wait, and SET / RELOAD of the TLS files lets them in
        ConnectError::Tls(TlsConnectError::Handshake(_)) => true,
        _ => false,
    }
}

impl Pool {
    pub(super) fn set_server_away(&self, away: bool) {
        self.server_away.store(away, Ordering::Relaxed);
    }

    /// Forgets the last login failure: after SET or RELOAD the next client tries the server
    /// at once instead of getting the cached error (the settings may have fixed it).
    pub fn forget_login_failure(&self) {
        *lock(&self.login_failure) = None;
        self.set_server_away(false);
    }

    /// The last connect failed because the server was away.
    pub(super) fn is_server_away(&self) -> bool {
        self.server_away.load(Ordering::Relaxed)
    }

    /// Waits for the next connect attempt (`server_login_retry` after the last failure) unless
    /// that would pass the client's `query_wait_timeout` (counted from `since`); false then.
    pub(super) async fn wait_login_retry(&self, since: Instant) -> bool {
        let failed_at = lock(&self.login_failure).as_ref().map(|(at, _)| *at);
        let retry_at = failed_at.unwrap_or_else(Instant::now) + self.def().server_login_retry;
        // never spin: at least a short pause between attempts
        let retry_at = retry_at.max(Instant::now() + Duration::from_millis(10));
        let limit = self.def().query_wait_timeout;
        if !limit.is_zero() && retry_at >= since + limit {
            return false;
        }
        tokio::time::sleep_until(retry_at.into()).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::server_away;
    use crate::server::connect::{ConnectError, TlsConnectError};
    use std::io::{Error, ErrorKind};

    fn handshake(e: Error) -> ConnectError {
        ConnectError::Tls(TlsConnectError::Handshake(e))
    }

    #[test]
    fn a_handshake_cut_by_a_restarting_server_is_the_server_away() {
        for kind in [
            ErrorKind::UnexpectedEof,
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
        ] {
            assert!(server_away(&handshake(Error::from(kind))), "{kind:?}");
        }
    }

    #[test]
    fn certificate_failures_are_retried_and_tls_refusals_are_not() {
        let bad_cert = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let e = handshake(bad_cert);
        assert!(server_away(&e));
        assert!(e.to_string().contains("certificate verify failed"), "{e}");
        assert!(!server_away(&ConnectError::Tls(TlsConnectError::Refused)));
        assert!(!server_away(&ConnectError::Tls(
            TlsConnectError::NotConfigured
        )));
    }
}
