//! The enumerated setting values (PgBouncer's `CfLookup` tables plus krbouncer's own), parsed
//! case-insensitively and shown with their canonical spelling.

use std::fmt;

/// A setting whose value is one word out of a fixed list.
pub(crate) trait Lookup: Sized + Copy + Default + 'static {
    /// Canonical spellings, in PgBouncer's table order.
    const NAMES: &'static [(&'static str, Self)];

    /// Case-insensitive parse, as `cf_set_lookup` does.
    fn parse(value: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map(|&(_, v)| v)
    }

    fn allowed() -> String {
        Self::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join("|")
    }
}

macro_rules! lookup_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl Lookup for $name {
            const NAMES: &'static [(&'static str, Self)] = &[$(($text, $name::$variant)),+];
        }

        impl $name {
            /// The canonical spelling (what SHOW CONFIG prints).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = super::values::ValueError;
            fn from_str(s: &str) -> Result<Self, super::values::ValueError> {
                <$name as Lookup>::parse(s).ok_or_else(|| super::values::ValueError::NotOneOf {
                    allowed: <$name as Lookup>::allowed(),
                })
            }
        }
    };
}

lookup_enum! {
    /// `auth_type`. `ldap` and `pam` exist only in PgBouncer builds with those libraries.
    AuthType {
        Any = "any",
        Trust = "trust",
        Plain = "plain",
        #[default]
        Md5 = "md5",
        Cert = "cert",
        Hba = "hba",
        Ldap = "ldap",
        Pam = "pam",
        ScramSha256 = "scram-sha-256",
    }
}

lookup_enum! {
    /// `pool_mode`, global or per database/user.
    PoolMode {
        #[default]
        Session = "session",
        Transaction = "transaction",
        Statement = "statement",
    }
}

lookup_enum! {
    /// `client_tls_sslmode` / `server_tls_sslmode` (libpq names). The default here is the
    /// client-side one; `server_tls_sslmode` defaults to `prefer` through the settings table.
    SslMode {
        #[default]
        Disable = "disable",
        Allow = "allow",
        Prefer = "prefer",
        Require = "require",
        VerifyCa = "verify-ca",
        VerifyFull = "verify-full",
    }
}

lookup_enum! {
    /// `load_balance_hosts` in `[databases]`.
    LoadBalanceHosts {
        Disable = "disable",
        #[default]
        RoundRobin = "round-robin",
    }
}

lookup_enum! {
    /// krbouncer (and Astronomer's fork): whether to answer a server's GSSAPI auth request.
    /// `require` additionally refuses any non-GSS server authentication.
    GssAuthNegotiate {
        #[default]
        Disable = "disable",
        Allow = "allow",
        Require = "require",
    }
}

lookup_enum! {
    /// krbouncer: GSS transport encryption towards the server (libpq `gssencmode`).
    GssEncMode {
        #[default]
        Disable = "disable",
        Prefer = "prefer",
        Require = "require",
    }
}

lookup_enum! {
    /// krbouncer: log line format.
    LogFormat {
        #[default]
        Text = "text",
        Json = "json",
    }
}

impl AuthType {
    /// Whether PgBouncer reads `auth_file` for this auth type (`requires_auth_file`: every type
    /// from `trust` on, except `pam`).
    pub fn uses_auth_file(self) -> bool {
        !matches!(self, AuthType::Any | AuthType::Pam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_canonical() {
        assert_eq!(
            <AuthType as Lookup>::parse("SCRAM-SHA-256"),
            Some(AuthType::ScramSha256)
        );
        assert_eq!(AuthType::ScramSha256.to_string(), "scram-sha-256");
        assert_eq!("Transaction".parse::<PoolMode>(), Ok(PoolMode::Transaction));
        assert_eq!(
            <SslMode as Lookup>::parse("verify-full"),
            Some(SslMode::VerifyFull)
        );
        assert!("crypt".parse::<AuthType>().is_err());
        assert_eq!(AuthType::default(), AuthType::Md5);
        assert_eq!(PoolMode::default(), PoolMode::Session);
        assert_eq!(LoadBalanceHosts::default(), LoadBalanceHosts::RoundRobin);
        assert!(
            "maybe"
                .parse::<GssAuthNegotiate>()
                .unwrap_err()
                .to_string()
                .contains("disable|allow|require")
        );
    }
}
