//! Runs the pooler: binds the listeners (before anything else starts), then serves until a
//! shutdown request has been honoured.

use std::time::Duration;

use crate::app::App;
use crate::config::Config;
use crate::net::listener;
use crate::shared::Shared;
use crate::shutdown::ShutdownMode;

/// SIGINT's end: no server connection left (idle ones are closed as the pause began, busy
/// ones close at release while paused).
fn servers_released(app: &Shared) -> bool {
    app.pools.all().iter().all(|p| {
        p.close_idle();
        p.server_count.load(std::sync::atomic::Ordering::Relaxed) == 0
            && p.servers.count(crate::pool::ServerState::Login) == 0
    })
}

/// Serves `config` until shutdown. Errors here are startup errors (bind, TLS files).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listeners = listener::bind(&config.settings).await?;
    tracing::info!(
        listen_addr = %config.settings.listen_addr, listen_port = config.settings.listen_port,
        unix_socket_dir = %config.settings.unix_socket_dir, "listening"
    );
    match config.validate() {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => anyhow::bail!("invalid configuration: {e}"),
    }
    let root = App::new(config)?;
    let app = root.shared.clone();
    crate::metrics::start(&app, &root.metrics.registry).await?;
    tokio::spawn(crate::pool::janitor::run(app.clone()));
    tokio::spawn(crate::stats_period::run(app.clone()));
    let signals = app.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::signals::handle(signals).await {
            tracing::error!(error = %e, "cannot install signal handlers");
        }
    });
    let listening = tokio::spawn(listeners.serve(app.shutdown.subscribe(), root.spawn_client()));

    let mut changes = app.shutdown.subscribe();
    while app.shutdown.mode() == ShutdownMode::Running {
        if changes.changed().await.is_err() {
            break;
        }
    }
    // Drain: WAIT_FOR_CLIENTS ends when no pooled client is left (admin console sessions do
    // not hold it up), WAIT_FOR_SERVERS when every server has been released and closed.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let done = match app.shutdown.mode() {
            ShutdownMode::Immediate | ShutdownMode::Running => true,
            ShutdownMode::WaitForClients => app.client_registry.pooled_count() == 0,
            ShutdownMode::WaitForServers => servers_released(&app),
        };
        if done {
            break;
        }
    }
    app.shutdown.request(ShutdownMode::Immediate);
    // lets the listener remove the unix socket file
    let _ = tokio::time::timeout(Duration::from_secs(1), listening).await;
    tracing::info!("shutdown complete");
    Ok(())
}
