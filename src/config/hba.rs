//! `auth_hba_file` for `auth_type = hba`: PgBouncer's subset of pg_hba.conf. Lines are
//! `local DATABASE USER METHOD [map=NAME]` or `host|hostssl|hostnossl DATABASE USER ADDRESS
//! METHOD [map=NAME]`; names are comma lists of words, `"quoted"` names, `all`, `sameuser`
//! (databases), `replication` and `@file` (names read from a file beside the hba file);
//! addresses are `all`, `addr/bits` or `addr mask`; methods trust, reject, md5, password,
//! scram-sha-256, peer, cert (ldap parses and is refused at login). A line that does not
//! parse is logged and skipped; the first matching rule decides.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::hba_tokens::{Token, Tokens};
use super::ident::{IdentMap, IdentMaps};

/// What a rule's first word says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

/// The method a matching rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HbaMethod {
    Trust,
    Reject,
    Md5,
    /// `password`: cleartext.
    Password,
    ScramSha256,
    Peer,
    Cert,
    Ldap,
}

/// A database or user column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Names {
    all: bool,
    sameuser: bool,
    replication: bool,
    names: HashSet<String>,
}

impl Names {
    fn matches(&self, name: &str, other: &str) -> bool {
        self.all || (self.sameuser && name == other) || self.names.contains(name)
    }
}

/// A network and mask of one family; `None` is `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    mask: Vec<u8>,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        let (base, got) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (a.octets().to_vec(), b.octets().to_vec()),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.octets().to_vec(), b.octets().to_vec()),
            _ => return false,
        };
        base.iter()
            .zip(&got)
            .zip(&self.mask)
            .all(|((b, g), m)| g & m == *b)
    }
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaRule {
    pub line: usize,
    pub conn_type: ConnType,
    databases: Names,
    users: Names,
    address: Option<Network>,
    pub method: HbaMethod,
    /// The `map=` ident map, resolved when the file was read.
    pub ident_map: Option<IdentMap>,
}

/// Where a client connects from, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Unix,
    Tcp { ip: IpAddr, tls: bool },
}

/// The rules of one hba file, with what was logged while reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HbaRules {
    pub rules: Vec<HbaRule>,
    pub warnings: Vec<String>,
}

impl HbaRules {
    /// Reads `path` (and `@files` beside it) with `ident` for `map=`; a file that cannot be
    /// opened gives no rules (every login is refused) and a warning.
    pub fn load(path: &Path, ident: &IdentMaps) -> HbaRules {
        match std::fs::read_to_string(path) {
            Ok(text) => HbaRules::parse(&text, path, ident),
            Err(e) => HbaRules {
                rules: Vec::new(),
                warnings: vec![format!(
                    "could not open hba config file {}: {e}",
                    path.display()
                )],
            },
        }
    }

    /// Parses the text of the file at `path` (used to find `@file` names).
    pub fn parse(text: &str, path: &Path, ident: &IdentMaps) -> HbaRules {
        let mut out = HbaRules::default();
        for (i, line) in text.lines().enumerate() {
            let linenr = i + 1;
            match parse_line(line, linenr, path, ident) {
                Ok(Some(rule)) => out.rules.push(rule),
                Ok(None) => {}
                Err(why) => {
                    out.warnings.push(format!("hba line {linenr}: {why}"));
                    out.warnings
                        .push(format!("could not parse hba config line {linenr}"));
                }
            }
        }
        out
    }

    /// The first rule matching the connection (PgBouncer's `hba_eval`). A physical
    /// replication connection matches only rules whose database column says `replication`.
    pub fn eval(
        &self,
        peer: Peer,
        physical_replication: bool,
        database: &str,
        user: &str,
    ) -> Option<&HbaRule> {
        self.rules.iter().find(|r| {
            let place = match (peer, r.conn_type) {
                (Peer::Unix, ConnType::Local) => true,
                (Peer::Unix, _) | (Peer::Tcp { .. }, ConnType::Local) => false,
                (Peer::Tcp { tls: false, .. }, ConnType::HostSsl) => false,
                (Peer::Tcp { tls: true, .. }, ConnType::HostNoSsl) => false,
                // an IPv4 client seen through an IPv6 socket is matched as IPv4
                (Peer::Tcp { ip, .. }, _) => r
                    .address
                    .as_ref()
                    .is_none_or(|n| n.contains(ip.to_canonical())),
            };
            let db = if physical_replication {
                r.databases.replication
            } else {
                r.databases.matches(database, user)
            };
            place && db && r.users.matches(user, database)
        })
    }
}

fn parse_line(
    line: &str,
    linenr: usize,
    path: &Path,
    ident: &IdentMaps,
) -> Result<Option<HbaRule>, String> {
    let mut t = Tokens::new(line);
    if t.at_end() {
        return Ok(None);
    }
    let conn_type = if t.eat_word("local") {
        ConnType::Local
    } else if t.eat_word("host") {
        ConnType::Host
    } else if t.eat_word("hostssl") {
        ConnType::HostSsl
    } else if t.eat_word("hostnossl") {
        ConnType::HostNoSsl
    } else {
        return Err("unknown type".into());
    };
    let databases = parse_names(&mut t, path, 0).ok_or("invalid database list")?;
    let users = parse_names(&mut t, path, 0).ok_or("invalid user list")?;
    let address = match conn_type {
        ConnType::Local => None,
        _ if t.eat_word("all") => None,
        _ => Some(parse_address(&mut t)?),
    };
    let method = match t.next() {
        Some(Token::Word(w)) => match w.as_str() {
            "trust" => HbaMethod::Trust,
            "reject" => HbaMethod::Reject,
            "md5" => HbaMethod::Md5,
            "password" => HbaMethod::Password,
            "peer" => HbaMethod::Peer,
            "cert" => HbaMethod::Cert,
            "scram-sha-256" => HbaMethod::ScramSha256,
            // its options are the rest of the line; krbouncer has no LDAP
            "ldap" => {
                return Ok(Some(HbaRule {
                    line: linenr,
                    conn_type,
                    databases,
                    users,
                    address,
                    method: HbaMethod::Ldap,
                    ident_map: None,
                }));
            }
            other => return Err(format!("unsupported method: buf={other}")),
        },
        _ => return Err("unsupported method".into()),
    };
    let ident_map = match t.next() {
        None => None,
        Some(Token::Word(w)) => {
            let Some(name) = w.strip_prefix("map=") else {
                return Err(format!(
                    "Ident map {w} is malformed. It is not in map=value format."
                ));
            };
            let map = ident
                .get(name)
                .ok_or_else(|| format!("Ident map {name} is not found in ident config file"))?;
            Some(map.clone())
        }
        Some(_) => return Err("unsupported parameters".into()),
    };
    if !t.at_end() {
        return Err("unsupported parameters".into());
    }
    Ok(Some(HbaRule {
        line: linenr,
        conn_type,
        databases,
        users,
        address,
        method,
        ident_map,
    }))
}

/// `@file` nesting limit (PgBouncer has none; a file naming itself would never end).
const MAX_INCLUDE_DEPTH: usize = 10;

/// A comma list of names; `None` when it is malformed.
fn parse_names(t: &mut Tokens, path: &Path, depth: usize) -> Option<Names> {
    let mut names = Names::default();
    parse_names_into(&mut names, t, path, depth)?;
    Some(names)
}

fn parse_names_into(names: &mut Names, t: &mut Tokens, path: &Path, depth: usize) -> Option<()> {
    loop {
        match t.next()? {
            Token::Word(w) => match w.as_str() {
                "all" => names.all = true,
                "sameuser" => names.sameuser = true,
                "replication" => names.replication = true,
                "samerole" | "samegroup" => return None,
                w if w.starts_with('+') => return None,
                w if w.starts_with('@') && depth < MAX_INCLUDE_DEPTH => {
                    let file = include_path(path, w.get(1..)?);
                    let text = std::fs::read_to_string(&file).ok()?;
                    for line in text.lines() {
                        let mut lt = Tokens::new(line);
                        if !lt.at_end() {
                            parse_names_into(names, &mut lt, &file, depth + 1)?;
                        }
                    }
                }
                w if w.starts_with('@') => return None,
                w => {
                    names.names.insert(w.to_string());
                }
            },
            Token::Quoted(q) => {
                names.names.insert(q);
            }
            Token::Comma | Token::Bad => return None,
        }
        if !t.eat_comma() {
            return Some(());
        }
    }
}

/// `@name` is relative to the directory of the file that names it.
fn include_path(parent: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    if name.is_absolute() {
        return name.to_path_buf();
    }
    parent.parent().unwrap_or(Path::new(".")).join(name)
}

fn parse_address(t: &mut Tokens) -> Result<Network, String> {
    let Some(Token::Word(word)) = t.next() else {
        return Err("did not find address".into());
    };
    let (addr_text, bits) = match word.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (word.as_str(), None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("failed to parse address - {addr_text}"))?;
    let len = if addr.is_ipv4() { 4 } else { 16 };
    let mask = match bits {
        Some(bits) => {
            let bits: usize = bits
                .parse()
                .ok()
                .filter(|&b| b <= len * 8)
                .ok_or("invalid mask")?;
            (0..len)
                .map(|i| {
                    let on = bits.saturating_sub(i * 8).min(8);
                    // on is 0..=8: a byte with its top `on` bits set
                    (0xff00u16 >> on) as u8
                })
                .collect()
        }
        None => {
            let Some(Token::Word(m)) = t.next() else {
                return Err("did not find mask".into());
            };
            match m.parse::<IpAddr>() {
                Ok(IpAddr::V4(m)) if addr.is_ipv4() => m.octets().to_vec(),
                Ok(IpAddr::V6(m)) if addr.is_ipv6() => m.octets().to_vec(),
                _ => return Err(format!("failed to parse mask: {m}")),
            }
        }
    };
    Ok(Network { addr, mask })
}

#[cfg(test)]
#[path = "hba_tests.rs"]
mod tests;
