//! Runs the pooler: binds the listeners (before anything else starts), then serves until a
//! shutdown request has been honoured.

use std::time::Duration;

use crate::app::App;
use crate::config::Config;
use crate::net::listener;
use crate::shutdown::ShutdownMode;

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
    let app = App::new(config)?;
    crate::metrics::start(&app).await?;
    tokio::spawn(crate::pool::janitor::run(app.clone()));
    let signals = app.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::signals::handle(signals).await {
            tracing::error!(error = %e, "cannot install signal handlers");
        }
    });
    tokio::spawn(listeners.serve(app.clone()));

    let mut changes = app.shutdown.subscribe();
    while app.shutdown.mode() == ShutdownMode::Running {
        if changes.changed().await.is_err() {
            break;
        }
    }
    // Drain: both waiting modes end when the clients (and so their servers) are gone.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if app.shutdown.mode() == ShutdownMode::Immediate || app.client_count() == 0 {
            break;
        }
    }
    tracing::info!("shutdown complete");
    Ok(())
}
