//! Log output: `tracing` to stderr or `logfile` (reopened on demand, for logrotate and reload),
//! PgBouncer-like text lines (`logging/format.rs`) or JSON lines (`log_format = json`), plus
//! syslog when `syslog = 1`; the level raised by `verbose` / `-v`, stderr silenced by `-q`.
//!
//! Secrets never reach a log line: nothing logs passwords, SCRAM messages, keys or GSS tokens,
//! and `tests/logs.rs` greps a verbose log for the passwords used.

mod format;
mod syslog;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use format::level_word;
use format::{PgBouncerFormat, PlainFields};

/// Where and how to log.
pub struct LogSetup<'a> {
    pub logfile: &'a str,
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
    pub syslog: bool,
    pub syslog_ident: &'a str,
    pub syslog_facility: &'a str,
}

/// The open `logfile`. Process-wide like the subscriber that writes to it, so that `reopen`
/// can reach it from the reload path without threading a handle through `Shared`.
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reopens `logfile` (after logrotate moved it, or on reload). A no-op when logging to stderr.
/// On error the old file stays in use.
pub fn reopen() -> io::Result<()> {
    if let Some(f) = LOG_FILE.get() {
        let new = open_append(&f.path)?;
        *f.lock() = new;
    }
    Ok(())
}

#[derive(Clone)]
struct LogFileWriter(Arc<LogFile>);

/// The file, locked for one event.
struct LockedFile<'a>(MutexGuard<'a, File>);

impl io::Write for LockedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFileWriter {
    type Writer = LockedFile<'a>;
    fn make_writer(&'a self) -> LockedFile<'a> {
        LockedFile(self.0.lock())
    }
}

/// Installs the global subscriber (the one process-wide thing `tracing` needs).
pub fn init(setup: LogSetup<'_>) -> io::Result<()> {
    let level = match setup.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KRBOUNCER_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let writer = if !setup.logfile.is_empty() {
        let path = PathBuf::from(setup.logfile);
        let file = Arc::new(LogFile {
            file: Mutex::new(open_append(&path)?),
            path,
        });
        let _ = LOG_FILE.set(file.clone());
        BoxMakeWriter::new(LogFileWriter(file))
    } else if setup.quiet {
        BoxMakeWriter::new(io::sink)
    } else {
        BoxMakeWriter::new(io::stderr)
    };
    let main: Box<dyn Layer<Registry> + Send + Sync> = if setup.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(PlainFields::<0>)
            .event_format(PgBouncerFormat {
                with_time_and_pid: true,
            })
            .with_writer(writer)
            .boxed()
    };
    let (syslog, syslog_error) = if setup.syslog {
        match syslog::SyslogWriter::connect(setup.syslog_ident, setup.syslog_facility) {
            Ok(w) => (
                Some(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .fmt_fields(PlainFields::<1>)
                        .event_format(PgBouncerFormat {
                            with_time_and_pid: false,
                        })
                        .with_writer(w),
                ),
                None,
            ),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    tracing_subscriber::registry()
        .with(main)
        .with(syslog)
        .with(filter)
        .try_init()
        .map_err(|e| io::Error::other(e.to_string()))?;
    if let Some(e) = syslog_error {
        tracing::warn!(error = %e, "syslog = 1 but syslog is unreachable; logging without it");
    }
    Ok(())
}
