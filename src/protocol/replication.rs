//! The StartupMessage's `replication` parameter (walsender connections), read the way
//! PgBouncer 1.23+ reads it: `database` is logical replication, a true boolean physical.

/// What kind of walsender connection a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replication {
    #[default]
    None,
    /// `replication=database`: logical replication (SQL allowed too).
    Logical,
    /// `replication=true|on|yes|1`: physical replication.
    Physical,
}

impl Replication {
    /// Reads a `replication` value. Anything that is neither `database` nor a boolean counts
    /// as no replication, as in PgBouncer (PostgreSQL itself refuses it at login).
    pub fn parse(value: &str) -> Replication {
        if value == "database" {
            return Replication::Logical;
        }
        match parse_bool(value) {
            Some(true) => Replication::Physical,
            Some(false) | None => Replication::None,
        }
    }

    pub fn is_replication(self) -> bool {
        self != Replication::None
    }

    /// The value sent to the server in its StartupMessage (PgBouncer's spelling).
    pub fn startup_value(self) -> Option<&'static str> {
        match self {
            Replication::None => None,
            Replication::Logical => Some("database"),
            Replication::Physical => Some("yes"),
        }
    }

    /// SHOW CLIENTS / SHOW SERVERS `replication` column.
    pub fn show_name(self) -> &'static str {
        match self {
            Replication::None => "none",
            Replication::Logical => "logical",
            Replication::Physical => "physical",
        }
    }
}

/// PostgreSQL's boolean spellings (`parse_bool`): on/off, true/false, yes/no, 1/0 and
/// unambiguous prefixes, case-insensitive.
fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || v == "on" || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_pgbouncer_reads_them() {
        assert_eq!(Replication::parse("database"), Replication::Logical);
        for v in ["true", "on", "yes", "1", "t", "Y", "TRUE"] {
            assert_eq!(Replication::parse(v), Replication::Physical, "{v}");
        }
        for v in ["false", "off", "no", "0", "o", "bogus", ""] {
            assert_eq!(Replication::parse(v), Replication::None, "{v}");
        }
    }
}
