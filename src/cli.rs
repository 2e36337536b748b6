//! Command line parsing, PgBouncer-compatible flags.
