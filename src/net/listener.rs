//! The accept side: TCP on `listen_addr:listen_port` and the unix socket
//! `unix_socket_dir/.s.PGSQL.<port>`, each accepted connection handed to a client task.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::config::Settings;
use crate::net::stream::ClientStream;
use crate::shutdown::ShutdownMode;

/// Starts the task serving one accepted connection (its peer address as SHOW CLIENTS shows
/// it). The listener knows nothing of what a client task does: the composition root says.
pub type SpawnClient = Arc<dyn Fn(ClientStream, String) + Send + Sync>;

/// Bound sockets, before serving. Binding first lets startup fail before anything runs.
pub struct Listeners {
    tcp: Vec<TcpListener>,
    unix: Option<(UnixListener, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not listen on {what}: {source}")]
pub struct ListenError {
    what: String,
    source: std::io::Error,
}

/// Binds every configured address. `*` means all IPv4 and IPv6 addresses.
pub async fn bind(settings: &Settings) -> Result<Listeners, ListenError> {
    let port = u16::try_from(settings.listen_port).map_err(|_| ListenError {
        what: format!("port {}", settings.listen_port),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // the unix socket first: once TCP accepts, every socket is ready (tests and probes
    // poll TCP)
    let unix = if settings.unix_socket_dir.is_empty() {
        None
    } else {
        let path = PathBuf::from(&settings.unix_socket_dir).join(format!(".s.PGSQL.{port}"));
        let err = |e| ListenError {
            what: path.display().to_string(),
            source: e,
        };
        if path.exists() {
            // a stale socket from an earlier run; refuse if something still answers on it
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "socket is in use",
                )));
            }
            std::fs::remove_file(&path).map_err(err)?;
        }
        let l = UnixListener::bind(&path).map_err(err)?;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(settings.unix_socket_mode as u32),
        )
        .map_err(err)?;
        Some((l, path))
    };
    let tcp = match bind_tcp(settings, port).await {
        Ok(t) => t,
        Err(e) => {
            if let Some((_, path)) = &unix {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    Ok(Listeners { tcp, unix })
}

/// Binds every `listen_addr` on `port`.
async fn bind_tcp(settings: &Settings, port: u16) -> Result<Vec<TcpListener>, ListenError> {
    let mut tcp = Vec::new();
    for addr in settings.listen_addrs() {
        let addr = addr.as_str();
        if addr == "*" {
            // IPv6 first: on Linux it is dual-stack, and then the IPv4 bind may fail; fine.
            let v6 = bind_one(settings, ("::", port)).await;
            let v4 = bind_one(settings, ("0.0.0.0", port)).await;
            match (v6, v4) {
                (Err(e), Err(_)) => {
                    return Err(ListenError {
                        what: format!("*:{port}"),
                        source: e,
                    });
                }
                (a, b) => tcp.extend(a.into_iter().chain(b)),
            }
        } else {
            let l = bind_one(settings, (addr, port))
                .await
                .map_err(|e| ListenError {
                    what: format!("{addr}:{port}"),
                    source: e,
                })?;
            tcp.push(l);
        }
    }
    Ok(tcp)
}

/// Binds one TCP listener with PgBouncer's socket options: `SO_REUSEADDR` always,
/// `SO_REUSEPORT` with `so_reuseport = 1` (several processes share the port and the kernel
/// spreads connections over them), and `listen_backlog`. Names resolving to several addresses
/// bind the first that works, like `TcpListener::bind`.
async fn bind_one(settings: &Settings, addr: (&str, u16)) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Ok(size @ 1..) = u32::try_from(settings.tcp_socket_buffer) {
            // before listen: accepted sockets inherit it, and their window scale is chosen
            // from it at the handshake (set later, a big COPY IN could stall)
            socket.set_send_buffer_size(size)?;
            socket.set_recv_buffer_size(size)?;
        }
        if settings.so_reuseport {
            socket.set_reuseport(true)?;
        }
        let backlog = u32::try_from(settings.listen_backlog.max(1)).unwrap_or(128);
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(l) => {
                crate::net::defer_accept::apply(&l, settings.tcp_defer_accept);
                return Ok(l);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrNotAvailable.into()))
}

impl Listeners {
    /// Accepts until shutdown starts (`stop` leaves `Running`), handing every connection to
    /// `spawn`; then removes the unix socket file.
    pub async fn serve(self, stop: watch::Receiver<ShutdownMode>, spawn: SpawnClient) {
        let mut tasks = Vec::new();
        for l in self.tcp {
            let spawn = spawn.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = l.accept() => match r {
                            Ok((s, peer)) => {
                                let _ = s.set_nodelay(true);
                                spawn(ClientStream::Tcp(s), peer.to_string());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        let socket_path = self.unix.as_ref().map(|(_, p)| p.clone());
        if let Some((l, _)) = self.unix {
            let spawn = spawn.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = l.accept() => match r {
                            Ok((s, _)) => {
                                spawn(ClientStream::Unix(s), "unix".to_string());
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        },
                        // as PgBouncer 1.25 (#1305): during shutdown the unix socket still
                        // accepts admin console logins (others get "server shutting down")
                        r = stop.changed() => if r.is_err()
                            || *stop.borrow() == ShutdownMode::Immediate
                        {
                            return;
                        },
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Some(p) = socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bound(defer: bool) -> Listeners {
        let settings = Settings {
            listen_addr: "127.0.0.1".into(),
            listen_port: 0,
            unix_socket_dir: String::new(),
            tcp_defer_accept: defer,
            ..Settings::default()
        };
        bind(&settings).await.expect("loopback listener")
    }

    #[tokio::test]
    #[cfg(target_os = "linux")]
    async fn tcp_defer_accept_follows_the_setting() {
        let on = bound(true).await;
        let seconds = crate::net::defer_accept::current(&on.tcp[0]);
        assert!(seconds.is_some_and(|s| s >= crate::net::defer_accept::DEFER_SECONDS));
        let off = bound(false).await;
        assert_eq!(crate::net::defer_accept::current(&off.tcp[0]), Some(0));
    }
}
