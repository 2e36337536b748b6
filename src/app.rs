//! The composition root: builds the shared state and the metrics registry from a config and
//! wires what the layers below only know as handles and callbacks (the listener's client
//! spawner). Only `serve.rs` and `main.rs` name `App`.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::net::listener::SpawnClient;
use crate::shared::{SetupError, Shared};

pub struct App {
    /// What every client, admin and metrics task shares.
    pub shared: Arc<Shared>,
    /// The Prometheus registry and the counters kept in it (`/metrics`).
    pub metrics: Metrics,
}

impl App {
    pub fn new(config: crate::config::Config) -> Result<App, SetupError> {
        Ok(App {
            shared: Shared::new(config)?,
            metrics: Metrics::new(),
        })
    }

    /// What the listener calls for each accepted connection: one client task.
    pub fn spawn_client(&self) -> SpawnClient {
        let shared = self.shared.clone();
        let login_failures = self.metrics.login_failures.clone();
        Arc::new(move |stream, peer| {
            tokio::spawn(crate::client::serve(
                shared.clone(),
                login_failures.clone(),
                stream,
                peer,
            ));
        })
    }
}
