//! Unix signals with PgBouncer's meanings: SIGTERM waits for clients, SIGINT waits for
//! servers, a second TERM/INT or a SIGQUIT exits at once. SIGHUP (reload) and SIGUSR1/2
//! (pause/resume) are acknowledged in the log until the operations issue lands.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::app::App;
use crate::shutdown::ShutdownMode;

/// Listens for signals until the process exits.
pub async fn handle(app: Arc<App>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    loop {
        let requested = tokio::select! {
            _ = term.recv() => ShutdownMode::WaitForClients,
            _ = int.recv() => ShutdownMode::WaitForServers,
            _ = quit.recv() => ShutdownMode::Immediate,
            _ = hup.recv() => {
                tracing::warn!("SIGHUP received: online reload is not implemented yet; restart to apply changes");
                continue;
            }
            _ = usr1.recv() => {
                tracing::warn!("SIGUSR1 (PAUSE) received: not implemented yet");
                continue;
            }
            _ = usr2.recv() => {
                tracing::warn!("SIGUSR2 (RESUME) received: not implemented yet");
                continue;
            }
        };
        let mode = if app.shutdown.is_stopping() {
            ShutdownMode::Immediate
        } else {
            requested
        };
        match mode {
            ShutdownMode::WaitForClients => {
                tracing::info!("got SIGTERM, shutting down, waiting for all clients to disconnect")
            }
            ShutdownMode::WaitForServers => {
                tracing::info!("got SIGINT, shutting down, waiting for all servers to be released")
            }
            _ => tracing::info!("shutting down immediately"),
        }
        app.shutdown.request(mode);
    }
}
