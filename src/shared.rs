//! The state every client, admin and metrics task shares: the config snapshot, pools, cancel
//! keys, logged-in clients and their count, prepared statements, the GSSAPI runtime, both TLS
//! configs, the stats clock and the shutdown state. No globals. `app.rs` builds it; the
//! layers below take narrower handles (`&PoolRegistry`, `Upstream`, `JanitorHandle`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::auth::gss::GssRuntime;
use crate::config::Config;
use crate::net::client_tls::{ClientTls, ClientTlsSettings};
use crate::pool::PoolRegistry;
use crate::pool::cancel::CancelRegistry;
use crate::pool::checkout::Upstream;
use crate::pool::clients::ClientRegistry;
use crate::pool::janitor::JanitorHandle;
use crate::shutdown::Shutdown;
use crate::stats::StatsClock;

/// GSSAPI calls allowed in flight at once; more wait. Bounds the threads a dead KDC can hold.
const GSS_MAX_IN_FLIGHT: usize = 16;

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub pools: PoolRegistry,
    pub cancels: CancelRegistry,
    /// Cancels forwarded to other processes of the peer group (SHOW PEER_POOLS).
    pub peer_cancels: crate::pool::peers::PeerCancels,
    /// Pooler-wide prepared statements (transaction / statement pooling).
    pub statements: crate::server::statements::StatementRegistry,
    pub shutdown: Shutdown,
    pub gss: GssRuntime,
    /// Upstream TLS connector; rebuilt by reload when the TLS files or settings change.
    tls: RwLock<Option<tokio_rustls::TlsConnector>>,
    /// The downstream TLS acceptor; swapped by `net::client_tls::rebuild` on reload.
    pub client_tls: ClientTls,
    /// Logged-in clients (SHOW CLIENTS, KILL, KILL_CLIENT).
    pub client_registry: ClientRegistry,
    /// stats_period averages (SHOW STATS avg_*, log_stats).
    pub stats_clock: StatsClock,
    /// The admin console's own traffic, counted in SHOW TOTALS as PgBouncer's admin pool is.
    pub admin_stats: crate::stats::PoolStats,
    /// Serialises RELOAD / SIGHUP / SET so two reloads never interleave.
    pub reload_lock: tokio::sync::Mutex<()>,
    clients: AtomicUsize,
    /// The tracked parameter names for `track_extra_parameters` (the setting's text), shared
    /// by the clients logged in under it instead of a copy each.
    tracked: Mutex<Option<(String, Arc<[String]>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("server TLS setup: {0}")]
    Tls(#[source] crate::net::server_tls::TlsSetupError),
    #[error("client TLS setup: {0}")]
    ClientTls(#[source] crate::net::client_tls::ClientTlsError),
}

impl Shared {
    pub fn new(config: Config) -> Result<Arc<Shared>, SetupError> {
        let tls = crate::net::server_tls::build_connector(
            &crate::net::server_tls::settings::from_config(&config.settings),
        )
        .map_err(SetupError::Tls)?;
        let client_tls = ClientTls::new(&ClientTlsSettings::from_settings(&config.settings))
            .map_err(SetupError::ClientTls)?;
        Ok(Arc::new(Shared {
            config: RwLock::new(Arc::new(config)),
            pools: PoolRegistry::new(),
            cancels: CancelRegistry::default(),
            peer_cancels: Default::default(),
            statements: Default::default(),
            shutdown: Shutdown::new(),
            gss: GssRuntime::new(GSS_MAX_IN_FLIGHT),
            tls: RwLock::new(tls),
            client_tls,
            client_registry: ClientRegistry::default(),
            stats_clock: StatsClock::new(),
            admin_stats: Default::default(),
            reload_lock: tokio::sync::Mutex::new(()),
            clients: AtomicUsize::new(0),
            tracked: Mutex::new(None),
        }))
    }

    /// The current configuration snapshot.
    pub(crate) fn config(&self) -> Arc<Config> {
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

    pub(crate) fn upstream(&self) -> Upstream<'_> {
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

    /// The tracked parameter names for this `track_extra_parameters` value, built once per
    /// distinct value.
    pub(crate) fn tracked_names(&self, track_extra_parameters: &str) -> Arc<[String]> {
        let mut cached = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some((setting, names)) if setting == track_extra_parameters => names.clone(),
            _ => {
                let extra = crate::config::values::comma_list(track_extra_parameters);
                let names: Arc<[String]> = crate::server::params::tracked_names(&extra).into();
                *cached = Some((track_extra_parameters.to_string(), names.clone()));
                names
            }
        }
    }

    pub fn next_client_id(&self) -> u64 {
        crate::server::conn::next_socket_id()
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

impl JanitorHandle for Shared {
    fn pools(&self) -> &PoolRegistry {
        &self.pools
    }

    fn upstream(&self) -> Upstream<'_> {
        Shared::upstream(self)
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_stopping()
    }

    fn config(&self) -> Arc<Config> {
        Shared::config(self)
    }
}

pub struct ClientCount<'a>(&'a AtomicUsize);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
