//! Log output: `tracing` to stderr or `logfile`, text (PgBouncer-like lines) or JSON lines,
//! the level raised by `verbose` / `-v`, silenced on stderr by `-q`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Where and how to log.
pub struct LogSetup<'a> {
    pub logfile: &'a str,
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
}

/// Installs the global subscriber (the one process-wide thing `tracing` needs).
pub fn init(setup: LogSetup<'_>) -> std::io::Result<()> {
    let level = match setup.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KRBOUNCER_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let result = if !setup.logfile.is_empty() {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(setup.logfile)?;
        if setup.json {
            builder.json().with_writer(Mutex::new(file)).try_init()
        } else {
            builder.with_writer(Mutex::new(file)).try_init()
        }
    } else if setup.quiet {
        builder.with_writer(std::io::sink).try_init()
    } else if setup.json {
        builder.json().with_writer(std::io::stderr).try_init()
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };
    result.map_err(|e| std::io::Error::other(e.to_string()))
}
