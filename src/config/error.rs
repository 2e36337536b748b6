//! Configuration errors: what went wrong (`ConfigErrorKind`, PgBouncer's wording) and where
//! (`file:line`), rendered as `pgbouncer.ini:12: unknown parameter: foo_bar`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::values::ValueError;

/// A place in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line number; 0 when the error concerns the whole file.
    pub line: usize,
}

impl Location {
    pub fn new(file: &Path, line: usize) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// What went wrong. Texts follow PgBouncer's log messages so runbooks keep matching.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    #[error("could not load file \"{path}\": {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("syntax error in configuration")]
    Syntax,
    #[error("include nesting level too deep")]
    IncludeTooDeep,
    #[error("invalid section \"{0}\" in configuration")]
    UnknownSection(String),
    #[error("value without section: {0}")]
    ValueWithoutSection(String),
    #[error("main section missing from config file")]
    MissingMainSection,
    #[error("unknown parameter: {0}")]
    UnknownParameter(String),
    #[error("invalid value \"{value}\" for parameter {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        #[source]
        reason: ValueError,
    },
    #[error("syntax error in connection string")]
    ConnstrSyntax,
    #[error("syntax error in user settings")]
    UserSettingsSyntax,
    #[error("unrecognized connection parameter: {0}")]
    UnknownConnParam(String),
    #[error("unrecognized user parameter: {0}")]
    UnknownUserParam(String),
    #[error("invalid port: {0}")]
    InvalidPort(String),
    #[error("invalid pool mode: {0}")]
    InvalidPoolMode(String),
    /// Any other bad value in a `[databases]`/`[users]`/`[peers]` entry.
    #[error("invalid {key}: {value}")]
    InvalidConnValue { key: String, value: String },
    #[error("database name \"{0}\" is reserved")]
    ReservedDatabase(String),
    #[error("too long db name: {0}")]
    DatabaseNameTooLong(String),
    #[error("ids of peers must be a number larger than 0 and at most 65536")]
    InvalidPeerId(String),
    #[error("host was not provided for peer {0}")]
    PeerWithoutHost(u32),
    /// A startup check (`Config::validate`) failed.
    #[error("{0}")]
    Invalid(String),
}

/// A configuration error, with the file and line when it comes from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error with no file position (runtime `SET`, validation).
    pub(crate) fn bare(kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            location: None,
            kind,
        }
    }

    pub fn at(file: &Path, line: usize, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            location: Some(Location::new(file, line)),
            kind,
        }
    }

    /// Adds a position to an error that has none yet.
    pub fn located(mut self, file: &Path, line: usize) -> ConfigError {
        if self.location.is_none() {
            self.location = Some(Location::new(file, line));
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> ConfigError {
        ConfigError::bare(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_key() {
        let e = ConfigError::at(
            Path::new("pgbouncer.ini"),
            12,
            ConfigErrorKind::UnknownParameter("foo_bar".into()),
        );
        assert_eq!(
            e.to_string(),
            "pgbouncer.ini:12: unknown parameter: foo_bar"
        );
        let bare = ConfigError::bare(ConfigErrorKind::UnknownParameter("x".into()));
        assert_eq!(bare.to_string(), "unknown parameter: x");
        assert_eq!(
            bare.located(Path::new("a.ini"), 3).to_string(),
            "a.ini:3: unknown parameter: x"
        );
    }
}
