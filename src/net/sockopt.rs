//! TCP socket options from `tcp_keepalive`, `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt`,
//! `tcp_user_timeout` and `tcp_socket_buffer`, applied to client and server sockets as
//! PgBouncer's `tune_socket` does (socket2, no hand-written setsockopt). A value of 0 keeps the
//! kernel's default, as in PgBouncer.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::Settings;

/// The options of one configuration snapshot; cheap to copy to every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub keepalive: bool,
    /// Seconds of idle before the first probe (`TCP_KEEPIDLE`); 0 = kernel default.
    pub keepidle: u32,
    /// Seconds between probes (`TCP_KEEPINTVL`); 0 = kernel default.
    pub keepintvl: u32,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`); 0 = default.
    pub keepcnt: u32,
    /// Milliseconds unacknowledged data may wait before the connection is dropped
    /// (`TCP_USER_TIMEOUT`); 0 = kernel default.
    pub user_timeout_ms: u32,
    /// `SO_SNDBUF` and `SO_RCVBUF` in bytes; 0 = kernel default.
    pub socket_buffer: u32,
}

fn non_negative(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl TcpOptions {
    pub(crate) fn from_settings(s: &Settings) -> TcpOptions {
        TcpOptions {
            keepalive: s.tcp_keepalive,
            keepidle: non_negative(s.tcp_keepidle.into()),
            keepintvl: non_negative(s.tcp_keepintvl.into()),
            keepcnt: non_negative(s.tcp_keepcnt.into()),
            user_timeout_ms: non_negative(s.tcp_user_timeout.into()),
            socket_buffer: non_negative(s.tcp_socket_buffer.into()),
        }
    }

    /// Sets the options on a connected socket. A failure is logged and ignored: the
    /// connection still works without them, as in PgBouncer.
    pub(crate) fn apply(&self, stream: &TcpStream) {
        if let Err(e) = self.try_apply(stream) {
            tracing::warn!(error = %e, "setting TCP socket options failed");
        }
    }

    fn try_apply(&self, stream: &TcpStream) -> std::io::Result<()> {
        let sock = SockRef::from(stream);
        sock.set_keepalive(self.keepalive)?;
        if self.keepalive {
            let mut ka = TcpKeepalive::new();
            let mut tuned = false;
            if self.keepidle > 0 {
                ka = ka.with_time(Duration::from_secs(self.keepidle.into()));
                tuned = true;
            }
            if self.keepintvl > 0 {
                ka = ka.with_interval(Duration::from_secs(self.keepintvl.into()));
                tuned = true;
            }
            if self.keepcnt > 0 {
                ka = ka.with_retries(self.keepcnt);
                tuned = true;
            }
            if tuned {
                sock.set_tcp_keepalive(&ka)?;
            }
        }
        if self.user_timeout_ms > 0 {
            sock.set_tcp_user_timeout(Some(Duration::from_millis(self.user_timeout_ms.into())))?;
        }
        if self.socket_buffer > 0 {
            let size = self.socket_buffer as usize;
            sock.set_send_buffer_size(size)?;
            sock.set_recv_buffer_size(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn options_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let opts = TcpOptions {
            keepalive: true,
            keepidle: 17,
            keepintvl: 3,
            keepcnt: 4,
            user_timeout_ms: 2500,
            socket_buffer: 65536,
        };
        opts.try_apply(&client).expect("options apply");
        let sock = SockRef::from(&client);
        assert!(sock.keepalive().expect("keepalive"));
        assert_eq!(
            sock.tcp_keepalive_time().expect("idle"),
            Duration::from_secs(17)
        );
        assert_eq!(
            sock.tcp_keepalive_interval().expect("intvl"),
            Duration::from_secs(3)
        );
        assert_eq!(sock.tcp_keepalive_retries().expect("cnt"), 4);
        assert_eq!(
            sock.tcp_user_timeout().expect("user timeout"),
            Some(Duration::from_millis(2500))
        );
        // Linux doubles the requested size for bookkeeping
        assert!(sock.send_buffer_size().expect("sndbuf") >= 65536);
    }

    #[tokio::test]
    async fn keepalive_off_is_applied_too() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        SockRef::from(&client).set_keepalive(true).expect("on");
        TcpOptions::default().try_apply(&client).expect("apply");
        assert!(!SockRef::from(&client).keepalive().expect("keepalive"));
    }
}
