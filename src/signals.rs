//! Unix signals with PgBouncer's meanings: SIGHUP reloads, SIGUSR1 pauses, SIGUSR2 resumes,
//! SIGTERM waits for clients, SIGINT waits for servers, a second TERM/INT or a SIGQUIT exits
//! at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::signal::unix::{SignalKind, signal};

use crate::shared::Shared;
use crate::shutdown::ShutdownMode;

/// Listens for signals until the process exits.
pub async fn handle(app: Arc<Shared>) -> std::io::Result<()> {
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
                tracing::info!("got SIGHUP, re-reading config");
                // errors are logged by reload; the running config stays
                let _ = crate::reload::reload(&app).await;
                continue;
            }
            _ = usr1.recv() => {
                tracing::info!("got SIGUSR1, pausing all activity");
                pause_all(&app);
                continue;
            }
            _ = usr2.recv() => {
                if app.shutdown.is_stopping() {
                    // PgBouncer's handle_sigusr2: a shutdown is not resumed
                    tracing::info!("got SIGUSR2 while shutting down, ignoring");
                    continue;
                }
                tracing::info!("got SIGUSR2, continuing");
                resume_all(&app);
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
        crate::admin::control::begin_shutdown(&app, mode);
    }
}

/// SIGUSR1: new work waits, servers close as they are released.
fn pause_all(app: &Shared) {
    app.pools.global.paused.close();
    for p in app.pools.all() {
        p.close_idle();
    }
}

/// SIGUSR2: lifts PAUSE and SUSPEND.
fn resume_all(app: &Shared) {
    if app.shutdown.is_stopping() {
        tracing::info!("pooler is shutting down, not resuming");
        return;
    }
    app.pools.global.suspended.store(false, Ordering::Relaxed);
    app.pools.global.paused.open();
}
