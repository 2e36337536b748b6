//! Where a logging-in client's secret comes from, as PgBouncer's `set_pool` decides: users.txt
//! first; else, for a configured database with an `auth_user` (its own or the global one),
//! the row `auth_query` returns from the authentication database (`prepare_auth_database`:
//! the database's `auth_dbname`, else the global one, else the database itself); else none,
//! and the login runs a mock exchange that fails.

use std::sync::Arc;

use crate::auth::secret::Secret;
use crate::client::error::ClientError;
use crate::client::link::session::checkout_error;
use crate::config::connstr::ADMIN_DB;
use crate::config::{Config, DatabaseDef};
use crate::protocol::pooler_errors::{BOUNCER_CONFIG_ERROR, NO_SUCH_USER, auth_database_disabled};
use crate::server::auth_query::{AuthQueryError, FetchedUser, run_auth_query};
use crate::shared::Shared;

/// The database a client asked for, as far as credentials are concerned.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The admin console: only the global `auth_user` / `auth_query` / `auth_dbname` apply.
    Admin,
    /// A configured (or auto-) database.
    Database(&'a DatabaseDef),
    /// A name no entry matches: auth_query is not run (PgBouncer's fake database).
    Unknown,
}

/// A client's secret and where it came from.
pub(crate) enum UserSecret {
    /// users.txt.
    File(Secret),
    /// auth_query: the client's pool logs in to servers with it as well.
    Fetched(Secret),
    /// No such user: mock authentication.
    Unknown,
}

impl UserSecret {
    pub(crate) fn secret(&self) -> Option<&Secret> {
        match self {
            UserSecret::File(s) | UserSecret::Fetched(s) => Some(s),
            UserSecret::Unknown => None,
        }
    }
}

/// Finds `user`'s secret for a login to `target`. An error ends the login (no such user from
/// auth_query, a misconfigured or disabled auth database, a failed auth pool login).
pub(crate) async fn find_secret(
    app: &Arc<Shared>,
    config: &Config,
    target: Target<'_>,
    user: &str,
) -> Result<UserSecret, ClientError> {
    if let Some(secret) = config.auth_file.users.get(user) {
        return Ok(UserSecret::File(secret.clone()));
    }
    let settings = &config.settings;
    let (db, own_auth_user) = match target {
        Target::Admin => (None, None),
        Target::Database(db) => (Some(db), db.auth_user.as_deref()),
        Target::Unknown => {
            tracing::debug!("not running auth_query because database is fake");
            tracing::info!("no such user: {user}");
            return Ok(UserSecret::Unknown);
        }
    };
    let Some(auth_user) = own_auth_user.or(settings.auth_user.as_deref()) else {
        tracing::info!("no such user: {user}");
        return Ok(UserSecret::Unknown);
    };
    let query = db
        .and_then(|d| d.auth_query.as_deref())
        .unwrap_or(&settings.auth_query);
    let auth_db = auth_database(app, config, db)?;
    let pool = app.pools.get_or_create_auth(config, &auth_db, auth_user);
    let upstream = app.upstream();
    let mut guard = pool.checkout(&upstream).await.map_err(checkout_error)?;
    tracing::trace!("doing auth_conn query: {query}");
    match run_auth_query(guard.conn(), query, user).await {
        Ok(Some(found)) => {
            guard.release(true).await;
            tracing::debug!(
                "successfully parsed auth_query response for user {}",
                found.name
            );
            Ok(UserSecret::Fetched(secret_of(found)))
        }
        Ok(None) => {
            guard.release(true).await;
            if settings.log_connections {
                tracing::info!("login failed: db={}", db.map_or(ADMIN_DB, |d| &d.name));
            }
            Err(NO_SUCH_USER)
        }
        Err(e) => {
            if let AuthQueryError::Server(fields) = &e {
                tracing::error!(
                    "S: error in auth_query: {}: {}",
                    fields.severity,
                    fields.message
                );
            }
            // PgBouncer closes the server; the client still logging in is told this
            tracing::info!(server = guard.conn().id, "closing because: {e} (age=0s)");
            drop(guard);
            Err(BOUNCER_CONFIG_ERROR)
        }
    }
}

/// NULL (no password, or `VALID UNTIL` passed) becomes a secret nothing matches.
fn secret_of(found: FetchedUser) -> Secret {
    match found.password {
        Some(p) => Secret::parse(&p),
        None => Secret::Empty,
    }
}

/// The database auth_query runs in (`prepare_auth_database`): it must exist (or be made from
/// `*`), be enabled, and not be the admin console. `db` None is the admin console.
fn auth_database(
    app: &Shared,
    config: &Config,
    db: Option<&DatabaseDef>,
) -> Result<DatabaseDef, ClientError> {
    let name = db
        .and_then(|d| d.auth_dbname.as_deref())
        .or(config.settings.auth_dbname.as_deref());
    let auth_db = match (name, db) {
        (None, Some(db)) => db.clone(),
        (None, None) | (Some(ADMIN_DB), _) => return Err(reserved()),
        (Some(name), _) => config.database_for(name).ok_or_else(|| {
            tracing::error!("authentication database \"{name}\" is not configured.");
            BOUNCER_CONFIG_ERROR
        })?,
    };
    if app.pools.db_control(&auth_db.name).is_disabled() {
        return Err(auth_database_disabled(&auth_db.name));
    }
    Ok(auth_db)
}

fn reserved() -> ClientError {
    tracing::error!("cannot use the reserved \"{ADMIN_DB}\" database as an auth_dbname");
    BOUNCER_CONFIG_ERROR
}
