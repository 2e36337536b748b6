//! The `krbouncer` executable: command line, config check, process setup (user, daemon,
//! pidfile, logging), then the multi-threaded runtime serving the pooler.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use krbouncer::cli::{self, Command, USAGE};
use krbouncer::config::Config;
use krbouncer::logging::{self, LogSetup};

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("krbouncer: {e}\n\n{USAGE}");
            return ExitCode::from(1);
        }
    };
    let cli = match cmd {
        Command::Version => {
            println!(
                "krbouncer {} (PgBouncer 1.25 compatible)",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Run(cli) => cli,
    };
    // invariant: parse() only returns Run with a config path
    let path = cli
        .config
        .clone()
        .expect("invariant: Command::Run always carries a config path");
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("FATAL cannot load config file: {e}");
            return ExitCode::from(1);
        }
    };
    let warnings = match config.validate() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("FATAL cannot load config file: {e}");
            return ExitCode::from(1);
        }
    };
    // TLS files and client_tls_* values are checked before anything binds (and by --check).
    if let Err(e) = krbouncer::net::client_tls::build(
        &krbouncer::net::client_tls::ClientTlsSettings::from_settings(&config.settings),
    ) {
        eprintln!("FATAL client TLS setup: {e}");
        return ExitCode::from(1);
    }
    if cli.check {
        // a running pooler logs these at startup; --check shows them too
        for w in &warnings {
            eprintln!("WARNING {w}");
        }
        println!("configuration {} is valid", path.display());
        return ExitCode::SUCCESS;
    }
    if cli.daemon && config.settings.pidfile.is_empty() {
        eprintln!("FATAL pidfile is required when running as a daemon (-d)");
        return ExitCode::from(1);
    }
    if let Some(user) = cli.user.as_deref().or(config.settings.user.as_deref()) {
        if let Err(e) = krbouncer::process::switch_user(user) {
            eprintln!("FATAL could not switch to user {user}: {e}");
            return ExitCode::from(1);
        }
    }
    if cli.daemon && !krbouncer::process::is_daemon_child() {
        return match krbouncer::process::spawn_daemon(&config.settings.pidfile) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("FATAL could not start daemon: {e}");
                ExitCode::from(1)
            }
        };
    }
    let verbose = cli
        .verbose
        .saturating_add(config.settings.verbose.min(255) as u8);
    let json = config.settings.log_format == krbouncer::config::LogFormat::Json;
    if let Err(e) = logging::init(LogSetup {
        logfile: &config.settings.logfile,
        quiet: cli.quiet,
        verbose,
        json,
        syslog: config.settings.syslog,
        syslog_ident: &config.settings.syslog_ident,
        syslog_facility: &config.settings.syslog_facility,
    }) {
        eprintln!("FATAL cannot open log: {e}");
        return ExitCode::from(1);
    }
    let pidfile = config.settings.pidfile.clone();
    if !pidfile.is_empty() {
        if let Err(e) = std::fs::write(&pidfile, format!("{}\n", std::process::id())) {
            eprintln!("FATAL cannot write pidfile {pidfile}: {e}");
            return ExitCode::from(1);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("FATAL cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(krbouncer::serve::run(config));
    if !pidfile.is_empty() {
        let _ = std::fs::remove_file(Path::new(&pidfile));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("FATAL {e:#}");
            ExitCode::from(1)
        }
    }
}
