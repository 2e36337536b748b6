//! `max_db_client_connections` and `max_user_client_connections`: checked once a client has
//! logged in and been registered (so it counts itself), as PgBouncer's
//! check_db_connection_count / check_user_connection_count. Admin users on the admin console
//! are exempt; every other client of the user counts, admin console included.

use crate::config::Config;
use crate::config::connstr::ADMIN_DB;
use crate::pool::clients::ClientRegistry;
use crate::protocol::pooler_errors::{
    MAX_DB_CLIENT_CONNECTIONS, MAX_USER_CLIENT_CONNECTIONS, PoolerError,
};

/// How long a client over a limit waits for clients that are already leaving (a Terminate
/// read on another worker thread a moment later) before it is refused. PgBouncer's one event
/// loop handles a Terminate that arrived before a new login first; this keeps that order.
const LEAVING_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// [`exceeded`], looked at again at each departure of another client for up to
/// [`LEAVING_GRACE`] before refusing.
pub async fn check(
    config: &Config,
    clients: &ClientRegistry,
    database: &str,
    user: &str,
) -> Result<(), PoolerError> {
    if exceeded(config, clients, database, user).is_none() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + LEAVING_GRACE;
    loop {
        let departure = clients.departure();
        tokio::pin!(departure);
        // registers the waiter now: a client leaving right after the look below wakes it
        departure.as_mut().enable();
        let Some(refusal) = exceeded(config, clients, database, user) else {
            return Ok(());
        };
        if tokio::time::timeout_at(deadline, departure).await.is_err() {
            return Err(refusal);
        }
    }
}

/// The limit the client just registered for `database` as `user` would exceed, if any.
pub fn exceeded(
    config: &Config,
    clients: &ClientRegistry,
    database: &str,
    user: &str,
) -> Option<PoolerError> {
    let admin_exempt =
        database == ADMIN_DB && config.settings.admin_user_list().iter().any(|u| u == user);
    if admin_exempt {
        return None;
    }
    let db_limit = match config.database_for(database) {
        Some(db) if database != ADMIN_DB => config.max_db_client_connections_for(&db),
        _ => config.settings.max_db_client_connections,
    };
    let user_limit = config.max_user_client_connections_for(user);
    if db_limit <= 0 && user_limit <= 0 {
        return None;
    }
    if db_limit > 0 && clients.count_where(|c| c.database == database) > db_limit as usize {
        return Some(MAX_DB_CLIENT_CONNECTIONS);
    }
    if user_limit > 0 && clients.count_where(|c| c.user == user) > user_limit as usize {
        return Some(MAX_USER_CLIENT_CONNECTIONS);
    }
    None
}
