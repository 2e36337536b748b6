//! The error every protocol parser returns: malformed, oversized or unsupported input from a
//! peer. Each variant says what was wrong so the caller can log it and pick a SQLSTATE.

use thiserror::Error;

/// Bad bytes from a peer. Never a panic: every parser in `protocol` maps bad input here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The int32 length word is below its minimum (4 for tagged messages, 8 for startup).
    #[error("invalid message length {len} for message type {tag:?}")]
    LengthTooShort { tag: char, len: i64 },
    /// The announced length exceeds the limit for this message type.
    #[error("message type {tag:?} too long: {len} bytes (limit {max})")]
    TooLong { tag: char, len: u64, max: usize },
    /// A message of this type must have exactly this length.
    #[error("message type {tag:?} has length {len}, expected {expected}")]
    WrongLength {
        tag: char,
        len: usize,
        expected: usize,
    },
    /// The parser was given a message of another type.
    #[error("expected message type {expected:?}, got {got:?}")]
    UnexpectedTag { expected: char, got: char },
    /// The body does not follow the message's layout.
    #[error("malformed {what}: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
    /// Text that must be UTF-8 is not.
    #[error("invalid UTF-8 in {what}")]
    InvalidUtf8 { what: &'static str },
    /// A startup packet with a protocol major version other than 3.
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str, reason: &'static str) -> ProtocolError {
        ProtocolError::Malformed { what, reason }
    }
}
