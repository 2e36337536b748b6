//! The `krbouncer` executable: parses the command line and runs the pooler.
#![forbid(unsafe_code)]

fn main() {}
