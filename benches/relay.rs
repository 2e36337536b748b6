//! The relay's hot path on in-memory streams: one transaction-mode round trip (a Query in, a
//! result set out, released at ReadyForQuery) with small rows and with 1 MiB rows. Criterion
//! reports bytes per second; allocations per relayed message are counted with a wrapping
//! allocator and printed once per case. The rig keeps what a session and its server keep
//! between links (buffers and queues), so a warm round trip allocates nothing.
//!
//! Run: `cargo bench --bench relay` (add `-- --quick` for a short run).
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::alloc::System;
use std::collections::VecDeque;
use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use krbouncer::client::link::watch::LinkWatcher;
use krbouncer::config::PoolMode;
use krbouncer::net::relay::{Dir, Pump, RelayEnd, relay};
use krbouncer::server::params::ParamSet;
use krbouncer::server::requests::RequestQueue;
use krbouncer::stats::PoolStats;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn message(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_u32(body.len() as u32 + 4);
    buf.put_slice(body);
}

/// RowDescription-less result: `rows` DataRows of one `row_size`-byte column, then
/// CommandComplete and ReadyForQuery('I').
fn response(rows: usize, row_size: usize) -> BytesMut {
    let mut out = BytesMut::new();
    let mut row = Vec::with_capacity(row_size + 6);
    row.extend_from_slice(&1u16.to_be_bytes());
    row.extend_from_slice(&(row_size as u32).to_be_bytes());
    row.resize(row_size + 6, b'x');
    for _ in 0..rows {
        message(&mut out, b'D', &row);
    }
    message(&mut out, b'C', b"SELECT 1\0");
    message(&mut out, b'Z', b"I");
    out
}

struct Rig {
    /// Our ends: the relay's client and server sides.
    client: DuplexStream,
    server: DuplexStream,
    /// The far ends: what the "application" and the "database" hold.
    app: DuplexStream,
    db: DuplexStream,
    query: BytesMut,
    response: BytesMut,
    sink: Vec<u8>,
    /// What a session and its server keep between links, as `Session::forward` does: the
    /// read buffers, the output queues and the request queue (for their capacity).
    client_rbuf: BytesMut,
    server_rbuf: BytesMut,
    out_queues: [VecDeque<Bytes>; 2],
    requests: RequestQueue,
    server_params: ParamSet,
    client_params: ParamSet,
    tracked: Vec<String>,
    stats: PoolStats,
}

impl Rig {
    fn new(rows: usize, row_size: usize) -> Rig {
        let cap = 8 * rows * (row_size + 16) + (1 << 16);
        let (client, app) = tokio::io::duplex(cap);
        let (server, db) = tokio::io::duplex(cap);
        let mut query = BytesMut::new();
        message(&mut query, b'Q', b"SELECT x FROM t\0");
        Rig {
            client,
            server,
            app,
            db,
            query,
            response: response(rows, row_size),
            sink: vec![0; cap],
            client_rbuf: BytesMut::new(),
            server_rbuf: BytesMut::new(),
            out_queues: Default::default(),
            requests: RequestQueue::default(),
            server_params: ParamSet::new(),
            client_params: ParamSet::new(),
            tracked: Vec::new(),
            stats: PoolStats::default(),
        }
    }

    /// One round trip through the relay (a link, as in transaction pooling); returns the
    /// bytes delivered to the application.
    async fn round_trip(&mut self) -> usize {
        self.app.write_all(&self.query).await.expect("duplex");
        self.db.write_all(&self.response).await.expect("duplex");
        let mut w = LinkWatcher::new(
            PoolMode::Transaction,
            &mut self.requests,
            &mut self.server_params,
            &mut self.client_params,
            &self.tracked,
            None,
            &self.stats,
        );
        let [to_server, to_client] = std::mem::take(&mut self.out_queues);
        let mut c2s = Pump::new(Dir::ToServer, usize::MAX >> 1)
            .with_pending(std::mem::take(&mut self.client_rbuf))
            .with_out_queue(to_server);
        let mut s2c = Pump::new(Dir::ToClient, usize::MAX >> 1)
            .with_pending(std::mem::take(&mut self.server_rbuf))
            .with_out_queue(to_client);
        let end = relay(
            &mut self.client,
            &mut self.server,
            &mut c2s,
            &mut s2c,
            &mut w,
        )
        .await;
        assert!(matches!(end, RelayEnd::ServerStop), "{end:?}");
        drop(w);
        self.client_rbuf = c2s.take_unread();
        self.server_rbuf = s2c.take_unread();
        self.out_queues = [c2s.take_out_queue(), s2c.take_out_queue()];
        let mut got = 0;
        while got < self.response.len() {
            got += self.app.read(&mut self.sink[got..]).await.expect("duplex");
        }
        let mut q = [0u8; 64];
        let _ = self.db.read(&mut q).await.expect("duplex");
        got
    }
}

fn bench_case(c: &mut Criterion, name: &str, rows: usize, row_size: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rig = Rig::new(rows, row_size);
    // warm up (buffers and queues reach their size), then count one round trip's allocations
    rt.block_on(rig.round_trip());
    rt.block_on(rig.round_trip());
    let region = Region::new(GLOBAL);
    let bytes = rt.block_on(rig.round_trip());
    let allocs = region.change().allocations;
    let messages = rows + 3; // Query, DataRows, CommandComplete, ReadyForQuery
    eprintln!(
        "{name}: {bytes} bytes, {messages} messages, {allocs} allocations per round trip ({:.3} per message)",
        allocs as f64 / messages as f64
    );
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(name, |b| {
        b.iter(|| black_box(rt.block_on(rig.round_trip())));
    });
    group.finish();
}

fn relay_benches(c: &mut Criterion) {
    bench_case(c, "small_rows_1000x32B", 1000, 32);
    bench_case(c, "large_rows_8x1MiB", 8, 1 << 20);
}

criterion_group!(benches, relay_benches);
criterion_main!(benches);
