//! The upstream TLS settings (`server_tls_*`) picked out of the config for the connector.

use std::path::PathBuf;

use crate::config::Settings;
pub use crate::net::server_tls::ServerTlsSettings;

fn path(p: &str) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

pub fn from_config(s: &Settings) -> ServerTlsSettings {
    ServerTlsSettings {
        sslmode: s.server_tls_sslmode,
        ca_file: path(&s.server_tls_ca_file),
        cert_file: path(&s.server_tls_cert_file),
        key_file: path(&s.server_tls_key_file),
        protocols: s.server_tls_protocols.clone(),
        ciphers: s.server_tls_ciphers.clone(),
    }
}
