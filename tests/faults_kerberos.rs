//! Kerberos faults while krbouncer needs new server logins: the KDC stopped (refusing) and
//! hung (SIGSTOP), tickets that expire mid-traffic, and the client keytab replaced on disk
//! with a new key version. Clients get a clear error bounded by `server_connect_timeout`,
//! established sessions go on, and logins work again once the KDC is back, all without
//! restarting krbouncer.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::bouncer::{Bouncer, BouncerConfig};
use common::client::{first_value, query_one};
use common::kdc::{KrbLab, LabOptions};

const APP: (&str, &str) = ("app", "app-password");
const CONNECT_TIMEOUT_S: u64 = 3;

/// A bouncer with the lab's Kerberos environment and its own (empty) memory ccache, with
/// `a` (SPN postgres/localhost) and `b` (SPN postgres/127.0.0.1: a second service ticket).
fn bouncer(lab: &KrbLab, settings: &[(&str, &str)]) -> Bouncer {
    let db = |name: &str, host: &str| {
        format!(
            "{name} = host={host} port={} dbname=labdb user={} server_krb_spn=postgres/{host}@TEST.LOCAL",
            lab.pg_port(),
            lab.user_principal()
        )
    };
    let mut cfg = BouncerConfig::new()
        .auth(APP.0, APP.1)
        .database(db("a", "localhost"))
        .database(db("b", "127.0.0.1"))
        .set("server_gssauth_negotiate", "allow")
        .set("server_tls_sslmode", "disable")
        .set("server_connect_timeout", CONNECT_TIMEOUT_S)
        .set("server_login_retry", 1);
    for (k, v) in settings {
        cfg = cfg.set(k, v);
    }
    for (k, v) in lab.env() {
        if k.starts_with("KRB5") && k != "KRB5CCNAME" {
            cfg = cfg.env(&k, v);
        }
    }
    cfg.env("KRB5CCNAME", "MEMORY:krbouncer").start()
}

async fn select(b: &Bouncer, db: &str) -> Result<String, String> {
    query_one(b, APP.0, APP.1, db, "SELECT 'ok'")
        .await
        .map_err(|f| f.to_string())
}

/// Polls until a login to `db` works, for at most `limit`.
async fn works_again(b: &Bouncer, db: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if select(b, db).await.is_ok() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// `fault` breaks the KDC, `heal` mends it: a held session keeps working, a login that needs
/// a new service ticket fails with a "server login failed" naming the KDC within
/// server_connect_timeout (plus slack for a loaded machine), and after `heal` the same
/// krbouncer process logs in again.
async fn kdc_fault(lab: &KrbLab, what: &str, fault: fn(&KrbLab), heal: fn(&KrbLab)) {
    let b = bouncer(lab, &[]);
    let (held, _conn) = b
        .connect(APP.0, APP.1, "a")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    fault(lab);
    let started = Instant::now();
    let e = select(&b, "b")
        .await
        .expect_err("no KDC, no service ticket");
    let took = started.elapsed();
    eprintln!("KDC {what}: new login failed after {took:?}: {e}");
    assert!(
        took < Duration::from_secs(CONNECT_TIMEOUT_S + 5),
        "KDC {what}: the failure took {took:?} (server_connect_timeout = {CONNECT_TIMEOUT_S})"
    );
    // the client is told it is the KDC, not just "connect timeout"
    assert!(
        e.contains("server login failed") && e.contains("KDC"),
        "KDC {what}: {e}\n{}",
        b.log()
    );
    assert_eq!(
        first_value(&held, "SELECT 'held'").await.as_deref(),
        Ok("held"),
        "KDC {what}: an established session needs no KDC"
    );
    heal(lab);
    let back = works_again(&b, "b", Duration::from_secs(30)).await;
    eprintln!("KDC {what}: logins work again {back:?} after it came back");
    assert!(
        back.is_some(),
        "KDC {what}: logins did not recover\n{}",
        b.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdc_stopped_then_hung_fails_new_logins_clearly_and_both_recover() {
    let lab = KrbLab::start(LabOptions::default());
    kdc_fault(&lab, "stopped", KrbLab::stop_kdc, KrbLab::start_kdc).await;
    kdc_fault(
        &lab,
        "hung (SIGSTOP)",
        KrbLab::pause_kdc,
        KrbLab::resume_kdc,
    )
    .await;
}

/// Successful AS exchanges (a TGT issued) for `principal` in the KDC log after byte `from`.
fn tgts_issued(lab: &KrbLab, principal: &str, from: usize) -> usize {
    let log = std::fs::read_to_string(lab.dir().join("kdc/krb5kdc.log")).unwrap_or_default();
    log.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("AS_REQ") && l.contains("ISSUE") && l.contains(principal))
        .count()
}

fn kdc_log_len(lab: &KrbLab) -> usize {
    std::fs::metadata(lab.dir().join("kdc/krb5kdc.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

const LIFETIME_S: u32 = 8;

/// Tickets live 8 s; servers are recycled every second (server_lifetime) so new server logins
/// keep coming. Over three ticket lifetimes every login works (krbouncer gets a new TGT from
/// the keytab), a transaction-pooled client keeps being served, and the KDC issued several TGTs.
/// (MIT refreshes a keytab-obtained TGT that has less than about 30 s left, so with 8 s
/// tickets nearly every login gets a new one; with real lifetimes it is once per half-life.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_expiring_mid_traffic_are_reacquired_from_the_keytab() {
    let lab = KrbLab::start(LabOptions {
        ticket_lifetime_secs: Some(LIFETIME_S),
        ..LabOptions::default()
    });
    let b = bouncer(
        &lab,
        &[("pool_mode", "transaction"), ("server_lifetime", "1")],
    );
    let from = kdc_log_len(&lab);
    let (held, _conn) = b
        .connect(APP.0, APP.1, "a")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    let until = Instant::now() + Duration::from_secs(3 * u64::from(LIFETIME_S));
    let (mut logins, mut failures) = (0, Vec::new());
    while Instant::now() < until {
        logins += 1;
        if let Err(e) = select(&b, "a").await {
            failures.push(e);
        }
        if let Err(f) = first_value(&held, "SELECT 1").await {
            failures.push(format!("held client: {f}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let tgts = tgts_issued(&lab, lab.user_principal(), from);
    eprintln!(
        "{logins} logins over {}s, {tgts} TGTs issued",
        3 * LIFETIME_S
    );
    assert!(failures.is_empty(), "{failures:?}\n{}", b.log());
    assert!(
        tgts >= 2,
        "the TGT was re-acquired after it expired ({tgts} issued)\n{}",
        b.log()
    );
}

/// The client principal's key is rotated (`ktadd` to a new file, renamed over the keytab):
/// the old keytab stops working at the KDC, and once krbouncer's TGT expires it logs in with
/// the new keytab, with no failed login on the way and no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keytab_replaced_on_disk_is_used_for_new_logins() {
    let lab = KrbLab::start(LabOptions {
        ticket_lifetime_secs: Some(LIFETIME_S),
        ..LabOptions::default()
    });
    let b = bouncer(
        &lab,
        &[("pool_mode", "transaction"), ("server_lifetime", "1")],
    );
    assert_eq!(select(&b, "a").await.as_deref(), Ok("ok"), "{}", b.log());
    let old = lab.rotate_client_keytab();
    assert!(!lab.keytab_works(&old), "the old key is no longer valid");
    let keytab = std::path::PathBuf::from(lab.var("PGLAB_USER_KEYTAB"));
    assert!(lab.keytab_works(&keytab), "the new keytab works");
    let from = kdc_log_len(&lab);
    let deadline = Instant::now() + Duration::from_secs(4 * u64::from(LIFETIME_S));
    let mut failures = Vec::new();
    loop {
        if let Err(e) = select(&b, "a").await {
            failures.push(e);
        }
        if tgts_issued(&lab, lab.user_principal(), from) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "krbouncer never got a TGT with the new keytab\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(select(&b, "a").await.as_deref(), Ok("ok"), "{}", b.log());
    assert!(failures.is_empty(), "{failures:?}\n{}", b.log());
}
