//! Fuzzes the SCRAM server state machine with arbitrary client-first / client-final messages
//! (split at the first 0xff byte), and the client side with arbitrary server messages.
#![no_main]

use krbouncer::auth::scram::{ScramClient, ScramClientCredentials, ScramServer};
use krbouncer::auth::secret::ScramSecret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let secret = ScramSecret::from_password("pw", b"fuzzsalt", 1);
    let mut server = ScramServer::new(secret);
    if server.handle_client_first(first).is_ok() {
        // A random proof must never verify.
        assert!(server.handle_client_final(last).is_err());
    }
    let mut mock = ScramServer::mock("user", b"nonce", 1);
    if mock.handle_client_first(first).is_ok() {
        assert!(mock.handle_client_final(last).is_err());
    }
    let mut client = ScramClient::new(ScramClientCredentials::Keys {
        client_key: [1; 32],
        server_key: [2; 32],
    });
    client.client_first();
    if client.handle_server_first(first).is_ok() {
        let _ = client.verify_server_final(last);
    }
});
