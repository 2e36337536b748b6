//! The `krbouncer` executable: command line, config check, process setup (user, daemon,
//! pidfile, logging), then the multi-threaded runtime serving the pooler.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use krbouncer::cli::{self, Command, USAGE};
use krbouncer::config::Config;
use krbouncer::logging::{self, LogSetup};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(message)) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

/// Why the process stops with exit code 1: the whole line printed to stderr, once.
struct Fatal(String);

fn fatal(message: impl std::fmt::Display) -> Fatal {
    Fatal(format!("FATAL {message}"))
}

/// The command line's `--version` / `--help` / `--check` answers go to stdout.
#[allow(clippy::print_stdout)]
fn run() -> Result<(), Fatal> {
    let cmd = cli::parse(std::env::args().skip(1))
        .map_err(|e| Fatal(format!("krbouncer: {e}\n\n{USAGE}")))?;
    let cli = match cmd {
        Command::Version => {
            println!("{}", cli::VERSION_LINE);
            return Ok(());
        }
        Command::Help => {
            print!("{USAGE}");
            return Ok(());
        }
        Command::Run(cli) => cli,
    };
    // invariant: parse() only returns Run with a config path
    let path = cli
        .config
        .clone()
        .expect("invariant: Command::Run always carries a config path");
    let (config, warnings) = load(&path)?;
    if cli.check {
        // a running pooler logs these at startup; --check shows them too
        for w in &warnings {
            eprintln!("WARNING {w}");
        }
        println!("configuration {} is valid", path.display());
        return Ok(());
    }
    if cli.daemon && config.settings.pidfile.is_empty() {
        return Err(fatal("pidfile is required when running as a daemon (-d)"));
    }
    if let Some(user) = cli.user.as_deref().or(config.settings.user.as_deref()) {
        krbouncer::process::switch_user(user)
            .map_err(|e| fatal(format!("could not switch to user {user}: {e}")))?;
    }
    if cli.daemon && !krbouncer::process::is_daemon_child() {
        return krbouncer::process::spawn_daemon(&config.settings.pidfile)
            .map_err(|e| fatal(format!("could not start daemon: {e}")));
    }
    init_logging(&cli, &config)?;
    serve(config)
}

/// Loads and validates the config, TLS files and client_tls_* values included, before
/// anything binds (and for --check).
fn load(path: &Path) -> Result<(Config, Vec<String>), Fatal> {
    let config = Config::load(path).map_err(|e| fatal(format!("cannot load config file: {e}")))?;
    let warnings = config
        .validate()
        .map_err(|e| fatal(format!("cannot load config file: {e}")))?;
    krbouncer::net::client_tls::build(
        &krbouncer::net::client_tls::ClientTlsSettings::from_settings(&config.settings),
    )
    .map_err(|e| fatal(format!("client TLS setup: {e}")))?;
    Ok((config, warnings))
}

fn init_logging(cli: &cli::Cli, config: &Config) -> Result<(), Fatal> {
    let verbose = cli
        .verbose
        .saturating_add(config.settings.verbose.min(255) as u8);
    let json = config.settings.log_format == krbouncer::config::LogFormat::Json;
    logging::init(LogSetup {
        logfile: &config.settings.logfile,
        quiet: cli.quiet,
        verbose,
        json,
        syslog: config.settings.syslog,
        syslog_ident: &config.settings.syslog_ident,
        syslog_facility: &config.settings.syslog_facility,
    })
    .map_err(|e| fatal(format!("cannot open log: {e}")))
}

/// Writes the pidfile, serves on a multi-threaded runtime until shutdown, removes the pidfile.
fn serve(config: Config) -> Result<(), Fatal> {
    let pidfile = config.settings.pidfile.clone();
    if !pidfile.is_empty() {
        std::fs::write(&pidfile, format!("{}\n", std::process::id()))
            .map_err(|e| fatal(format!("cannot write pidfile {pidfile}: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fatal(format!("cannot start runtime: {e}")))?;
    let result = runtime.block_on(krbouncer::serve::run(config));
    if !pidfile.is_empty() {
        let _ = std::fs::remove_file(Path::new(&pidfile));
    }
    result.map_err(|e| {
        tracing::error!("{e:#}");
        fatal(format!("{e:#}"))
    })
}
