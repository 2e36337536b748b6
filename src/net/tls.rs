//! Upstream TLS (placeholder until the rustls connector lands): no connector, so
//! `server_tls_sslmode = prefer` connects in plain text.

use tokio::net::TcpStream;

use crate::net::tls_settings::ServerTlsSettings;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsSetupError(String);

pub enum TlsOutcome {
    Encrypted(tokio_rustls::client::TlsStream<TcpStream>),
    Refused(TcpStream),
}

pub fn build_connector(_s: &ServerTlsSettings) -> Result<Option<tokio_rustls::TlsConnector>, TlsSetupError> {
    Ok(None)
}

pub async fn request_tls(
    stream: TcpStream,
    _connector: &tokio_rustls::TlsConnector,
    _server_name: &str,
) -> std::io::Result<TlsOutcome> {
    Ok(TlsOutcome::Refused(stream))
}
