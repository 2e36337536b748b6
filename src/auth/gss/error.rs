//! GSSAPI failure classification: turns libgssapi major/minor status codes into causes an
//! operator can act on (missing keytab, wrong SPN, clock skew, unreachable KDC, ...).

use std::fmt;
use std::time::Duration;

/// A GSSAPI status pair with its human text, captured when the error happened (the text comes
/// from `gss_display_status`, which is local and cheap).
#[derive(Debug, Clone)]
pub struct GssStatus {
    /// Raw major status (calling error | routine error | supplementary bits).
    pub major: u32,
    /// Raw minor (mechanism) status; for MIT krb5 a `krb5_error_code` cast to u32.
    pub minor: u32,
    /// "major text (minor text)", as libgssapi renders it.
    pub text: String,
}

impl fmt::Display for GssStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [major {:#x}, minor {}]",
            self.text.trim_end(),
            self.major,
            self.minor as i32
        )
    }
}

impl From<libgssapi::error::Error> for GssStatus {
    fn from(e: libgssapi::error::Error) -> Self {
        GssStatus {
            major: e.major.bits(),
            minor: e.minor,
            text: e.to_string(),
        }
    }
}

/// Why a GSSAPI login (or GSS encryption setup) towards a server failed.
///
/// `target` is the server principal we tried to reach, as shown by `GssTarget`'s Display.
#[derive(Debug, thiserror::Error)]
pub enum GssError {
    #[error(
        "no usable Kerberos credentials for logging in to {target} (give the pooler a client keytab with KRB5_CLIENT_KTNAME or a ticket cache with KRB5CCNAME): {status}"
    )]
    NoCredentials { target: String, status: GssStatus },
    #[error(
        "server principal {target} is not known to the KDC (check server_krb_spn or the host name): {status}"
    )]
    UnknownServerPrincipal { target: String, status: GssStatus },
    #[error(
        "clock skew too great between this host, the KDC or the server while logging in to {target}: {status}"
    )]
    ClockSkew { target: String, status: GssStatus },
    #[error(
        "Kerberos ticket expired while logging in to {target} (is the keytab/ticket cache being refreshed?): {status}"
    )]
    TicketExpired { target: String, status: GssStatus },
    #[error(
        "cannot reach a KDC while logging in to {target} (check krb5.conf / KRB5_CONFIG and the KDC): {status}"
    )]
    KdcUnreachable { target: String, status: GssStatus },
    #[error(
        "the KDC did not answer within {:.1} s (server_connect_timeout) while logging in to {target}",
        .deadline.as_secs_f64()
    )]
    Timeout { target: String, deadline: Duration },
    #[error(
        "GSSAPI context with {target} does not provide confidentiality and integrity (granted flags: {flags})"
    )]
    EncryptionNotGranted { target: String, flags: String },
    #[error("cannot build a Kerberos service name from {spec:?}: {reason}")]
    InvalidTarget { spec: String, reason: String },
    #[error("GSSAPI error while logging in to {target}: {status}")]
    Other { target: String, status: GssStatus },
    #[error("GSSAPI session with {target} is unusable: {reason}")]
    Internal { target: String, reason: String },
}

// MIT krb5 error codes (krb5.h / krb5_err.et); stable for decades.
const KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN: i32 = -1765328377;
const KRB5KRB_AP_ERR_TKT_EXPIRED: i32 = -1765328352;
const KRB5KRB_AP_ERR_SKEW: i32 = -1765328347;
const KRB5_CC_NOTFOUND: i32 = -1765328243;
const KRB5_KDCREP_SKEW: i32 = -1765328236;
const KRB5_REALM_UNKNOWN: i32 = -1765328230;
const KRB5_KDC_UNREACH: i32 = -1765328228;
const KRB5_KT_NOTFOUND: i32 = -1765328203;
const KRB5_FCC_NOFILE: i32 = -1765328189;
const KRB5_REALM_CANT_RESOLVE: i32 = -1765328164;

// GSS routine errors live in bits 16..24 of the major status (RFC 2744 §3.9.1).
const ROUTINE_NO_CRED: u32 = 7;
const ROUTINE_CREDENTIALS_EXPIRED: u32 = 11;
const ROUTINE_CONTEXT_EXPIRED: u32 = 12;

impl GssError {
    /// Classify a libgssapi failure for `target`. Minor (krb5) codes decide first because
    /// they are precise; the minor text is a fallback for other mechanisms/versions.
    pub(crate) fn from_gss(target: &str, e: libgssapi::error::Error) -> GssError {
        Self::classify(target.to_string(), GssStatus::from(e))
    }

    pub(crate) fn classify(target: String, status: GssStatus) -> GssError {
        let minor = status.minor as i32;
        let routine = (status.major >> 16) & 0xff;
        let text = status.text.to_ascii_lowercase();
        match minor {
            KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN => {
                return GssError::UnknownServerPrincipal { target, status };
            }
            KRB5KRB_AP_ERR_SKEW | KRB5_KDCREP_SKEW => {
                return GssError::ClockSkew { target, status };
            }
            KRB5KRB_AP_ERR_TKT_EXPIRED => return GssError::TicketExpired { target, status },
            KRB5_KDC_UNREACH | KRB5_REALM_UNKNOWN | KRB5_REALM_CANT_RESOLVE => {
                return GssError::KdcUnreachable { target, status };
            }
            KRB5_CC_NOTFOUND | KRB5_KT_NOTFOUND | KRB5_FCC_NOFILE => {
                return GssError::NoCredentials { target, status };
            }
            _ => {}
        }
        if text.contains("server not found in kerberos database") {
            GssError::UnknownServerPrincipal { target, status }
        } else if text.contains("clock skew") {
            GssError::ClockSkew { target, status }
        } else if text.contains("cannot contact any kdc") || text.contains("cannot find kdc") {
            GssError::KdcUnreachable { target, status }
        } else if text.contains("ticket expired")
            || routine == ROUTINE_CREDENTIALS_EXPIRED
            || routine == ROUTINE_CONTEXT_EXPIRED
        {
            GssError::TicketExpired { target, status }
        } else if routine == ROUTINE_NO_CRED {
            GssError::NoCredentials { target, status }
        } else {
            GssError::Other { target, status }
        }
    }

    /// Short, stable label for metrics (`reason="..."`).
    pub fn reason_label(&self) -> &'static str {
        match self {
            GssError::NoCredentials { .. } => "no_credentials",
            GssError::UnknownServerPrincipal { .. } => "unknown_server_principal",
            GssError::ClockSkew { .. } => "clock_skew",
            GssError::TicketExpired { .. } => "ticket_expired",
            GssError::KdcUnreachable { .. } => "kdc_unreachable",
            GssError::Timeout { .. } => "timeout",
            GssError::EncryptionNotGranted { .. } => "encryption_not_granted",
            GssError::InvalidTarget { .. } => "invalid_target",
            GssError::Other { .. } => "other",
            GssError::Internal { .. } => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(major: u32, minor: i32, text: &str) -> GssStatus {
        GssStatus {
            major,
            minor: minor as u32,
            text: text.into(),
        }
    }

    #[test]
    fn classifies_by_krb5_minor_code() {
        let t = || "postgres/db@R".to_string();
        let e = GssError::classify(t(), st(0xd0000, KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN, "x"));
        assert_eq!(e.reason_label(), "unknown_server_principal");
        let e = GssError::classify(t(), st(0xd0000, KRB5_KDC_UNREACH, "x"));
        assert_eq!(e.reason_label(), "kdc_unreachable");
        let e = GssError::classify(t(), st(0xd0000, KRB5KRB_AP_ERR_SKEW, "x"));
        assert_eq!(e.reason_label(), "clock_skew");
        let e = GssError::classify(t(), st(0xd0000, KRB5KRB_AP_ERR_TKT_EXPIRED, "x"));
        assert_eq!(e.reason_label(), "ticket_expired");
        let e = GssError::classify(t(), st(0x70000, KRB5_CC_NOTFOUND, "x"));
        assert_eq!(e.reason_label(), "no_credentials");
    }

    #[test]
    fn falls_back_to_major_code_and_text() {
        let e = GssError::classify("s".into(), st(0x70000, 5, "No credentials were supplied"));
        assert!(matches!(e, GssError::NoCredentials { .. }));
        let e = GssError::classify(
            "s".into(),
            st(
                0xd0000,
                5,
                "Unspecified (Cannot contact any KDC for requested realm)",
            ),
        );
        assert!(matches!(e, GssError::KdcUnreachable { .. }));
        let e = GssError::classify("s".into(), st(0xd0000, 5, "Unspecified GSS failure"));
        assert_eq!(e.reason_label(), "other");
    }

    #[test]
    fn display_names_target_and_status_text() {
        let e = GssError::classify(
            "postgres/nohost@TEST.LOCAL".into(),
            st(
                0xd0000,
                KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN,
                "Unspecified GSS failure. (Server not found in Kerberos database)",
            ),
        );
        let s = e.to_string();
        assert!(s.contains("postgres/nohost@TEST.LOCAL"), "{s}");
        assert!(s.contains("Server not found in Kerberos database"), "{s}");
    }
}
