//! Fuzzes users.txt (auth_file) parsing: quoted user and secret pairs, doubled quotes,
//! comments, plaintext / md5 / SCRAM-SHA-256 secrets and the warnings for bad lines.
#![no_main]

use krbouncer::config::AuthFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let once = AuthFile::parse(data);
    // parsing is a pure function of the text
    assert_eq!(once.users.len(), AuthFile::parse(data).users.len());
});
