//! Which Kerberos service principal an upstream login targets: a configured full principal
//! (`server_krb_spn`, PgBouncer-fork compatible) or libpq's host-based `<srvname>@<host>`.

use std::fmt;
use std::sync::Arc;

use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};

use super::error::GssError;

/// How the target name was formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpnSource {
    /// `server_krb_spn` set: the value is a complete krb5 principal, used as written
    /// (realm defaults to krb5.conf's `default_realm` when omitted).
    Principal,
    /// `server_krb_spn` empty: host-based service `<srvname>@<host>` as libpq builds it;
    /// krb5.conf (`dns_canonicalize_hostname`, `rdns`, `[domain_realm]`) decides the principal.
    HostBased,
}

/// An imported GSSAPI target name. Cheap to clone (the imported name is shared).
#[derive(Clone)]
pub struct GssTarget {
    name: Arc<Name>,
    source: SpnSource,
    /// What we log: the canonical principal for `Principal`, `srvname@host` for `HostBased`.
    display: Arc<str>,
}

impl fmt::Debug for GssTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GssTarget")
            .field("source", &self.source)
            .field("name", &self.display)
            .finish()
    }
}

impl fmt::Display for GssTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl GssTarget {
    pub fn source(&self) -> SpnSource {
        self.source
    }

    /// A fresh copy of the imported name for one security context (contexts own their name).
    pub(crate) fn name_for_context(&self) -> Result<Name, GssError> {
        self.name
            .duplicate()
            .map_err(|e| GssError::from_gss(&self.display, e))
    }
}

/// Build the target for a server login.
///
/// * `server_krb_spn` non-empty: a full principal such as `postgres/db.example.com@EXAMPLE.COM`,
///   imported as `GSS_NT_KRB5_PRINCIPAL` (no hostname canonicalisation; the PgBouncer fork
///   imports it as a user name, which MIT parses the same way). A libpq-style `postgres@host`
///   here would mean principal `postgres` in realm `host`: write `postgres/host@REALM`.
/// * empty: `<srvname>@<host>` as `GSS_NT_HOSTBASED_SERVICE`, like libpq (`srvname` is
///   normally `postgres`). `host` must be the name the server is known by, not a unix socket
///   directory. Note: depending on krb5.conf, MIT may consult DNS for host-based names when the
///   context is first stepped (inside `spawn_blocking`), never here.
pub fn target_name(server_krb_spn: &str, srvname: &str, host: &str) -> Result<GssTarget, GssError> {
    let spn = server_krb_spn.trim();
    if !spn.is_empty() {
        let name = Name::new(spn.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| invalid(spn, format!("not a Kerberos principal: {e}")))?;
        // Canonicalising a krb5 principal name is local (krb5_parse_name): adds the default realm.
        let display = name
            .canonicalize(Some(GSS_MECH_KRB5))
            .map(|c| c.to_string())
            .unwrap_or_else(|_| spn.to_string());
        return Ok(GssTarget {
            name: Arc::new(name),
            source: SpnSource::Principal,
            display: display.into(),
        });
    }
    let srvname = srvname.trim();
    let host = host.trim();
    if srvname.is_empty() || srvname.contains(['@', '/']) {
        return Err(invalid(
            srvname,
            "service name must be a bare word such as \"postgres\"".into(),
        ));
    }
    if host.is_empty() {
        return Err(invalid(
            host,
            "no host to build a host-based service name from".into(),
        ));
    }
    if host.starts_with('/') || host.starts_with('@') {
        return Err(invalid(
            host,
            "GSSAPI needs a TCP host name, not a unix socket path (set server_krb_spn or use host=<name>)".into(),
        ));
    }
    let spec = format!("{srvname}@{host}");
    let name = Name::new(spec.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
        .map_err(|e| invalid(&spec, format!("not a host-based service name: {e}")))?;
    Ok(GssTarget {
        name: Arc::new(name),
        source: SpnSource::HostBased,
        display: spec.into(),
    })
}

fn invalid(spec: &str, reason: String) -> GssError {
    GssError::InvalidTarget {
        spec: spec.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_spn_is_a_full_principal() {
        let t = target_name("postgres/db.example.com@EXAMPLE.COM", "postgres", "ignored")
            .expect("valid principal");
        assert_eq!(t.source(), SpnSource::Principal);
        assert_eq!(t.to_string(), "postgres/db.example.com@EXAMPLE.COM");
    }

    #[test]
    fn empty_spn_builds_host_based_name() {
        let t = target_name("", "postgres", "db.example.com").expect("valid host");
        assert_eq!(t.source(), SpnSource::HostBased);
        assert_eq!(t.to_string(), "postgres@db.example.com");
    }

    #[test]
    fn unix_socket_host_is_rejected() {
        let e = target_name("", "postgres", "/var/run/postgresql").expect_err("socket path");
        assert_eq!(e.reason_label(), "invalid_target");
        assert!(e.to_string().contains("unix socket"), "{e}");
        assert!(target_name("", "postgres", "").is_err());
        assert!(target_name("", "post/gres", "h").is_err());
    }
}
