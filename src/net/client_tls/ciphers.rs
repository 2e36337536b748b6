//! `client_tls_ciphers` / `client_tls13_ciphers` (OpenSSL cipher strings) mapped onto the
//! suites rustls offers. Names rustls has are kept; keywords and unknown names are reported so
//! startup can warn (PgBouncer passes the string to OpenSSL, which knows more names).

use rustls::SupportedCipherSuite;
use rustls::crypto::ring::cipher_suite as cs;

/// OpenSSL's name for each suite the ring provider implements.
const TABLE: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// PgBouncer's keywords for "the library's defaults".
pub fn is_default(spec: &str) -> bool {
    matches!(
        spec.trim().to_ascii_lowercase().as_str(),
        "" | "default" | "secure" | "fast" | "normal" | "all" | "legacy"
    )
}

/// The suites a spec selects, or `None` for "rustls' defaults". `ignored` collects the words
/// that name nothing rustls has.
pub fn select(
    spec: &str,
    tls13: bool,
    ignored: &mut Vec<String>,
) -> Option<Vec<SupportedCipherSuite>> {
    if is_default(spec) {
        return None;
    }
    let mut out = Vec::new();
    for word in spec
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        match TABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(word)) {
            Some((_, suite)) if is_tls13(*suite) == tls13 => out.push(*suite),
            _ => ignored.push(word.to_string()),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// OpenSSL's names of the TLS 1.3 suites rustls has.
pub fn tls13_names() -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|(_, s)| is_tls13(*s))
        .map(|(n, _)| *n)
        .collect()
}

fn is_tls13(s: SupportedCipherSuite) -> bool {
    matches!(s, SupportedCipherSuite::Tls13(_))
}

/// OpenSSL's name for a negotiated suite (what PgBouncer logs and shows).
pub fn openssl_name(s: SupportedCipherSuite) -> &'static str {
    TABLE
        .iter()
        .find(|(_, t)| t.suite() == s.suite())
        .map(|(n, _)| *n)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_names_map_and_keywords_are_reported() {
        let mut ignored = Vec::new();
        let got = select(
            "ECDHE-RSA-AES128-GCM-SHA256:HIGH:!aNULL",
            false,
            &mut ignored,
        )
        .expect("one suite");
        assert_eq!(got.len(), 1);
        assert_eq!(openssl_name(got[0]), "ECDHE-RSA-AES128-GCM-SHA256");
        assert_eq!(ignored, vec!["HIGH", "!aNULL"]);
        assert!(select("default", false, &mut ignored).is_none());
        let mut ignored = Vec::new();
        assert!(select("TLS_AES_128_GCM_SHA256", true, &mut ignored).is_some());
        assert!(ignored.is_empty());
    }
}
