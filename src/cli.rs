//! Command line parsing with PgBouncer's flags:
//! `krbouncer [-d] [-q] [-v]... [-u USER] [-V] [-h] [--check] <pgbouncer.ini>`.

use std::path::PathBuf;

/// The version line of `--version` and SHOW VERSION (they must agree, as in PgBouncer); tools
/// and the exporter parse its `PgBouncer x.y.z` head.
pub const VERSION_LINE: &str = concat!(
    "PgBouncer 1.25.2 (krbouncer ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cli {
    pub daemon: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub user: Option<String>,
    pub check: bool,
    pub config: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Cli),
    Version,
    Help,
}

pub const USAGE: &str = "\
krbouncer is a PostgreSQL connection pooler, compatible with PgBouncer, with GSSAPI upstream login.

Usage:
  krbouncer [OPTION]... CONFIG_FILE

Options:
  -d, --daemon         run in background (as a daemon); needs pidfile
  -q, --quiet          run quietly (no logging to stderr)
  -R, --reboot         not supported (PgBouncer's deprecated online restart)
  -u, --user=USERNAME  assume identity of USERNAME
  -v, --verbose        increase verbosity (repeatable)
      --check          validate the configuration and exit
  -V, --version        show version, then exit
  -h, --help           show this help, then exit
";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("unknown option: {0}")]
    UnknownOption(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("need config file")]
    MissingConfig,
    #[error("too many arguments: {0}")]
    ExtraArgument(String),
    #[error(
        "online restart (-R) is not supported by krbouncer; run several processes with so_reuseport instead"
    )]
    RebootUnsupported,
}

/// Parses arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, CliError> {
    let mut cli = Cli::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match name {
                "daemon" => cli.daemon = true,
                "quiet" => cli.quiet = true,
                "verbose" => cli.verbose = cli.verbose.saturating_add(1),
                "check" => cli.check = true,
                "version" => return Ok(Command::Version),
                "help" => return Ok(Command::Help),
                "reboot" => return Err(CliError::RebootUnsupported),
                "user" => {
                    let v = inline
                        .or_else(|| args.next())
                        .ok_or_else(|| CliError::MissingValue(arg.clone()))?;
                    cli.user = Some(v);
                }
                _ => return Err(CliError::UnknownOption(arg)),
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let flags: Vec<char> = arg[1..].chars().collect();
            for (i, f) in flags.iter().enumerate() {
                match f {
                    'd' => cli.daemon = true,
                    'q' => cli.quiet = true,
                    'v' => cli.verbose = cli.verbose.saturating_add(1),
                    'V' => return Ok(Command::Version),
                    'h' => return Ok(Command::Help),
                    'R' => return Err(CliError::RebootUnsupported),
                    'u' => {
                        let rest: String = flags[i + 1..].iter().collect();
                        let v = if rest.is_empty() {
                            args.next()
                        } else {
                            Some(rest)
                        };
                        cli.user = Some(v.ok_or_else(|| CliError::MissingValue("-u".into()))?);
                        break;
                    }
                    _ => return Err(CliError::UnknownOption(format!("-{f}"))),
                }
            }
        } else if cli.config.is_none() {
            cli.config = Some(PathBuf::from(arg));
        } else {
            return Err(CliError::ExtraArgument(arg));
        }
    }
    if cli.config.is_none() {
        return Err(CliError::MissingConfig);
    }
    Ok(Command::Run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn pgbouncer_style_flags() {
        let Ok(Command::Run(cli)) = p(&[
            "-d",
            "-vv",
            "-q",
            "-u",
            "pgbouncer",
            "/etc/pgbouncer/pgbouncer.ini",
        ]) else {
            panic!("should parse")
        };
        assert!(cli.daemon && cli.quiet);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.user.as_deref(), Some("pgbouncer"));
        assert_eq!(
            cli.config,
            Some(PathBuf::from("/etc/pgbouncer/pgbouncer.ini"))
        );
        let Ok(Command::Run(cli)) = p(&["--user=x", "--check", "a.ini"]) else {
            panic!("should parse")
        };
        assert!(cli.check);
        assert_eq!(cli.user.as_deref(), Some("x"));
    }

    #[test]
    fn version_help_and_errors() {
        assert_eq!(p(&["-V"]), Ok(Command::Version));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&[]), Err(CliError::MissingConfig));
        assert_eq!(
            p(&["-x", "a.ini"]),
            Err(CliError::UnknownOption("-x".into()))
        );
        assert_eq!(
            p(&["a.ini", "b.ini"]),
            Err(CliError::ExtraArgument("b.ini".into()))
        );
        assert_eq!(p(&["-R", "a.ini"]), Err(CliError::RebootUnsupported));
    }
}
