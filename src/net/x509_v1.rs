//! X.509 v1 certificates, as `openssl x509 -req -CA ca.crt ...` makes them without an
//! extensions file (most runbooks, PgBouncer's own test CA). rustls' certificate parser
//! (webpki) refuses anything but v3 (`UnsupportedCertVersion`), in three places: the key/cert
//! match check when loading our own certificate, the handshake-signature check of a peer's
//! certificate, and chain verification. The TLS connection itself stays with rustls; this file
//! only replaces the first two with x509-parser, which reads any version, and the signature
//! check with the same algorithms rustls would use, fed the certificate's public key.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, Error, PeerIncompatible, PeerMisbehaved,
    RootCertStore, SignatureScheme,
};

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

impl rustls::client::ResolvesClientCert for FixedCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
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
    let candidates = if tls13 {
        candidates.get(..1).unwrap_or_default()
    } else {
        candidates
    };
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
    der_element(der, 0x30)
}

/// Splits the DER element with `tag` at the start of `der` into (content, rest).
fn der_element(der: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    if tag != want {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Verifies that `end_entity` chains to one of `roots` through `intermediates` (signatures,
/// validity periods) and, when `name` is given, that it names that host (verify-full), for
/// certificates rustls refuses to parse (v1). Used only after rustls' own verifier failed with
/// `UnsupportedCertVersion`; rustls' signature algorithms do the cryptography.
pub fn verify_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &RootCertStore,
    algs: &WebPkiSupportedAlgorithms,
    name: Option<&ServerName<'_>>,
) -> Result<(), Error> {
    let bad = Error::InvalidCertificate;
    let leaf = parse_cert(end_entity.as_ref())?;
    if let Some(name) = name {
        if !names_host(&leaf, name) {
            return Err(bad(CertificateError::NotValidForName));
        }
    }
    let chain: Vec<_> = intermediates
        .iter()
        .map(|c| parse_cert(c.as_ref()))
        .collect::<Result<_, _>>()?;
    let mut current = &leaf;
    // a bound on the chain length, as any verifier has
    for _ in 0..8 {
        if !current.validity().is_valid() {
            return Err(bad(CertificateError::Expired));
        }
        let (signed, sig_alg, signature) =
            signed_parts(current.as_raw()).ok_or(bad(CertificateError::BadEncoding))?;
        let issuer = current.issuer().as_raw();
        for anchor in roots.roots.iter() {
            if same_name(issuer, anchor.subject.as_ref())
                && verify_signed(
                    signed,
                    sig_alg,
                    signature,
                    anchor.subject_public_key_info.as_ref(),
                    algs,
                )
            {
                return Ok(());
            }
        }
        let next = chain.iter().find(|c| {
            same_name(issuer, c.subject().as_raw())
                && verify_signed(signed, sig_alg, signature, c.public_key().raw, algs)
        });
        match next {
            Some(c) => current = c,
            None => return Err(bad(CertificateError::UnknownIssuer)),
        }
    }
    Err(bad(CertificateError::UnknownIssuer))
}

/// A server verifier (verify-ca / verify-full) that hands v1 certificates, which rustls' own
/// verifier refuses, to [`verify_chain`] and [`verify_signature`]; everything else is rustls'.
#[derive(Debug)]
pub struct V1Fallback {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub roots: Arc<RootCertStore>,
    pub algs: WebPkiSupportedAlgorithms,
    /// verify-full: the certificate must name the host.
    pub check_name: bool,
}

impl ServerCertVerifier for V1Fallback {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if is_unsupported_version(&e) => {
                let name = self.check_name.then_some(server_name);
                verify_chain(end_entity, intermediates, &self.roots, &self.algs, name)
                    .map(|()| ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let rustls = self.inner.verify_tls12_signature(message, cert, dss);
        or_v1_signature(rustls, message, cert, dss, &self.algs, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let rustls = self.inner.verify_tls13_signature(message, cert, dss);
        or_v1_signature(rustls, message, cert, dss, &self.algs, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client-certificate counterpart of [`V1Fallback`] (`client_tls_ca_file`).
#[derive(Debug)]
pub struct V1ClientFallback {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub roots: Arc<RootCertStore>,
    pub algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for V1ClientFallback {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if is_unsupported_version(&e) => {
                verify_chain(end_entity, intermediates, &self.roots, &self.algs, None)
                    .map(|()| ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let rustls = self.inner.verify_tls12_signature(message, cert, dss);
        or_v1_signature(rustls, message, cert, dss, &self.algs, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let rustls = self.inner.verify_tls13_signature(message, cert, dss);
        or_v1_signature(rustls, message, cert, dss, &self.algs, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// rustls' handshake-signature verdict, or, when it failed (a v1 certificate), ours.
pub fn or_v1_signature(
    rustls: Result<HandshakeSignatureValid, Error>,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, Error> {
    rustls.or_else(|e| {
        verify_signature(message, cert, dss, algs, tls13)
            .map(|()| HandshakeSignatureValid::assertion())
            .map_err(|_| e)
    })
}

fn parse_cert(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// Whether rustls refused a certificate for its X.509 version (then `verify_chain` applies).
pub fn is_unsupported_version(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(CertificateError::Other(o))
        if format!("{o:?}").contains("UnsupportedCertVersion"))
}

/// Host name check as libpq does it: subjectAltName DNS / IP entries when present, else the
/// subject CN; a leading `*.` matches one label.
fn names_host(cert: &x509_parser::certificate::X509Certificate<'_>, name: &ServerName<'_>) -> bool {
    use x509_parser::extensions::GeneralName;
    let host = match name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => return false,
    };
    let matches = |pattern: &str| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(rest) => host
                .split_once('.')
                .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
            None => pattern == host,
        }
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        return san.value.general_names.iter().any(|g| match g {
            GeneralName::DNSName(d) => matches(d),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .is_ok_and(|a| std::net::IpAddr::from(a).to_string() == host),
                16 => <[u8; 16]>::try_from(*b)
                    .is_ok_and(|a| std::net::IpAddr::from(a).to_string() == host),
                _ => false,
            },
            _ => false,
        });
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(matches)
}

/// Names compared as DER; a trust anchor keeps only the content octets of its Name.
fn same_name(full: &[u8], other: &[u8]) -> bool {
    full == other || der_sequence(full).is_some_and(|(content, _)| content == other)
}

/// (tbsCertificate DER, signatureAlgorithm content, signature bits) of a DER certificate.
fn signed_parts(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (content, _) = der_sequence(cert)?;
    let (tbs_content, rest) = der_sequence(content)?;
    // the tbsCertificate element is what der_sequence consumed before `rest`
    let tbs = content.get(..content.len() - rest.len())?;
    debug_assert!(tbs.len() > tbs_content.len());
    let (alg, rest) = der_sequence(rest)?;
    let bits = der_bit_string(rest)?;
    Some((tbs, alg, bits))
}

/// Checks `signature` over `signed` with the key `spki` (a SubjectPublicKeyInfo, whole or, as
/// trust anchors keep it, its content octets).
fn verify_signed(
    signed: &[u8],
    sig_alg: &[u8],
    signature: &[u8],
    spki: &[u8],
    algs: &WebPkiSupportedAlgorithms,
) -> bool {
    let Some((key_alg, key)) = spki_parts(spki) else {
        return false;
    };
    algs.all.iter().any(|alg| {
        alg.signature_alg_id().as_ref() == sig_alg
            && alg.public_key_alg_id().as_ref() == key_alg
            && alg.verify_signature(key, signed, signature).is_ok()
    })
}

/// (AlgorithmIdentifier content, key bits) of a SubjectPublicKeyInfo, whole or content only.
fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let content = match der_sequence(spki) {
        Some((content, rest)) if rest.is_empty() && content.first() == Some(&0x30) => content,
        _ => spki,
    };
    let (alg, rest) = der_sequence(content)?;
    Some((alg, der_bit_string(rest)?))
}

/// The bits of a DER BIT STRING with no unused bits at the start of `der`.
fn der_bit_string(der: &[u8]) -> Option<&[u8]> {
    let (content, _) = der_element(der, 0x03)?;
    match content.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
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
