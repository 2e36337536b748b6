//! Configuration: pgbouncer.ini (with `%include`) read into a typed `Config` — `[pgbouncer]`
//! settings, `[databases]`, `[users]`, `[peers]` — plus the auth_file users, startup
//! validation and reload. PgBouncer 1.25 compatible; see `settings.rs` for the table.

pub mod auth_file;
pub mod connstr;
pub mod enums;
pub mod error;
pub mod hba;
mod hba_tokens;
pub mod ident;
pub mod ini;
mod resolve;
mod secret_files;
pub mod settings;
mod settings_api;
pub mod users_section;
mod validate;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use auth_file::{AuthFile, FileFingerprint};
pub use connstr::DatabaseDef;
pub use enums::{
    AuthType, GssAuthNegotiate, GssEncMode, LoadBalanceHosts, LogFormat, PoolMode, SslMode,
};
pub use error::{ConfigError, ConfigErrorKind, Location};
pub use settings::{SETTINGS, SettingDef, Settings};
pub use settings_api::{ConfigRow, NOT_YET_IMPLEMENTED, ServerCheck, SetOutcome};
pub use users_section::{PeerDef, UserDef};

use ini::IniItem;

/// A loaded configuration: immutable once built; reload builds a new one.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file as given on the command line.
    pub path: PathBuf,
    pub settings: Settings,
    /// `[databases]` except `*`, by client-side name.
    pub databases: BTreeMap<String, DatabaseDef>,
    /// The `*` entry (auto-database template), if any.
    pub fallback_database: Option<DatabaseDef>,
    pub users: BTreeMap<String, UserDef>,
    pub peers: BTreeMap<u32, PeerDef>,
    /// Empty when `auth_file` is unset or the auth type does not use it (`any`, `pam`).
    pub auth_file: AuthFile,
    /// `auth_hba_file` (with `auth_ident_file`'s maps), read when `auth_type = hba`; re-read
    /// at every reload, as PgBouncer does.
    pub hba: std::sync::Arc<hba::HbaRules>,
    /// `[pgbouncer]` keys the files set explicitly (NULL-default settings such as `verbose`
    /// keep their running value on reload unless listed here).
    pub explicit_settings: BTreeSet<String>,
    /// The directory relative paths were resolved against (the process CWD at load).
    pub base_dir: PathBuf,
}

impl Config {
    /// Loads `path` and the files it names, resolving relative paths against the process CWD
    /// as PgBouncer does.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let cwd = std::env::current_dir().map_err(|e| {
            ConfigError::bare(ConfigErrorKind::Io {
                path: PathBuf::from("."),
                reason: e.to_string(),
            })
        })?;
        Config::load_with_base(path, &cwd)
    }

    /// `load` with an explicit directory for relative paths (tests; never changes the CWD).
    pub fn load_with_base(path: &Path, cwd: &Path) -> Result<Config, ConfigError> {
        let items = ini::read_ini(path, cwd)?;
        let mut config = Config::from_items(path, cwd, items)?;
        if config.settings.auth_type.uses_auth_file()
            && let Some(file) = config.settings.auth_file.clone()
        {
            config.auth_file = AuthFile::load_with_base(Path::new(&file), cwd);
        }
        config.load_hba();
        Ok(config)
    }

    /// Builds the typed config from ini items (no auth_file reading).
    /// Builds a config from parsed ini items (`ini::parse_ini_text`); no file is read here
    /// except what later loading steps name (the fuzz target uses it on arbitrary text).
    pub fn from_items(path: &Path, cwd: &Path, items: Vec<IniItem>) -> Result<Config, ConfigError> {
        let settings = Settings {
            conffile: Some(path.display().to_string()),
            ..Settings::default()
        };
        let mut config = Config {
            path: path.to_path_buf(),
            settings,
            databases: BTreeMap::new(),
            fallback_database: None,
            users: BTreeMap::new(),
            peers: BTreeMap::new(),
            auth_file: AuthFile::default(),
            hba: Default::default(),
            explicit_settings: BTreeSet::new(),
            base_dir: cwd.to_path_buf(),
        };
        let mut got_main_section = false;
        for item in items {
            let entry = match item {
                IniItem::Section(name, _) => {
                    if name == "pgbouncer" {
                        // PgBouncer re-applies defaults whenever a [pgbouncer] section starts.
                        config.settings.reset_to_defaults();
                        got_main_section = true;
                    }
                    continue;
                }
                IniItem::Entry(entry) => entry,
            };
            let at = |kind: ConfigErrorKind| ConfigError {
                location: Some(entry.location.clone()),
                kind,
            };
            let (key, value) = (entry.key.as_str(), entry.value.as_str());
            match entry.section.as_str() {
                "pgbouncer" => {
                    config.settings.set(key, value).map_err(|e| at(e.kind))?;
                    config.explicit_settings.insert(key.to_string());
                }
                "databases" => {
                    let db = DatabaseDef::parse(key, value).map_err(at)?;
                    if key == "*" {
                        config.fallback_database = Some(db);
                    } else {
                        config.databases.insert(key.to_string(), db);
                    }
                }
                "users" => {
                    config
                        .users
                        .insert(key.to_string(), UserDef::parse(key, value).map_err(at)?);
                }
                "peers" => {
                    let peer = PeerDef::parse(key, value).map_err(at)?;
                    config.peers.insert(peer.peer_id, peer);
                }
                other => return Err(at(ConfigErrorKind::UnknownSection(other.to_string()))),
            }
        }
        if !got_main_section {
            return Err(ConfigError::at(
                path,
                0,
                ConfigErrorKind::MissingMainSection,
            ));
        }
        Ok(config)
    }

    /// Loads the configuration again for RELOAD/SIGHUP: from `conffile` (which a SET may have
    /// changed), keeping restart-only settings and unset NULL-default settings at their
    /// running values, and re-reading auth_file only if its `stat()` changed. On error the
    /// caller keeps `self` (PgBouncer logs "config file loading failed").
    pub fn reload(&self) -> Result<Config, ConfigError> {
        let path = self
            .settings
            .conffile
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.path.clone());
        let items = ini::read_ini(&path, &self.base_dir)?;
        let mut next = Config::from_items(&path, &self.base_dir, items)?;
        next.path = self.path.clone();
        next.settings.carry_over_restart_only(&self.settings);
        // `verbose` has a NULL default in PgBouncer: a reload that does not set it keeps the
        // running level (e.g. from `-v`).
        if !next.explicit_settings.contains("verbose") {
            next.settings.verbose = self.settings.verbose;
        }
        if next.settings.auth_type.uses_auth_file()
            && let Some(file) = next.settings.auth_file.clone()
        {
            let resolved = self.base_dir.join(&file);
            let unchanged = self.auth_file.path.as_deref() == Some(resolved.as_path())
                && !self.auth_file.changed_on_disk()
                && self.auth_file.fingerprint.is_some();
            next.auth_file = if unchanged {
                self.auth_file.clone()
            } else {
                AuthFile::load_with_base(Path::new(&file), &self.base_dir)
            };
        }
        next.load_hba();
        Ok(next)
    }

    /// Reads `auth_hba_file` and `auth_ident_file` (relative to the base directory) when
    /// `auth_type = hba`; otherwise no rules are kept.
    fn load_hba(&mut self) {
        let s = &self.settings;
        if s.auth_type != AuthType::Hba || s.auth_hba_file.is_empty() {
            self.hba = Default::default();
            return;
        }
        let ident = match &s.auth_ident_file {
            Some(f) if !f.is_empty() => ident::IdentMaps::load(&self.base_dir.join(f)),
            _ => ident::IdentMaps::default(),
        };
        let mut rules = hba::HbaRules::load(&self.base_dir.join(&s.auth_hba_file), &ident);
        let mut warnings = ident.warnings;
        warnings.append(&mut rules.warnings);
        rules.warnings = warnings;
        self.hba = std::sync::Arc::new(rules);
    }
}
