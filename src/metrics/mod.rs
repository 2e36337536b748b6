//! Native Prometheus metrics and Kubernetes probes over HTTP at `metrics_addr`: `/metrics`
//! (pgbouncer_exporter names plus krbouncer's own), `/healthz` and `/readyz`. The registry is
//! owned by `App` (never the process-global default one) and passed to what renders it.

pub mod exporter;
pub mod family;
mod http;
pub mod login_failures;
pub mod native;

use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};

use crate::shared::Shared;
use family::Families;
pub use http::Response;
pub use login_failures::LoginFailures;

/// What SHOW VERSION says and `pgbouncer_version_info` carries.
pub const VERSION_STRING: &str = crate::cli::VERSION_LINE;

/// The app's registry and the counters kept in it.
pub struct Metrics {
    pub registry: Registry,
    pub login_failures: LoginFailures,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // invariant: a fresh registry has no collector with this name
        let login_failures = LoginFailures::register(&registry)
            .expect("invariant: fresh registry accepts the login failure counter");
        Metrics {
            registry,
            login_failures,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Starts the HTTP endpoint when `metrics_addr` is set. Binding errors are startup errors.
pub async fn start(app: &Arc<Shared>, registry: &Registry) -> anyhow::Result<()> {
    let addr = app.config().settings.metrics_addr.clone();
    if addr.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("could not listen on metrics_addr {addr}: {e}"))?;
    tracing::info!(metrics_addr = %addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(http::serve(listener, app.clone(), registry.clone()));
    Ok(())
}

/// Ready = accepting clients: not shutting down. (A PAUSE from the admin console should also
/// make this false; that state lives with the admin console.)
pub fn is_ready(app: &Shared) -> bool {
    !app.shutdown.is_stopping()
}

async fn route(app: &Shared, registry: &Registry, path: &str) -> Response {
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: render(app, registry).await,
        },
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" if is_ready(app) => Response::text(200, "ready\n"),
        "/readyz" => Response::text(503, "not ready\n"),
        _ => Response::text(404, "not found\n"),
    }
}

/// The whole `/metrics` page in Prometheus text format.
pub async fn render(app: &Shared, registry: &Registry) -> Vec<u8> {
    let mut out = Families::default();
    exporter::collect(app, VERSION_STRING, &mut out);
    native::latency_histograms(app, &mut out);
    native::gss(app, &mut out).await;
    let mut families = out.0;
    families.extend(registry.gather());
    let mut buf = Vec::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    buf
}
