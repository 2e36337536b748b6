//! Admin console control commands (PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL,
//! KILL_CLIENT, SUSPEND, SHUTDOWN, RELOAD, WAIT_CLOSE, SET) with PgBouncer's error texts.
//! Each returns the CommandComplete tag, or the admin error to send.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::connstr::ADMIN_DB;
use crate::pool::Pool;
use crate::protocol::pooler_errors::{
    ADMIN_FORCED_DISCONNECT, DATABASE_REMOVED, PoolerError, SERVER_SHUTTING_DOWN,
    admin_error as err, admin_no_such_database, admin_not_paused, admin_pooler_shutting_down,
    admin_reload_failed,
};
use crate::shared::Shared;
use crate::shutdown::ShutdownMode;

/// How often a waiting command (PAUSE, WAIT_CLOSE) re-checks its condition.
const POLL: Duration = Duration::from_millis(20);

pub type Outcome = Result<String, PoolerError>;

fn done(tag: &str) -> Outcome {
    Ok(tag.to_string())
}

/// Whether `name` is a database PgBouncer would find (configured, `*`, or with pools).
fn known_db(app: &Shared, name: &str) -> bool {
    app.config().database_for(name).is_some() || !app.pools.pools_of_db(name).is_empty()
}

/// Database names a command without argument applies to.
fn all_dbs(app: &Shared) -> Vec<String> {
    let mut names: Vec<String> = app.config().databases.keys().cloned().collect();
    names.extend(app.pools.all().iter().map(|p| p.db_name.clone()));
    names.sort();
    names.dedup();
    names
}

fn pools_for(app: &Shared, db: Option<&str>) -> Vec<Arc<Pool>> {
    match db {
        Some(d) => app.pools.pools_of_db(d),
        None => app.pools.all(),
    }
}

/// Checks a database argument: known, and not the admin console.
fn check_db(app: &Shared, arg: &str, verb: &str) -> Result<(), PoolerError> {
    if arg == ADMIN_DB {
        return Err(err(format!("cannot {verb} admin db: {arg}")));
    }
    if !known_db(app, arg) {
        return Err(admin_no_such_database(arg));
    }
    Ok(())
}

fn server_total(pools: &[Arc<Pool>]) -> usize {
    pools
        .iter()
        .map(|p| {
            p.server_count.load(Ordering::Relaxed)
                + p.servers.count(crate::pool::ServerState::Login)
        })
        .sum()
}

/// Waits until the pools hold no server connection (PAUSE completes).
async fn wait_servers_gone(app: &Shared, db: Option<&str>) {
    loop {
        let pools = pools_for(app, db);
        for p in &pools {
            p.close_idle();
        }
        if server_total(&pools) == 0 {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn pause(app: &Shared, arg: &str) -> Outcome {
    let global = &app.pools.global;
    if global.paused.is_closed() {
        return Err(err("already suspended/paused"));
    }
    if arg.is_empty() {
        tracing::info!("PAUSE command issued");
        global.paused.close();
        wait_servers_gone(app, None).await;
    } else {
        tracing::info!("PAUSE '{arg}' command issued");
        check_db(app, arg, "pause")?;
        app.pools.db_control(arg).paused.close();
        wait_servers_gone(app, Some(arg)).await;
    }
    done("PAUSE")
}

pub fn resume(app: &Shared, arg: &str) -> Outcome {
    if arg.is_empty() {
        tracing::info!("RESUME command issued");
        if app.shutdown.is_stopping() {
            return Err(admin_pooler_shutting_down());
        }
        let global = &app.pools.global;
        global.suspended.store(false, Ordering::Relaxed);
        // also lifts the per-database pauses a KILL without argument set
        let mut any = global.paused.open();
        for db in all_dbs(app) {
            any |= app.pools.db_control(&db).paused.open();
        }
        if !any {
            return Err(admin_not_paused());
        }
    } else {
        tracing::info!("RESUME '{arg}' command issued");
        if !known_db(app, arg) {
            return Err(admin_no_such_database(arg));
        }
        if !app.pools.db_control(arg).paused.open() {
            return Err(err(format!("database {arg} is not paused")));
        }
    }
    done("RESUME")
}

pub fn disable_enable(app: &Shared, arg: &str, disable: bool) -> Outcome {
    let verb = if disable { "disable" } else { "enable" };
    if arg.is_empty() {
        return Err(err("a database is required"));
    }
    tracing::info!("{} '{arg}' command issued", verb.to_uppercase());
    check_db(app, arg, verb)?;
    app.pools
        .db_control(arg)
        .disabled
        .store(disable, Ordering::Relaxed);
    done(if disable { "DISABLE" } else { "ENABLE" })
}

/// Marks every server of the pools `close_needed` and closes the idle ones now.
pub fn reconnect_pools(pools: &[Arc<Pool>]) {
    for p in pools {
        p.servers.mark_all_close_needed();
        p.close_idle_needing_close();
    }
}

pub fn reconnect(app: &Shared, arg: &str) -> Outcome {
    if arg.is_empty() {
        tracing::info!("RECONNECT command issued");
        reconnect_pools(&app.pools.all());
    } else {
        tracing::info!("RECONNECT '{arg}' command issued");
        check_db(app, arg, "reconnect")?;
        reconnect_pools(&app.pools.pools_of_db(arg));
    }
    done("RECONNECT")
}

pub fn kill(app: &Shared, arg: &str) -> Outcome {
    if app.pools.global.paused.is_closed() {
        return Err(err("already suspended/paused"));
    }
    let db = if arg.is_empty() {
        tracing::info!("KILL command issued");
        for name in all_dbs(app) {
            app.pools.db_control(&name).paused.close();
        }
        None
    } else {
        tracing::info!("KILL '{arg}' command issued");
        check_db(app, arg, "kill")?;
        app.pools.db_control(arg).paused.close();
        Some(arg)
    };
    app.client_registry.kill_db(db, DATABASE_REMOVED);
    for p in pools_for(app, db) {
        p.close_idle();
        p.servers.mark_all_close_needed();
    }
    done("KILL")
}

pub fn kill_client(app: &Shared, arg: &str) -> Outcome {
    let Ok(id) = arg.trim().parse::<u64>() else {
        return Err(err("invalid client pointer supplied"));
    };
    let Some(client) = app.client_registry.get(id) else {
        return Err(err("client not found"));
    };
    client.kill(ADMIN_FORCED_DISCONNECT);
    done("KILL_CLIENT")
}

pub async fn suspend(app: &Shared, arg: &str) -> Outcome {
    if !arg.is_empty() {
        return Err(super::syntax_error());
    }
    let global = &app.pools.global;
    if global.paused.is_closed() {
        return Err(err("already suspended/paused"));
    }
    if all_dbs(app)
        .iter()
        .any(|d| app.pools.db_control(d).paused.is_closed())
    {
        return Err(err("cannot suspend with paused databases"));
    }
    tracing::info!("SUSPEND command issued");
    // krbouncer has no socket handover (-R): SUSPEND stops new work like PAUSE, keeping servers
    global.suspended.store(true, Ordering::Relaxed);
    global.paused.close();
    done("SUSPEND")
}

/// Starts a shutdown. `None`: immediate (no reply, as PgBouncer keeps the admin waiting).
pub fn shutdown(app: &Shared, arg: &str) -> Result<Option<String>, PoolerError> {
    let mode = match arg.to_ascii_uppercase().as_str() {
        "" => ShutdownMode::Immediate,
        "WAIT_FOR_CLIENTS" => ShutdownMode::WaitForClients,
        "WAIT_FOR_SERVERS" => ShutdownMode::WaitForServers,
        _ => return Err(super::syntax_error()),
    };
    match mode {
        ShutdownMode::Immediate => tracing::info!("SHUTDOWN command issued"),
        ShutdownMode::WaitForServers => {
            tracing::info!("SHUTDOWN WAIT_FOR_SERVERS command issued")
        }
        _ => tracing::info!("SHUTDOWN WAIT_FOR_CLIENTS command issued"),
    }
    begin_shutdown(app, mode);
    Ok((mode != ShutdownMode::Immediate).then(|| "SHUTDOWN".to_string()))
}

/// SIGTERM / SIGINT / SHUTDOWN: WAIT_FOR_SERVERS also pauses and drops waiting clients.
pub fn begin_shutdown(app: &Shared, mode: ShutdownMode) {
    if mode == ShutdownMode::WaitForServers {
        app.pools.global.paused.close();
        app.client_registry.kill_waiting(SERVER_SHUTTING_DOWN);
        for p in app.pools.all() {
            p.close_idle();
        }
    }
    app.shutdown.request(mode);
}

pub async fn reload(app: &Arc<Shared>, arg: &str) -> Outcome {
    if !arg.is_empty() {
        return Err(super::syntax_error());
    }
    tracing::info!("RELOAD command issued");
    match crate::reload::reload(app).await {
        Ok(()) => done("RELOAD"),
        Err(_) => Err(admin_reload_failed()),
    }
}

pub async fn wait_close(app: &Shared, arg: &str) -> Outcome {
    let db = if arg.is_empty() {
        tracing::info!("WAIT_CLOSE command issued");
        None
    } else {
        tracing::info!("WAIT_CLOSE '{arg}' command issued");
        if arg == ADMIN_DB {
            return Err(err(format!("cannot wait in admin db: {arg}")));
        }
        if !known_db(app, arg) {
            return Err(admin_no_such_database(arg));
        }
        Some(arg)
    };
    loop {
        let pools = pools_for(app, db);
        for p in &pools {
            p.close_idle_needing_close();
        }
        if !pools.iter().any(|p| p.servers.any_close_needed()) {
            return done("WAIT_CLOSE");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `SET key = value` on the running config (restart-only keys are accepted and ignored).
pub async fn set(app: &Arc<Shared>, key: &str, value: &str) -> Outcome {
    let _serial = app.reload_lock.lock().await;
    let mut next = (*app.config()).clone();
    if next.settings.set_online(key, value).is_err() {
        return Err(err("SET failed"));
    }
    let tls_changed = key.contains("_tls_") || key.contains("_tls13_");
    // existing pools follow the new value (PgBouncer reads settings at each use): sizes in
    // place, serving clients already waiting; connection changes retire the pool, and so
    // does a change of the upstream TLS settings (not of the client_tls_* ones)
    let old = app.config();
    let server_tls_changed = crate::reload::server_tls_changed(&old, &next);
    crate::reload::reconcile_pools(app, &old, &next, server_tls_changed);
    app.set_config(next);
    for pool in app.pools.all() {
        pool.forget_login_failure();
    }
    if tls_changed {
        // both sides, each logging its own reason (PgBouncer: "TLS setup failed: ...")
        let upstream = crate::reload::rebuild_upstream_tls(app);
        let client = crate::reload::rebuild_client_tls(app);
        if let Err(e) = &client {
            tracing::error!("TLS setup failed: {e}");
        }
        if !upstream || client.is_err() {
            tracing::warn!("TLS settings could not be applied, still using old configuration");
        }
    }
    Ok(format!("SET {key}={value}"))
}
