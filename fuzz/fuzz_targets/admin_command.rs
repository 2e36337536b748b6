//! Fuzzes the admin console's command parser with arbitrary query text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = krbouncer::admin::parse::parse(text);
    }
});
