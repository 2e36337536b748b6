//! X.509 v1 certificates, as `openssl x509 -req -CA ca.crt ...` makes them without an
//! extensions file (most runbooks, PgBouncer's own test CA). rustls' certificate parser
//! (webpki) refuses anything but v3 (`UnsupportedCertVersion`), in three places: the key/cert
//! match check when loading our own certificate, the handshake-signature check of a peer's
//! certificate, and chain verification. The TLS connection itself stays with rustls; this file
//! only replaces the first two with x509-parser, which reads any version, and the signature
//! check with the same algorithms rustls would use, fed the certificate's public key.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, Error, PeerIncompatible, PeerMisbehaved, SignatureScheme};

/// Our own certificate chain and key, whatever the certificate's version. The key is checked
/// against the certificate here, as rustls would, but without webpki's parser.
pub fn certified_key(
    provider: &CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, String> {
    let end_entity = certs.first().ok_or("no certificate")?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("private key rejected: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .map_err(|e| format!("certificate unreadable: {e}"))?;
    if let Some(public) = signing_key.public_key() {
        if public.as_ref() != parsed.public_key().raw {
            return Err("private key does not match the certificate".into());
        }
    }
    Ok(Arc::new(CertifiedKey::new(certs, signing_key)))
}

/// Serves one fixed certificate (rustls' own single-cert resolver is built only through the
/// webpki check this file avoids).
#[derive(Debug)]
pub struct FixedCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Checks a TLS 1.2 (`tls13` false) or 1.3 handshake signature with the public key of `cert`,
/// any X.509 version, trying the algorithms rustls maps `dss.scheme` to.
pub fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<(), Error> {
    // TLS 1.3 forbids PKCS#1 v1.5 and SHA-1 signatures in the handshake (RFC 8446 4.2.3).
    if tls13
        && matches!(
            dss.scheme,
            SignatureScheme::RSA_PKCS1_SHA1
                | SignatureScheme::RSA_PKCS1_SHA256
                | SignatureScheme::RSA_PKCS1_SHA384
                | SignatureScheme::RSA_PKCS1_SHA512
                | SignatureScheme::ECDSA_SHA1_Legacy
        )
    {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = parsed.public_key();
    let alg_id = algorithm_identifier_content(spki.raw).ok_or(Error::InvalidCertificate(
        rustls::CertificateError::BadEncoding,
    ))?;
    let key = spki.subject_public_key.data.as_ref();
    let candidates = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, a)| *a)
        .ok_or(PeerIncompatible::NoSignatureSchemesInCommon)?;
    // TLS 1.3 names curve and hash exactly: only the first mapping applies (as rustls does).
    let candidates = if tls13 { &candidates[..1] } else { candidates };
    for alg in candidates {
        if alg.public_key_alg_id().as_ref() != alg_id {
            continue;
        }
        return alg
            .verify_signature(key, message, dss.signature())
            .map_err(|_| Error::InvalidCertificate(rustls::CertificateError::BadSignature));
    }
    Err(PeerIncompatible::NoSignatureSchemesInCommon.into())
}

/// The content octets of the AlgorithmIdentifier inside a DER SubjectPublicKeyInfo
/// (`SEQUENCE { SEQUENCE { oid, params }, BIT STRING }`): what rustls' algorithms name as
/// their `public_key_alg_id`.
fn algorithm_identifier_content(spki: &[u8]) -> Option<&[u8]> {
    let (outer, _) = der_sequence(spki)?;
    let (inner, _) = der_sequence(outer)?;
    Some(inner)
}

/// Splits a DER SEQUENCE at the start of `der` into (content, rest).
fn der_sequence(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_sequence_short_and_long_lengths() {
        assert_eq!(
            der_sequence(&[0x30, 2, 1, 2, 9]),
            Some((&[1u8, 2][..], &[9u8][..]))
        );
        let mut long = vec![0x30, 0x81, 200];
        long.extend(std::iter::repeat_n(7u8, 200));
        assert_eq!(der_sequence(&long).map(|(c, _)| c.len()), Some(200));
        assert_eq!(der_sequence(&[0x31, 0]), None);
        assert_eq!(der_sequence(&[0x30, 5, 1]), None);
    }
}
