//! Free loopback TCP ports for fixtures, without handing the same port out twice in one process.
//!
//! Ports come from 20000-31999, below Linux's ephemeral range (32768-60999), so an outgoing
//! connection of some other test cannot grab a port between our pick and the server's bind.
//! A port is only handed out if binding 127.0.0.1 on it succeeds right now; the remaining
//! pick-then-bind race with other processes is covered by fixtures retrying on "address in use".

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

use rand::Rng;

const FIRST: u16 = 20000;
const LAST: u16 = 31999;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that is free now and was never returned before by this process.
pub fn free_port() -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..2000 {
        let port = rng.gen_range(FIRST..=LAST);
        let mut taken = handed_out()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}-{LAST} after 2000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_unique_and_bindable() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        assert!(TcpListener::bind(("127.0.0.1", a)).is_ok());
    }
}
