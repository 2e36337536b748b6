//! A throw-away certificate authority for TLS tests: server certificates for
//! `localhost`/127.0.0.1 and client certificates by CN, optionally valid only for a given
//! window (a certificate that expires while krbouncer runs), with their files in a temp dir.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(cn: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write CA");
        Pki {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A server certificate for localhost and 127.0.0.1, valid for a year; (`.crt`, `.key`).
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        self.server_valid_for(name, Duration::from_secs(365 * 24 * 3600))
    }

    /// A server certificate valid from a minute ago until `valid` from now.
    pub fn server_valid_for(&self, name: &str, valid: Duration) -> (PathBuf, PathBuf) {
        self.issue_valid_for(name, "localhost", true, valid)
    }

    /// Issues a certificate valid for a year: a server one for localhost and 127.0.0.1, or a
    /// client one for `cn`; writes `<name>.crt` and `<name>.key`.
    pub fn issue(&self, name: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        self.issue_valid_for(name, cn, server, Duration::from_secs(365 * 24 * 3600))
    }

    fn issue_valid_for(
        &self,
        name: &str,
        cn: &str,
        server: bool,
        valid: Duration,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().expect("dns name")),
                SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + valid;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (crt, keyf) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write cert");
        std::fs::write(&keyf, key.serialize_pem()).expect("write key");
        (crt, keyf)
    }
}
