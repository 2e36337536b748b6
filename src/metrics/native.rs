//! Metrics no exporter can give: latency histograms per pool, GSSAPI outcomes and the
//! remaining lifetime of the Kerberos ticket in use. (Client login failures are a registered
//! counter, see `LoginFailures`.)

use std::time::{Duration, SystemTime};

use crate::metrics::family::{Families, Family};
use crate::shared::Shared;
use crate::stats::{Histogram, PoolStats};

/// How long a scrape may wait for the credential cache to answer.
const TICKET_EXPIRY_DEADLINE: Duration = Duration::from_secs(2);

pub fn latency_histograms(app: &Shared, out: &mut Families) {
    let pools = app.pools.all();
    type Pick = fn(&PoolStats) -> &Histogram;
    let kinds: [(&str, &str, Pick); 4] = [
        (
            "krbouncer_query_duration_seconds",
            "Query latency as seen by the pooler (request to ReadyForQuery)",
            |s| &s.query_latency,
        ),
        (
            "krbouncer_transaction_duration_seconds",
            "Transaction latency as seen by the pooler",
            |s| &s.xact_latency,
        ),
        (
            "krbouncer_client_wait_seconds",
            "Time clients waited for a server connection",
            |s| &s.wait_latency,
        ),
        (
            "krbouncer_server_login_duration_seconds",
            "Time to connect and log in to a server",
            |s| &s.server_login_latency,
        ),
    ];
    for (name, help, pick) in kinds {
        let mut f = Family::histogram(name, help);
        for p in &pools {
            f.add_histogram(
                &[("database", &p.db_name), ("user", &p.login_user)],
                &pick(&p.stats).snapshot(),
            );
        }
        out.push(f);
    }
}

/// True when some database may log in or encrypt with GSSAPI.
fn gss_in_use(app: &Shared) -> bool {
    use crate::config::{GssAuthNegotiate, GssEncMode};
    let config = app.config();
    let s = &config.settings;
    let uses = |n: Option<GssAuthNegotiate>, e: Option<GssEncMode>| {
        n.unwrap_or(s.server_gssauth_negotiate) != GssAuthNegotiate::Disable
            || e.unwrap_or(s.server_gssencmode) != GssEncMode::Disable
    };
    uses(None, None)
        || config
            .databases
            .values()
            .chain(config.fallback_database.as_ref())
            .any(|d| uses(d.server_gssauth_negotiate, d.server_gssencmode))
}

pub async fn gss(app: &Shared, out: &mut Families) {
    if !gss_in_use(app) {
        return;
    }
    let c = app.gss.counters();
    let mut f = Family::counter(
        "krbouncer_gss_logins_total",
        "GSSAPI security contexts established with servers, by purpose",
    );
    f.add(&[("purpose", "auth")], c.established_auth as f64);
    f.add(
        &[("purpose", "encryption")],
        c.established_encryption as f64,
    );
    out.push(f);
    let mut f = Family::counter(
        "krbouncer_gss_failures_total",
        "GSSAPI failures towards servers, by reason",
    );
    for (reason, n) in &c.failures {
        f.add(&[("reason", reason)], *n as f64);
    }
    out.push(f);
    match app.gss.ticket_expiry(TICKET_EXPIRY_DEADLINE).await {
        Ok(Some(at)) => {
            let left = at
                .duration_since(SystemTime::now())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            out.gauge(
                "krbouncer_kerberos_ticket_expiry_seconds",
                "Seconds until the Kerberos ticket in use expires",
                left,
            );
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "no Kerberos ticket for the expiry metric"),
    }
}
