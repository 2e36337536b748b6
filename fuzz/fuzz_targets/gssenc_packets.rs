//! Fuzzes GSS-encryption packet framing as read from a server: the length word of each packet
//! and the wrap-token header check that refuses packets without confidentiality.
#![no_main]

use krbouncer::net::gssenc::{Framed, MAX_PACKET, packet_len, wrap_token_is_sealed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match packet_len(rest) {
            Ok(Framed::Complete(len)) => {
                assert!(len > 0 && len + 4 <= MAX_PACKET);
                let _ = wrap_token_is_sealed(&rest[4..4 + len]);
                rest = &rest[4 + len..];
            }
            Ok(Framed::NeedBody(len)) => {
                assert!(rest.len() < 4 + len && len + 4 <= MAX_PACKET);
                break;
            }
            Ok(Framed::NeedLength) => {
                assert!(rest.len() < 4);
                break;
            }
            Err(_) => break,
        }
    }
});
