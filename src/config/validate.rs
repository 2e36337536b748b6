//! Startup checks on a loaded `Config`: hard errors for settings that would stop PgBouncer
//! (or krbouncer) from starting, warnings for settings that load but cannot work as written.
//! Run before binding any port (`--check` can call it too).

use super::Config;
use super::enums::{AuthType, SslMode};
use super::error::{ConfigError, ConfigErrorKind};

impl Config {
    /// Returns the warnings to log, or the first fatal problem.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let s = &self.settings;
        let fail = |msg: String| {
            Err(ConfigError::at(
                &self.path,
                0,
                ConfigErrorKind::Invalid(msg),
            ))
        };
        if !(1..=65535).contains(&s.listen_port) {
            return fail(format!("listen_port {} is not a valid port", s.listen_port));
        }
        if s.listen_addr.trim().is_empty() && s.unix_socket_dir.is_empty() {
            return fail(
                "nowhere to listen: listen_addr and unix_socket_dir are both empty".into(),
            );
        }
        if s.client_tls_sslmode != SslMode::Disable {
            for (name, value) in [
                ("client_tls_key_file", &s.client_tls_key_file),
                ("client_tls_cert_file", &s.client_tls_cert_file),
            ] {
                if value.is_empty() {
                    return fail(format!(
                        "TLS setup failed: {name} is not set but client_tls_sslmode is {}",
                        s.client_tls_sslmode
                    ));
                }
            }
        }
        if !s.metrics_addr.is_empty() && !looks_like_host_port(&s.metrics_addr) {
            return fail(format!(
                "metrics_addr \"{}\" is not host:port",
                s.metrics_addr
            ));
        }

        let mut warnings = Vec::new();
        if s.pkt_buf < 512 {
            warnings.push(format!("pkt_buf {} is very small", s.pkt_buf));
        }
        if !(0..=16383).contains(&s.peer_id) {
            warnings.push(format!("peer_id {} is outside 0..16383", s.peer_id));
        }
        if s.auth_type == AuthType::Hba && s.auth_hba_file.is_empty() {
            warnings.push(
                "auth_type=hba but auth_hba_file is not set: every login will be rejected".into(),
            );
        }
        if s.auth_type.uses_auth_file() && s.auth_file.is_none() && s.auth_user.is_none() {
            warnings.push(format!(
                "auth_type={} but neither auth_file nor auth_user is set",
                s.auth_type
            ));
        }
        if s.auth_type == AuthType::Any {
            for db in self
                .databases
                .values()
                .chain(self.fallback_database.as_ref())
            {
                if db.user.is_none() {
                    warnings.push(format!(
                        "auth_type=any needs a forced user= on database \"{}\" (clients get \"bouncer config error\")",
                        db.name
                    ));
                }
            }
        }
        warnings.extend(
            self.auth_file
                .warnings
                .iter()
                .map(|w| format!("auth_file: {w}")),
        );
        warnings.extend(self.hba.warnings.iter().cloned());
        warnings.extend(super::secret_files::warnings(s.auth_file.as_deref(), |v| {
            std::env::var(v).ok()
        }));
        for name in s.not_yet_implemented() {
            warnings.push(format!(
                "setting {name} is accepted but not implemented yet; its value is ignored"
            ));
        }
        Ok(warnings)
    }
}

fn looks_like_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}
