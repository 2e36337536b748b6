//! The upstream TLS settings (`server_tls_*`) picked out of the config for the connector.

use crate::config::{Settings, SslMode};

pub struct ServerTlsSettings {
    pub sslmode: SslMode,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub protocols: String,
    pub ciphers: String,
}

pub fn from_config(s: &Settings) -> ServerTlsSettings {
    ServerTlsSettings {
        sslmode: s.server_tls_sslmode,
        ca_file: s.server_tls_ca_file.clone(),
        cert_file: s.server_tls_cert_file.clone(),
        key_file: s.server_tls_key_file.clone(),
        protocols: s.server_tls_protocols.clone(),
        ciphers: s.server_tls_ciphers.clone(),
    }
}
