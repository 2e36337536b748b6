//! A round-robin TCP forwarder on a free loopback port, standing in for a Kubernetes Service
//! or TCP load balancer in front of several pooler replicas: each accepted connection goes to
//! the next backend in turn, bytes are copied both ways until either side closes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use super::ports::free_port;

pub struct Forwarder {
    port: u16,
    next: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Starts forwarding to `backends` (loopback ports), first connection to `backends[0]`.
    pub fn start(backends: Vec<u16>) -> Forwarder {
        let port = free_port();
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => panic!("forwarder bind 127.0.0.1:{port}: {e}"),
        };
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, a, s) = (next.clone(), accepted.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = conn else { continue };
                a.fetch_add(1, Ordering::AcqRel);
                let backend = backends[n.fetch_add(1, Ordering::AcqRel) % backends.len()];
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Forwarder {
            port,
            next,
            accepted,
            stop,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends the next connection to backend `i` (then round robin from there).
    pub fn set_next(&self, i: usize) {
        self.next.store(i, Ordering::Release);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

/// Copies `from` -> `to` on a thread; at EOF or error half-closes `to`.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // wake the accept loop so it sees the flag
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
