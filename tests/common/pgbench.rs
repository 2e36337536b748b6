//! Running pgbench through a test bouncer as the SCRAM role (`-i` to initialise, or a load run).

use std::process::{Command, Output};

use crate::common::bouncer::Bouncer;
use crate::common::pg;

/// `pgbench -h 127.0.0.1 -p <bouncer> -U scram_user <args> testdb`.
pub fn pgbench(b: &Bouncer, args: &[&str]) -> Output {
    Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(b.port().to_string())
        .args(["-U", pg::SCRAM_USER])
        .args(args)
        .arg("testdb")
        .env("PGPASSWORD", pg::SCRAM_PASS)
        .output()
        .expect("running pgbench")
}

/// `pgbench -i -q -s 1` through the bouncer; panics with pgbench's stderr and the bouncer log.
pub fn pgbench_init(b: &Bouncer) {
    let init = pgbench(b, &["-i", "-q", "-s", "1"]);
    assert!(
        init.status.success(),
        "pgbench -i: {}\n{}",
        String::from_utf8_lossy(&init.stderr),
        b.log()
    );
}
