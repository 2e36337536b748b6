//! Fuzzes the upstream login as a hostile server would drive it: the bytes are everything the
//! "server" answers to our StartupMessage (Authentication requests of every kind, SASL
//! continue/final, ParameterStatus, BackendKeyData, ErrorResponse, NegotiateProtocolVersion).
//! The login must end in Ok or an error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use krbouncer::auth::gss::GssRuntime;
use krbouncer::auth::secret::Secret;
use krbouncer::server::gss_login::{GssLogin, GssNegotiate};
use krbouncer::server::login::{LoginRequest, ScramKeys, login};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("invariant: a current-thread runtime builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let gss = GssRuntime::new(1);
    let secret = Secret::Md5("md5".to_string() + &"0".repeat(32));
    let data = data.to_vec();
    runtime().block_on(async {
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let (mut their_read, mut their_write) = tokio::io::split(theirs);
        let server = tokio::spawn(async move {
            let _ = their_write.write_all(&data).await;
            // EOF after the scripted answers, as a server that closes; what we send is dropped
            let _ = their_write.shutdown().await;
            let mut sink = vec![0u8; 4096];
            while matches!(their_read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let req = LoginRequest {
            user: "u",
            database: "d",
            extra_params: &[],
            secret: Some(&secret),
            scram_keys: Some(ScramKeys {
                client_key: [1; 32],
                server_key: [2; 32],
            }),
            gss: GssLogin {
                negotiate: GssNegotiate::Disable,
                target: None,
                runtime: &gss,
                deadline: Duration::from_secs(1),
                encrypted: false,
            },
        };
        let mut rbuf = BytesMut::new();
        let outcome = tokio::time::timeout(Duration::from_secs(5), login(&mut ours, &mut rbuf, req));
        assert!(outcome.await.is_ok(), "login hung on scripted server bytes");
        drop(ours);
        let _ = server.await;
    });
});
