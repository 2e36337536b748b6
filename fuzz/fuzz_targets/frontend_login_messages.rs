//! Fuzzes the parsers for what clients send during login ('p' messages).
#![no_main]

use krbouncer::protocol::frontend::{
    parse_password_message, parse_sasl_initial_response, parse_sasl_response,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_password_message(data);
    if let Ok(initial) = parse_sasl_initial_response(data)
        && let Some(payload) = initial.data
    {
        assert!(payload.len() <= data.len());
    }
    let _ = parse_sasl_response(data);
});
