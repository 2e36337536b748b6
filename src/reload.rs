//! RELOAD and SIGHUP: re-read pgbouncer.ini and users.txt, refuse a bad config (the reason is
//! logged, the running one stays), swap the snapshot in `Shared`, keep the pools whose
//! definition did not change, update in place those whose sizes or timeouts changed, retire
//! those that connect differently (their servers close at release), refuse
//! new clients of removed databases, and rebuild the upstream TLS connector.

use std::sync::Arc;

use crate::config::Config;
use crate::net::client_tls::{ClientTlsError, ClientTlsSettings};
use crate::pool::PoolDef;
use crate::shared::Shared;

/// Why a reload was refused (already logged).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config file loading failed: {0}")]
    Load(String),
    #[error("TLS configuration could not be reloaded, keeping old configuration: {0}")]
    Tls(String),
}

/// Reloads the configuration. On a load or validation error nothing changes.
pub async fn reload(app: &Arc<Shared>) -> Result<(), ReloadError> {
    let _serial = app.reload_lock.lock().await;
    let old = app.config();
    let new = match old.reload() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config file loading failed: {e}");
            return Err(ReloadError::Load(e.to_string()));
        }
    };
    match new.validate() {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            tracing::error!("config file loading failed: {e}");
            return Err(ReloadError::Load(e.to_string()));
        }
    }
    for w in &new.auth_file.warnings {
        tracing::warn!("{w}");
    }
    let server_tls_changed = server_tls_changed(&old, &new);
    reconcile_pools(app, &old, &new, server_tls_changed);
    app.set_config(new);
    for pool in app.pools.all() {
        pool.forget_login_failure();
    }
    // SIGHUP also reopens the log file (log rotation)
    if let Err(e) = crate::logging::reopen() {
        tracing::warn!(error = %e, "could not reopen the log file");
    }
    let client_tls = rebuild_client_tls(app);
    if let Err(e) = &client_tls {
        tracing::error!(error = %e, "TLS configuration could not be reloaded, keeping old configuration");
    }
    if !rebuild_upstream_tls(app) || client_tls.is_err() {
        return Err(ReloadError::Tls("see the log for the reason".to_string()));
    }
    tracing::info!("configuration reloaded");
    Ok(())
}

/// Re-reads the client TLS files named by the current config and swaps the acceptor (connected
/// clients keep their sessions; new handshakes use the new certificate). On error the old
/// acceptor stays.
pub fn rebuild_client_tls(app: &Shared) -> Result<(), ClientTlsError> {
    app.client_tls
        .replace(&ClientTlsSettings::from_settings(&app.config().settings))
}

/// Whether the upstream TLS settings differ between two snapshots, as PgBouncer's
/// `tls_change_requires_reconnect` decides: the sslmode, any `server_tls_*` value, or the
/// contents of the CA, certificate or key file (a renewed file at the same path counts). Server
/// connections made with the old settings are then closed (`close_needed`).
pub(crate) fn server_tls_changed(old: &Config, new: &Config) -> bool {
    tls_fingerprint(old) != tls_fingerprint(new)
}

fn tls_fingerprint(c: &Config) -> (String, [Option<Vec<u8>>; 3]) {
    let settings = crate::net::server_tls::settings::from_config(&c.settings);
    let contents = |p: &Option<std::path::PathBuf>| p.as_ref().and_then(|p| std::fs::read(p).ok());
    let files = [
        contents(&settings.ca_file),
        contents(&settings.cert_file),
        contents(&settings.key_file),
    ];
    (format!("{settings:?}"), files)
}

/// Rebuilds the upstream TLS connector from the current config (files are re-read, so renewed
/// certificates are picked up). On failure the old connector stays and `false` is returned.
pub fn rebuild_upstream_tls(app: &Shared) -> bool {
    let config = app.config();
    match crate::net::server_tls::build_connector(&crate::net::server_tls::settings::from_config(
        &config.settings,
    )) {
        Ok(tls) => {
            app.set_tls(tls);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS configuration could not be reloaded, keeping old configuration");
            false
        }
    }
}

/// Compares every pool's definition under the new config with its current one.
pub(crate) fn reconcile_pools(app: &Shared, old: &Config, new: &Config, server_tls_changed: bool) {
    for pool in app.pools.all() {
        let key = (pool.db_name.clone(), pool.login_user.clone());
        let Some(new_db) = new.database_for(&pool.db_name) else {
            // new clients get "no such database" from the new config; these keep working
            tracing::info!(db = %pool.db_name, "database removed by reload");
            pool.servers.mark_all_close_needed();
            pool.close_idle_needing_close();
            app.pools.retire(&key);
            continue;
        };
        // the client user only matters for [users] lookups; the login user stands for it
        let new_def = PoolDef::resolve(new, &new_db, &pool.login_user);
        let same_def = format!("{:?}", pool.def()) == format!("{new_def:?}");
        let same_secret = pool.def().secret == new_def.secret;
        let db_reconnect = old
            .database_for(&pool.db_name)
            .is_none_or(|old_db| old_db.needs_reconnect(&new_db));
        let reconnect = server_tls_changed || db_reconnect || !same_def;
        if same_def && same_secret && !server_tls_changed {
            continue;
        }
        if !server_tls_changed && !db_reconnect && pool.def().same_connections(&new_def) {
            // sizes and timeouts: the pool, its servers and its waiting clients stay
            pool.update_def(new_def);
            continue;
        }
        tracing::info!(
            db = %pool.db_name, user = %pool.login_user, reconnect,
            "pool definition changed by reload"
        );
        if reconnect {
            pool.servers.mark_all_close_needed();
            pool.close_idle_needing_close();
        }
        app.pools.retire(&key);
    }
}
