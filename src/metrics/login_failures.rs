//! Client login failures by reason: a registered counter, bumped where a login is refused.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::protocol::pooler_errors::PoolerError;

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

/// A short, stable label for why a login was refused: the error's kind.
pub fn login_failure_reason(e: &PoolerError) -> &'static str {
    e.kind.label()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::pooler_errors as pe;

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
            login_failure_reason(&pe::CLIENT_UNEXPECTED_EOF),
            "client_gone"
        );
        // a server's own text never decides the label
        let server = pe::server_login_failed("28P01", "password authentication failed").unwrap();
        assert_eq!(login_failure_reason(&server), "server_login_failed");
        assert_eq!(
            login_failure_reason(&pe::bad_packet_header(b"server")),
            "protocol"
        );
        assert_eq!(login_failure_reason(&pe::LOGIN_TIMEOUT), "login_timeout");
    }
}
