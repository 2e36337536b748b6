//! A libpq 18 client: psycopg's binary wheel in the venv `.ci/install-deps.sh` creates
//! (Debian's libpq is older and cannot ask for protocol 3.2).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The venv's python; panics (never skips) when `.ci/install-deps.sh` has not made it.
pub fn libpq18_python() -> PathBuf {
    let venv = std::env::var("KRBOUNCER_TEST_VENV")
        .unwrap_or_else(|_| "/opt/krbouncer-test-venv".to_string());
    let python = PathBuf::from(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} missing: run .ci/install-deps.sh (psycopg[binary] with libpq 18)",
        python.display()
    );
    python
}

/// Runs `script` (Python source) with `args` under the libpq 18 venv.
pub fn run_python(script: &str, args: &[&str]) -> Output {
    Command::new(libpq18_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python")
}
