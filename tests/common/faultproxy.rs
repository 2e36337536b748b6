//! A loopback TCP fault proxy between krbouncer and PostgreSQL: it passes bytes through, or
//! delays them, or stalls (holds every byte, sockets stay open: a server that stopped
//! answering, or, seen from the pooler, a black hole that never sends a FIN), or cuts every
//! connection at once (a crash or a reset).
//!
//! Kernel-level loss (a peer whose kernel stops acknowledging) cannot be made in user space:
//! the proxy's own kernel keeps acknowledging, so `tcp_user_timeout` and keepalives never fire
//! through it; they are checked on the sockets themselves (`tests/tcp_options.rs`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::ports::free_port;

const PASS: u8 = 0;
const DELAY: u8 = 1;
const STALL: u8 = 2;

struct Shared {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    stop: AtomicBool,
    /// Bumped by every cut, so pipes held by a stall notice they were cut.
    cuts: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts proxying a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> FaultProxy {
        let port = free_port();
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => panic!("fault proxy bind 127.0.0.1:{port}: {e}"),
        };
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(PASS),
            delay_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    sh.lock_conns().extend([c, s]);
                }
                pipe(&client, &server, sh.clone());
                pipe(&server, &client, sh.clone());
            }
        });
        FaultProxy { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes flow freely again (held bytes are delivered).
    pub fn pass(&self) {
        self.shared.mode.store(PASS, Ordering::Release);
    }

    /// Every chunk waits `d` before it is passed on.
    pub fn delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::Release);
        self.shared.mode.store(DELAY, Ordering::Release);
    }

    /// Nothing is passed on and nothing is closed, until [`FaultProxy::pass`] or a cut.
    pub fn stall(&self) {
        self.shared.mode.store(STALL, Ordering::Release);
    }

    /// Resets every connection made so far; new ones are still accepted.
    pub fn cut(&self) {
        self.shared.cuts.fetch_add(1, Ordering::AcqRel);
        for s in self.shared.lock_conns().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    fn lock_conns(&self) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn pipe(from: &TcpStream, to: &TcpStream, sh: Arc<Shared>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let generation = sh.cuts.load(Ordering::Acquire);
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // hold the chunk while stalled; a cut (or the proxy's end) shuts `to` down
            loop {
                match sh.mode.load(Ordering::Acquire) {
                    STALL
                        if !sh.stop.load(Ordering::Acquire)
                            && sh.cuts.load(Ordering::Acquire) == generation =>
                    {
                        thread::sleep(Duration::from_millis(10))
                    }
                    DELAY => {
                        thread::sleep(Duration::from_millis(sh.delay_ms.load(Ordering::Acquire)));
                        break;
                    }
                    _ => break,
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
