//! PgBouncer's `*_tls_protocols` words (`secure`, `default`, `all`, `legacy`, `tlsv1.x`), read
//! once for both sides; each side decides what to do with the versions rustls lacks.

use rustls::SupportedProtocolVersion;

/// What a `*_tls_protocols` value asks for.
#[derive(Debug)]
pub struct ProtocolSpec {
    /// The versions rustls can give (1.3 first); empty if only 1.0/1.1 were named.
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// `tlsv1`, `tlsv1.0`, `tlsv1.1` words as written (rustls implements none of them).
    pub legacy_named: Vec<String>,
    /// `all` / `legacy`: PgBouncer would add 1.0 and 1.1 here.
    pub widened: bool,
}

/// A word that is not one of PgBouncer's `*_tls_protocols` keywords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}")]
pub struct UnknownProtocol(pub String);

/// Parses the value; an unknown word is an error naming it. Empty means `secure`.
pub fn parse(spec: &str) -> Result<ProtocolSpec, UnknownProtocol> {
    let (mut v12, mut v13) = (false, false);
    let mut legacy_named = Vec::new();
    let mut widened = false;
    for word in spec
        .split([',', ':', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_lowercase().as_str() {
            "secure" | "default" => (v12, v13) = (true, true),
            "all" | "legacy" => {
                widened = true;
                (v12, v13) = (true, true)
            }
            "tlsv1.2" => v12 = true,
            "tlsv1.3" => v13 = true,
            "tlsv1" | "tlsv1.0" | "tlsv1.1" => legacy_named.push(word.to_string()),
            other => return Err(UnknownProtocol(other.to_string())),
        }
    }
    if spec.trim().is_empty() {
        (v12, v13) = (true, true);
    }
    let mut versions = Vec::new();
    if v13 {
        versions.push(&rustls::version::TLS13);
    }
    if v12 {
        versions.push(&rustls::version::TLS12);
    }
    Ok(ProtocolSpec {
        versions,
        legacy_named,
        widened,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_versions() {
        assert_eq!(parse("").unwrap().versions.len(), 2);
        assert_eq!(parse("TLSv1.3, tlsv1.2").unwrap().versions.len(), 2);
        let all = parse("all").unwrap();
        assert!(all.widened && all.versions.len() == 2);
        let old = parse("tlsv1.0,tlsv1.1").unwrap();
        assert!(old.versions.is_empty());
        assert_eq!(old.legacy_named, vec!["tlsv1.0", "tlsv1.1"]);
        assert!(parse("sslv3").is_err());
    }
}
