//! Process-wide state handed to every task: the config snapshot, pools, cancel keys, client
//! counts, the GSSAPI runtime, the upstream TLS connector and the shutdown state. No globals.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::gss::GssRuntime;
use crate::client::cancel::CancelRegistry;
use crate::client::registry::ClientRegistry;
use crate::config::Config;
use crate::pool::PoolRegistry;
use crate::pool::checkout::Upstream;
use crate::shutdown::Shutdown;

/// GSSAPI calls allowed in flight at once; more wait. Bounds the threads a dead KDC can hold.
const GSS_MAX_IN_FLIGHT: usize = 16;

pub struct App {
    config: RwLock<Arc<Config>>,
    pub pools: PoolRegistry,
    pub cancels: CancelRegistry,
    /// Cancels forwarded to other processes of the peer group (SHOW PEER_POOLS).
    pub peer_cancels: crate::client::peer_cancel::PeerCancels,
    /// Pooler-wide prepared statements (transaction / statement pooling).
    pub statements: crate::client::prepared::StatementRegistry,
    pub shutdown: Shutdown,
    pub gss: GssRuntime,
    /// The Prometheus registry and the counters kept in it (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Upstream TLS connector; rebuilt by reload when the TLS files or settings change.
    tls: RwLock<Option<tokio_rustls::TlsConnector>>,
    /// The downstream TLS acceptor; swapped by `net::client_tls::rebuild` on reload.
    pub client_tls: crate::net::client_tls::ClientTls,
    /// Logged-in clients (SHOW CLIENTS, KILL, KILL_CLIENT).
    pub client_registry: ClientRegistry,
    /// stats_period averages (SHOW STATS avg_*, log_stats).
    pub stats_clock: crate::stats_period::StatsClock,
    /// Serialises RELOAD / SIGHUP / SET so two reloads never interleave.
    pub reload_lock: tokio::sync::Mutex<()>,
    clients: AtomicUsize,
    next_client_id: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("server TLS setup: {0}")]
    Tls(String),
    #[error("client TLS setup: {0}")]
    ClientTls(String),
}

impl App {
    pub fn new(config: Config) -> Result<Arc<App>, AppError> {
        let tls = crate::net::tls::build_connector(&crate::net::tls_settings::from_config(
            &config.settings,
        ))
        .map_err(|e| AppError::Tls(e.to_string()))?;
        let client_tls = crate::net::client_tls::ClientTls::new(
            &crate::net::client_tls::ClientTlsSettings::from_settings(&config.settings),
        )
        .map_err(AppError::ClientTls)?;
        Ok(Arc::new(App {
            config: RwLock::new(Arc::new(config)),
            pools: PoolRegistry::new(),
            cancels: CancelRegistry::default(),
            peer_cancels: Default::default(),
            statements: Default::default(),
            shutdown: Shutdown::new(),
            gss: GssRuntime::new(GSS_MAX_IN_FLIGHT),
            metrics: crate::metrics::Metrics::new(),
            tls: RwLock::new(tls),
            client_tls,
            client_registry: ClientRegistry::default(),
            stats_clock: crate::stats_period::StatsClock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
        }))
    }

    /// The current configuration snapshot.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new configuration snapshot (reload, SET); running tasks keep the old one.
    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    /// Installs a rebuilt upstream TLS connector (reload).
    pub fn set_tls(&self, tls: Option<tokio_rustls::TlsConnector>) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }

    pub fn upstream(&self) -> Upstream<'_> {
        Upstream {
            gss: &self.gss,
            tls: self.tls.read().unwrap_or_else(|p| p.into_inner()).clone(),
            registry: &self.pools,
            tcp: crate::net::sockopt::TcpOptions::from_settings(
                &self
                    .config
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .settings,
            ),
        }
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connected client until the returned guard drops.
    pub fn count_client(&self) -> ClientCount<'_> {
        self.clients.fetch_add(1, Ordering::Relaxed);
        ClientCount(&self.clients)
    }

    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

pub struct ClientCount<'a>(&'a AtomicUsize);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
