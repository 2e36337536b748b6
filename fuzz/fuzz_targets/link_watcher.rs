//! Fuzzes what the relay's watcher reads on a linked client in transaction pooling with
//! prepared statements: arbitrary client and server messages, interleaved, must never panic
//! (Parse/Bind/Describe/Close rewriting, the request queue, COPY and error handling).
#![no_main]

use krbouncer::client::link::prepared::ClientStatements;
use krbouncer::server::statements::{ServerStatements, StatementRegistry};
use krbouncer::client::link::watch::{LinkWatcher, PreparedLink};
use krbouncer::config::PoolMode;
use krbouncer::net::relay::{Dir, Watcher};
use krbouncer::protocol::framing::peek_header;
use krbouncer::server::params::ParamSet;
use krbouncer::server::requests::RequestQueue;
use krbouncer::stats::PoolStats;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let registry = StatementRegistry::default();
    let mut client = ClientStatements::default();
    let mut server = ServerStatements::default();
    let stats = PoolStats::default();
    let (mut sp, mut cp) = (ParamSet::new(), ParamSet::new());
    let tracked = vec!["TimeZone".to_string()];
    let prepared = PreparedLink {
        registry: &registry,
        client: &mut client,
        server: &mut server,
        capacity: 3,
    };
    let mut queue = RequestQueue::default();
    let mut w = LinkWatcher::new(
        PoolMode::Transaction,
        &mut queue,
        &mut sp,
        &mut cp,
        &tracked,
        Some(prepared),
        &stats,
    );
    let mut inject = Vec::new();
    let mut rest = data;
    // each frame: one direction byte, then a message
    while let Some((&dir_byte, tail)) = rest.split_first() {
        let dir = if dir_byte & 1 == 0 { Dir::ToServer } else { Dir::ToClient };
        let Ok(Some(h)) = peek_header(tail, 1 << 16) else { return };
        if tail.len() < h.len {
            return;
        }
        let msg = &tail[..h.len];
        if w.wants_whole(dir, h.tag) {
            let _ = w.on_message(dir, h.tag, msg, &mut inject);
        } else {
            w.on_tag(dir, h.tag, &mut inject);
        }
        w.take_unsolicited(Dir::ToClient, &mut inject);
        inject.clear();
        rest = &tail[h.len..];
    }
});
