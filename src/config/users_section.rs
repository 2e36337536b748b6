//! `[users]` entries (`parse_user`: per-user pool mode, sizes, limits and timeouts) and
//! `[peers]` entries (`parse_peer`: where to forward cancel requests; parsed and stored only).

use std::time::Duration;

use super::connstr::{opt_secs, parse_pool_mode, parse_port, split_pairs};
use super::enums::PoolMode;
use super::error::ConfigErrorKind;
use super::values::atoi;

/// One `[users]` entry. `None` = inherit from the database or the global setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDef {
    pub name: String,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<i32>,
    pub reserve_pool_size: Option<i32>,
    pub max_user_connections: Option<i32>,
    pub max_user_client_connections: Option<i32>,
    /// The timeouts are integer seconds. For these four, 0 means "not set" (PgBouncer cannot
    /// tell 0 from unset) and the global value applies.
    pub query_timeout: Option<Duration>,
    pub idle_transaction_timeout: Option<Duration>,
    pub transaction_timeout: Option<Duration>,
    pub client_idle_timeout: Option<Duration>,
    /// -1 / unset = database or global; 0 disables.
    pub query_wait_timeout: Option<Duration>,
}

fn opt_count(value: &str) -> Option<i32> {
    let n = atoi(value);
    if n < 0 {
        None
    } else {
        Some(n.min(i32::MAX as i64) as i32)
    }
}

impl UserDef {
    pub fn parse(name: &str, connstr: &str) -> Result<UserDef, ConfigErrorKind> {
        let pairs = split_pairs(connstr).ok_or(ConfigErrorKind::UserSettingsSyntax)?;
        let mut user = UserDef {
            name: name.to_string(),
            ..Default::default()
        };
        for (key, val) in pairs {
            let nonzero_secs = || opt_secs(&val).filter(|d| !d.is_zero());
            match key.as_str() {
                "pool_mode" => user.pool_mode = Some(parse_pool_mode(&val)?),
                "pool_size" => user.pool_size = opt_count(&val),
                "reserve_pool_size" | "reserve_pool" => user.reserve_pool_size = opt_count(&val),
                "max_user_connections" => user.max_user_connections = opt_count(&val),
                "max_user_client_connections" => user.max_user_client_connections = opt_count(&val),
                "query_timeout" => user.query_timeout = nonzero_secs(),
                "idle_transaction_timeout" => user.idle_transaction_timeout = nonzero_secs(),
                "transaction_timeout" => user.transaction_timeout = nonzero_secs(),
                "client_idle_timeout" => user.client_idle_timeout = nonzero_secs(),
                "query_wait_timeout" => user.query_wait_timeout = opt_secs(&val),
                _ => return Err(ConfigErrorKind::UnknownUserParam(key)),
            }
        }
        Ok(user)
    }
}

/// One `[peers]` entry: another krbouncer/PgBouncer process of the same peer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDef {
    pub peer_id: u32,
    pub host: String,
    /// Default 6432.
    pub port: u16,
    /// Max cancel requests in flight to this peer; `None` = `default_pool_size`.
    pub pool_size: Option<i32>,
}

impl PeerDef {
    pub fn parse(id: &str, connstr: &str) -> Result<PeerDef, ConfigErrorKind> {
        // PgBouncer: strtonum(name, 1, 0xFFFF)
        let peer_id = match id.trim().parse::<u32>() {
            Ok(n) if (1..=0xFFFF).contains(&n) => n,
            _ => return Err(ConfigErrorKind::InvalidPeerId(id.to_string())),
        };
        let pairs = split_pairs(connstr).ok_or(ConfigErrorKind::ConnstrSyntax)?;
        let (mut host, mut port, mut pool_size) = (None, 6432, None);
        for (key, val) in pairs {
            match key.as_str() {
                "host" => host = Some(val),
                "port" => port = parse_port(&val)?,
                "pool_size" => pool_size = opt_count(&val),
                _ => return Err(ConfigErrorKind::UnknownConnParam(key)),
            }
        }
        let host = host.ok_or(ConfigErrorKind::PeerWithoutHost(peer_id))?;
        Ok(PeerDef {
            peer_id,
            host,
            port,
            pool_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_entries() {
        let u = UserDef::parse(
            "app",
            "pool_mode=statement pool_size=3 reserve_pool_size=1 max_user_connections=9 \
             max_user_client_connections=50 query_timeout=30 idle_transaction_timeout=0 \
             transaction_timeout=5 client_idle_timeout=60 query_wait_timeout=0",
        )
        .expect("parses");
        assert_eq!(u.pool_mode, Some(PoolMode::Statement));
        assert_eq!((u.pool_size, u.reserve_pool_size), (Some(3), Some(1)));
        assert_eq!(
            (u.max_user_connections, u.max_user_client_connections),
            (Some(9), Some(50))
        );
        assert_eq!(u.query_timeout, Some(Duration::from_secs(30)));
        assert_eq!(u.idle_transaction_timeout, None);
        assert_eq!(u.transaction_timeout, Some(Duration::from_secs(5)));
        assert_eq!(u.client_idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(u.query_wait_timeout, Some(Duration::ZERO));
        assert_eq!(
            UserDef::parse("x", "pool_sise=1")
                .expect_err("unknown")
                .to_string(),
            "unrecognized user parameter: pool_sise"
        );
        assert_eq!(
            UserDef::parse("x", "pool_mode=")
                .expect_err("syntax")
                .to_string(),
            "syntax error in user settings"
        );
        assert_eq!(
            UserDef::parse("x", "pool_mode=x")
                .expect_err("mode")
                .to_string(),
            "invalid pool mode: x"
        );
    }

    #[test]
    fn peer_entries() {
        let p = PeerDef::parse("1", "host=/tmp/pgb2 port=5555 pool_size=4").expect("parses");
        assert_eq!(
            p,
            PeerDef {
                peer_id: 1,
                host: "/tmp/pgb2".into(),
                port: 5555,
                pool_size: Some(4)
            }
        );
        assert_eq!(PeerDef::parse("2", "host=h").expect("parses").port, 6432);
        assert!(PeerDef::parse("0", "host=h").is_err());
        assert!(PeerDef::parse("70000", "host=h").is_err());
        assert_eq!(
            PeerDef::parse("3", "port=1")
                .expect_err("no host")
                .to_string(),
            "host was not provided for peer 3"
        );
        assert_eq!(
            PeerDef::parse("3", "host=h user=x")
                .expect_err("bad key")
                .to_string(),
            "unrecognized connection parameter: user"
        );
    }
}
