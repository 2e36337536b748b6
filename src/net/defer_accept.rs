//! `tcp_defer_accept`: TCP_DEFER_ACCEPT on the listeners, so a connection is handed to
//! krbouncer only once the client's first bytes have arrived (PgBouncer sets 45 seconds).
//!
//! No crate has a ready binding (socket2 0.6, rustix 1.1; std's `set_deferaccept` is
//! unstable) and krbouncer forbids `unsafe`, so the option is declared with nix's own
//! `sockopt_impl!`, the macro nix provides for options it does not list: the one `setsockopt`
//! call it expands to is nix's reviewed code, not ours.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, setsockopt};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

/// Seconds the kernel waits for the first bytes before accepting anyway (PgBouncer's value).
pub const DEFER_SECONDS: usize = 45;

#[cfg(target_os = "linux")]
sockopt_impl!(
    /// `TCP_DEFER_ACCEPT` (Linux): seconds to wait for data before completing an accept.
    TcpDeferAccept,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    usize
);

/// Sets (`enabled`) or clears TCP_DEFER_ACCEPT on a listening socket. A failure is logged
/// and ignored: the listener works without it, as in PgBouncer.
pub fn apply<F: AsFd>(listener: &F, enabled: bool) {
    #[cfg(target_os = "linux")]
    {
        let seconds = if enabled { DEFER_SECONDS } else { 0 };
        if let Err(e) = setsockopt(listener, TcpDeferAccept, &seconds) {
            tracing::warn!(error = %e, "setting TCP_DEFER_ACCEPT failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, enabled);
}

/// The value the kernel holds for a listening socket (the kernel rounds the seconds up to a
/// retransmission boundary: 45 reads back as 63); `None` where the option does not exist.
pub fn current<F: AsFd>(listener: &F) -> Option<usize> {
    #[cfg(target_os = "linux")]
    return getsockopt(listener, TcpDeferAccept).ok();
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn set_and_cleared_on_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind");
        assert_eq!(current(&l), Some(0));
        apply(&l, true);
        assert!(current(&l).is_some_and(|s| s >= DEFER_SECONDS));
        apply(&l, false);
        assert_eq!(current(&l), Some(0));
    }
}
