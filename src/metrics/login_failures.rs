//! Client login failures by reason: a registered counter, bumped where a login is refused.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::protocol::pooler_errors::{self as pe, PoolerError};

/// Cheap to clone (the counter is shared): each client task holds one.
#[derive(Clone)]
pub struct LoginFailures {
    counter: IntCounterVec,
}

impl LoginFailures {
    pub fn register(registry: &Registry) -> Result<LoginFailures, prometheus::Error> {
        let counter = IntCounterVec::new(
            Opts::new(
                "krbouncer_client_login_failures_total",
                "Client logins refused, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        Ok(LoginFailures { counter })
    }

    pub fn record(&self, error: &PoolerError) {
        self.counter
            .with_label_values(&[login_failure_reason(error)])
            .inc();
    }
}

/// A short, stable label for why a login was refused.
pub fn login_failure_reason(e: &PoolerError) -> &'static str {
    let m = &*e.message;
    let is = |c: &PoolerError| *c.message == *m;
    if [
        &pe::PASSWORD_AUTH_FAILED,
        &pe::SASL_AUTH_FAILED,
        &pe::TRUST_AUTH_FAILED,
        &pe::EMPTY_PASSWORD,
        &pe::INVALID_SASL_MECHANISM,
        &pe::NO_SUCH_USER,
        &pe::CERT_AUTH_FAILED,
    ]
    .into_iter()
    .any(is)
    {
        "auth_failed"
    } else if m.starts_with("no such database") {
        "no_such_database"
    } else if is(&pe::MAX_CLIENT_CONN) {
        "max_client_conn"
    } else if is(&pe::SERVER_SHUTTING_DOWN) {
        "shutting_down"
    } else if is(&pe::SSL_REQUIRED) {
        "tls_required"
    } else if m == "client_login_timeout" {
        "login_timeout"
    } else if is(&pe::QUERY_WAIT_TIMEOUT) {
        "query_wait_timeout"
    } else if m.starts_with("TLS handshake failed") || m.starts_with("direct TLS") {
        "tls_handshake"
    } else if m == "client unexpected eof" {
        "client_gone"
    } else if m.contains("server login") || m.contains("connect failed") || m.contains("server") {
        "server_login_failed"
    } else {
        "protocol"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable() {
        assert_eq!(
            login_failure_reason(&pe::PASSWORD_AUTH_FAILED),
            "auth_failed"
        );
        assert_eq!(
            login_failure_reason(&pe::no_such_database("x")),
            "no_such_database"
        );
        assert_eq!(
            login_failure_reason(&pe::MAX_CLIENT_CONN),
            "max_client_conn"
        );
        assert_eq!(login_failure_reason(&pe::SSL_REQUIRED), "tls_required");
        assert_eq!(
            login_failure_reason(&PoolerError::fatal_text("client_login_timeout".into())),
            "login_timeout"
        );
    }
}
