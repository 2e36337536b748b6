//! A CancelRequest that arrived on a new connection: handled here when the key is one of our
//! clients', forwarded to the peer that issued it otherwise (`peer_id`, `[peers]`).

use crate::config::Config;
use crate::pool::cancel::CancelRegistry;
use crate::pool::peers::{CancelRoute, ForwardError, PeerCancels, own_peer_id, route};

/// Routes one cancel. Nothing is answered either way: a CancelRequest gets no reply, the
/// connection just closes (PostgreSQL's behaviour); failures are logged.
pub async fn handle(
    cancels: &CancelRegistry,
    peers: &PeerCancels,
    config: &Config,
    pid: i32,
    key: &[u8],
) {
    let settings = &config.settings;
    let Ok(secret) = <[u8; 4]>::try_from(key) else {
        tracing::debug!("cancel request with a key that is not 4 bytes, dropped");
        return;
    };
    let forwarded = match route(own_peer_id(settings), pid, secret) {
        CancelRoute::Local { pid, secret } => {
            cancels
                .cancel(pid, &secret, settings.server_connect_timeout)
                .await;
            return;
        }
        CancelRoute::TtlExhausted => Err(ForwardError::TtlExhausted),
        CancelRoute::Peer {
            peer_id,
            pid,
            secret,
        } => match config.peers.get(&u32::from(peer_id)) {
            None => Err(ForwardError::UnknownPeer),
            Some(peer) => {
                tracing::debug!("forwarding cancellation request to peer {peer_id}");
                peers
                    .forward(
                        peer,
                        settings.default_pool_size,
                        pid,
                        secret,
                        settings.cancel_wait_timeout,
                        settings.server_connect_timeout,
                    )
                    .await
            }
        },
    };
    if let Err(e) = forwarded {
        tracing::info!("closing because: {e}");
    }
}
