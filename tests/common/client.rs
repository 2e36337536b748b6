//! Short tokio-postgres helpers shared by the core tests: log in, run one query, report errors
//! as text with their SQLSTATE.

use super::bouncer::{Bouncer, connect_conninfo, error_text};

/// A login or query failure: primary message and SQLSTATE ("" when not a server error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub sqlstate: String,
}

impl Failure {
    pub fn from_pg(e: &tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            Some(db) => Failure {
                message: db.message().to_string(),
                sqlstate: db.code().code().to_string(),
            },
            None => Failure {
                message: error_text(e),
                sqlstate: String::new(),
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.sqlstate)
    }
}

/// Logs in over TCP and returns the first column of the first row of `sql` (simple protocol).
pub async fn query_one(
    b: &Bouncer,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, Failure> {
    query_one_conninfo(&b.conninfo(user, password, db), sql).await
}

/// Like [`query_one`] on any conninfo.
pub async fn query_one_conninfo(conninfo: &str, sql: &str) -> Result<String, Failure> {
    let (client, task) = connect_conninfo(conninfo)
        .await
        .map_err(|e| Failure::from_pg(&e))?;
    let result = first_value(&client, sql).await;
    drop(client);
    let _ = task.await;
    result
}

/// First column of the first row of a simple-protocol query, as text.
pub async fn first_value(client: &tokio_postgres::Client, sql: &str) -> Result<String, Failure> {
    let msgs = client
        .simple_query(sql)
        .await
        .map_err(|e| Failure::from_pg(&e))?;
    for m in msgs {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).unwrap_or("").to_string());
        }
    }
    Err(Failure {
        message: format!("no rows from {sql}"),
        sqlstate: String::new(),
    })
}

/// `SELECT current_user` through the bouncer.
pub async fn current_user(
    b: &Bouncer,
    user: &str,
    password: &str,
    db: &str,
) -> Result<String, Failure> {
    query_one(b, user, password, db, "SELECT current_user").await
}

/// Asserts that a login succeeds as `user` and lands on the server as `expect_role`.
pub async fn assert_login_as(b: &Bouncer, user: &str, password: &str, db: &str, expect_role: &str) {
    match current_user(b, user, password, db).await {
        Ok(role) => assert_eq!(role, expect_role, "{user}@{db}"),
        Err(f) => panic!("{user}@{db} login failed: {f}\n--- log ---\n{}", b.log()),
    }
}

/// Asserts that a login fails and returns the failure.
pub async fn assert_login_fails(b: &Bouncer, user: &str, password: &str, db: &str) -> Failure {
    match current_user(b, user, password, db).await {
        Ok(role) => panic!("{user}@{db} logged in (as {role}) but should have failed"),
        Err(f) => f,
    }
}

/// SQLSTATE of a failed client password check. PgBouncer 1.25 sends its pooler errors with
/// 08P01 (`disconnect_client` passes no SQLSTATE), and krbouncer copies it; PostgreSQL itself
/// would say 28P01. Flip this one constant if krbouncer ever switches to PostgreSQL's code.
pub const AUTH_FAILED_SQLSTATE: &str = "08P01";

/// Asserts the error a client gets for a wrong password, an unknown user (mock auth) or an
/// unusable secret: PgBouncer's "password authentication failed" (cleartext/md5) or
/// "SASL authentication failed" (SCRAM), as PgBouncer's own test suite matches them.
pub fn assert_auth_failed(f: &Failure, context: &str) {
    assert!(
        f.message.starts_with("password authentication failed")
            || f.message.starts_with("SASL authentication failed"),
        "{context}: expected a password authentication failure, got {f}"
    );
    assert_eq!(f.sqlstate, AUTH_FAILED_SQLSTATE, "{context}: {f}");
}
