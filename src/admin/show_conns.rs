//! SHOW CLIENTS, SERVERS and SOCKETS / ACTIVE_SOCKETS: one row per connection, with
//! PgBouncer 1.25's columns (`src/admin.c` `show_socket_list`).

use bytes::BytesMut;

use crate::pool::clients::{ClientEntry, ClientState};
use crate::pool::{Pool, ServerEntry, ServerState};
use crate::protocol::result_set::ColType;
use crate::shared::Shared;

use ColType::{Int4 as I, Text as S, Time as T};

use super::table::{Rows, format_time_us, s, table};

const SOCKET_COLS: [(&str, ColType); 21] = [
    ("type", S),
    ("user", S),
    ("database", S),
    ("replication", S),
    ("state", S),
    ("addr", S),
    ("port", I),
    ("local_addr", S),
    ("local_port", I),
    ("connect_time", T),
    ("request_time", T),
    ("wait", I),
    ("wait_us", I),
    ("close_needed", I),
    ("ptr", S),
    ("link", S),
    ("remote_pid", I),
    ("tls", S),
    ("application_name", S),
    ("prepared_statements", I),
    ("id", I),
];

const DEBUG_COLS: [&str; 7] = [
    "recv_pos",
    "pkt_pos",
    "pkt_remain",
    "send_pos",
    "send_remain",
    "pkt_avail",
    "send_avail",
];

fn client_ptr(id: u64) -> String {
    format!("0xc{id:07x}")
}

fn server_ptr(id: u64) -> String {
    format!("0x5{id:07x}")
}

fn client_row(c: &ClientEntry, state_prefix: &str) -> Vec<Option<String>> {
    let state = c.state();
    let shown = if state == ClientState::Active && c.link() == 0 && state_prefix.is_empty() {
        "idle"
    } else {
        state.show_name()
    };
    let wait = c.waiting_for_us();
    let link = c.link();
    vec![
        s("C"),
        s(&c.user),
        s(&c.database),
        s("none"),
        s(format!("{state_prefix}{shown}")),
        s(&c.addrs.addr),
        s(c.addrs.port),
        s(&c.addrs.local_addr),
        s(c.addrs.local_port),
        s(format_time_us(crate::pool::state::now_us(c.connect_time))),
        s(format_time_us(c.request_time_us())),
        s(wait / 1_000_000),
        s(wait % 1_000_000),
        s(0),
        s(client_ptr(c.id)),
        s(if link == 0 {
            String::new()
        } else {
            server_ptr(link)
        }),
        s(0),
        s(&c.addrs.tls),
        s(&c.application_name),
        s(0),
        s(c.id),
    ]
}

fn server_row(pool: &Pool, e: &ServerEntry, state_prefix: &str) -> Vec<Option<String>> {
    let link = e.link();
    let state = if state_prefix.is_empty() {
        e.state().show_name().to_string()
    } else if e.state() == ServerState::Login {
        format!("{state_prefix}login")
    } else {
        format!("{state_prefix}{}", e.state().show_name())
    };
    vec![
        s("S"),
        s(&pool.login_user),
        s(&pool.db_name),
        s("none"),
        s(state),
        s(&e.addr),
        s(e.port),
        s(&e.local_addr),
        s(e.local_port),
        s(format_time_us(crate::pool::state::now_us(e.connect_time))),
        s(format_time_us(e.request_time_us())),
        s(0),
        s(0),
        s(i32::from(e.close_needed())),
        s(server_ptr(e.id)),
        s(if link == 0 {
            String::new()
        } else {
            client_ptr(link)
        }),
        s(e.remote_pid),
        s(e.tls),
        s(""),
        s(0),
        s(e.id),
    ]
}

pub fn clients(app: &Shared, buf: &mut BytesMut) {
    let rows: Rows = app
        .client_registry
        .snapshot()
        .iter()
        .map(|c| client_row(c, ""))
        .collect();
    table(buf, &SOCKET_COLS, &rows);
}

pub fn servers(app: &Shared, buf: &mut BytesMut) {
    let mut rows = Rows::new();
    for pool in app.pools.all_sorted() {
        for e in pool.servers.snapshot() {
            rows.push(server_row(&pool, &e, ""));
        }
    }
    table(buf, &SOCKET_COLS, &rows);
}

/// SHOW SOCKETS / ACTIVE_SOCKETS: every socket with `cl_`/`sv_` states and the buffer columns
/// (krbouncer's buffers live in the relay, so those are 0).
pub fn sockets(app: &Shared, buf: &mut BytesMut) {
    let mut cols: Vec<(&str, ColType)> = SOCKET_COLS.to_vec();
    cols.extend(DEBUG_COLS.iter().map(|n| (*n, I)));
    let pad = |mut r: Vec<Option<String>>| {
        r.extend(DEBUG_COLS.iter().map(|_| s(0)));
        r
    };
    let mut rows = Rows::new();
    for c in app.client_registry.snapshot() {
        rows.push(pad(client_row(&c, "cl_")));
    }
    for pool in app.pools.all_sorted() {
        for e in pool.servers.snapshot() {
            rows.push(pad(server_row(&pool, &e, "sv_")));
        }
    }
    table(buf, &cols, &rows);
}
