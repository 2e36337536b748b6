//! Fuzzes the first-packet parser: never panics, never consumes on Ok(None), and consumes
//! exactly the announced length on success.
#![no_main]

use bytes::BytesMut;
use krbouncer::protocol::startup::parse_startup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let before = buf.len();
    match parse_startup(&mut buf) {
        Ok(None) => assert_eq!(buf.len(), before),
        Ok(Some(_)) => {
            let announced = i32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            assert_eq!(before - buf.len(), announced);
        }
        Err(_) => {}
    }
});
