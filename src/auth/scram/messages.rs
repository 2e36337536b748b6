//! SCRAM message grammar (RFC 5802 section 7) for the parts PostgreSQL uses: parsing
//! client-first, client-final, server-first and server-final. Pure string handling.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::ScramError;
use super::keys::SCRAM_KEY_LEN;

pub(crate) fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// `<name>=<value>`; returns the value.
fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("missing attribute"))?;
    let mut chars = part.chars();
    if chars.next() != Some(name) || chars.next() != Some('=') {
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok(&part[2..])
}

/// A nonce is printable ASCII except ',' (RFC 5802 "printable").
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("invalid nonce"));
    }
    Ok(())
}

pub(crate) fn decode_b64(value: &str) -> Result<Vec<u8>, ScramError> {
    B64.decode(value)
        .map_err(|_| ScramError::Malformed("invalid base64"))
}

pub(crate) fn decode_key(value: &str) -> Result<[u8; SCRAM_KEY_LEN], ScramError> {
    decode_b64(value)?
        .try_into()
        .map_err(|_| ScramError::Malformed("wrong proof or signature length"))
}

/// The parts of a client-first-message the server needs.
pub(crate) struct ClientFirst<'a> {
    /// "n,," or "y,,": echoed (base64) in client-final's c= attribute.
    pub gs2_header: &'a str,
    pub bare: &'a str,
    pub nonce: &'a str,
}

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, ScramError> {
    // gs2-cbind-flag: "n" (client does not support binding) or "y" (client supports it but
    // thinks the server does not: right, the pooler never offers -PLUS). "p=" asks for it.
    let rest = match msg.as_bytes().first() {
        Some(b'n' | b'y') => msg.get(1..).unwrap_or(""),
        Some(b'p') => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("bad gs2 channel binding flag")),
    };
    let rest = rest
        .strip_prefix(',')
        .ok_or(ScramError::Malformed("bad gs2 header"))?;
    if rest.starts_with("a=") {
        return Err(ScramError::AuthzidUnsupported);
    }
    let bare = rest
        .strip_prefix(',')
        .ok_or(ScramError::Malformed("bad gs2 header"))?;
    let gs2_header = &msg[..msg.len() - bare.len()];
    if bare.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension);
    }
    let mut parts = bare.split(',');
    // PostgreSQL ignores the SCRAM username (libpq sends "n="): the startup packet's counts.
    attr(parts.next(), 'n')?;
    let nonce = attr(parts.next(), 'r')?;
    check_nonce(nonce)?;
    Ok(ClientFirst {
        gs2_header,
        bare,
        nonce,
    })
}

/// The parts of a client-final-message.
pub(crate) struct ClientFinal<'a> {
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub without_proof: &'a str,
    pub proof: [u8; SCRAM_KEY_LEN],
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, ScramError> {
    // The proof is the last attribute (RFC 5802 grammar; PostgreSQL requires it too).
    let at = msg
        .rfind(",p=")
        .ok_or(ScramError::Malformed("missing proof"))?;
    let (without_proof, proof) = (&msg[..at], &msg[at + 3..]);
    let mut parts = without_proof.split(',');
    let channel_binding = decode_b64(attr(parts.next(), 'c')?)?;
    let nonce = attr(parts.next(), 'r')?;
    let proof = decode_key(proof)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// The parts of a server-first-message.
pub(crate) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u64,
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>, ScramError> {
    if msg.starts_with("m=") {
        return Err(ScramError::UnsupportedExtension);
    }
    let mut parts = msg.split(',');
    let nonce = attr(parts.next(), 'r')?;
    check_nonce(nonce)?;
    let salt = decode_b64(attr(parts.next(), 's')?)?;
    if salt.is_empty() {
        return Err(ScramError::Malformed("empty salt"));
    }
    let iterations = attr(parts.next(), 'i')?;
    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScramError::Malformed("invalid iteration count"));
    }
    // Too many digits for u64 also means far above any limit.
    let iterations = iterations.parse::<u64>().unwrap_or(u64::MAX);
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// server-final-message: "v=<signature>" or "e=<error>".
pub(crate) fn parse_server_final(msg: &str) -> Result<[u8; SCRAM_KEY_LEN], ScramError> {
    let first = msg.split(',').next().unwrap_or("");
    if let Some(error) = first.strip_prefix("e=") {
        return Err(ScramError::ServerError(error.to_string()));
    }
    decode_key(attr(Some(first), 'v')?)
}
