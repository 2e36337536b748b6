//! Fuzzes pgbouncer.ini parsing: the ini reader (sections, continuation, quoting, `%include`
//! lines are parsed but not followed here) and the settings, `[databases]`, `[users]` and
//! `[peers]` it feeds, then validation.
#![no_main]

use std::path::Path;

use krbouncer::config::Config;
use krbouncer::config::ini::parse_ini_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (path, cwd) = (Path::new("/nonexistent/fuzz.ini"), Path::new("/nonexistent"));
    let Ok(items) = parse_ini_text(data, path, cwd) else {
        return;
    };
    if let Ok(config) = Config::from_items(path, cwd, items) {
        let _ = config.validate();
    }
});
