//! Fuzzes tagged-message framing and the backend parsers the pooler runs on server traffic.
#![no_main]

use bytes::BytesMut;
use krbouncer::protocol::backend::{
    parse_backend_key_data, parse_error_fields, parse_parameter_status, parse_ready_for_query,
};
use krbouncer::protocol::framing::{max_len_for, split_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let limit = 1 << 20;
    while let Ok(Some((header, msg))) = split_message(&mut buf, limit) {
        assert_eq!(msg.len(), header.len);
        assert!(header.len <= max_len_for(header.tag, limit));
        let _ = parse_ready_for_query(&msg);
        let _ = parse_parameter_status(&msg);
        let _ = parse_backend_key_data(&msg);
        let _ = parse_error_fields(&msg);
    }
});
