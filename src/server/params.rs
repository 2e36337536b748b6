//! Server parameters (ParameterStatus values): which ones the pooler tracks per client, and the
//! `SET` batch that brings a server in line with a client before the client runs on it.

use crate::server::list_param::list_value_sql;

/// Parameters PgBouncer always tracks (`src/varcache.c`); `track_extra_parameters` adds more.
pub const ALWAYS_TRACKED: [&str; 5] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// An ordered list of (name, value), looked up case-insensitively as PostgreSQL does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamSet {
    entries: Vec<(String, String)>,
}

impl ParamSet {
    pub fn new() -> ParamSet {
        ParamSet::default()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        // the same spelling first (the usual case: names come from the server): a length
        // check and a memcmp per entry, where the case-insensitive compare is a byte loop
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.as_str())
    }

    /// Sets a value, keeping the first spelling of the name.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        match self
            .entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(entry) => {
                if entry.1 != value {
                    entry.1 = value.to_string();
                }
            }
            None => self.entries.push((name.to_string(), value.to_string())),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Frees unused room (a client's set is kept for as long as it stays connected).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The names tracked for clients: the always-tracked ones plus `track_extra_parameters`.
pub fn tracked_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ALWAYS_TRACKED.iter().map(|s| s.to_string()).collect();
    for e in extra {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(e)) {
            names.push(e.clone());
        }
    }
    names
}

pub(crate) fn is_tracked(name: &str, tracked: &[String]) -> bool {
    tracked.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Builds `SET k='v';...` for every client value the server does not already have, or None.
/// Values are quoted as SQL string literals; `search_path`, reported already quoted as a list of
/// identifiers, becomes one literal per element (`list_param.rs`).
pub(crate) fn sync_query(client: &ParamSet, server: &ParamSet) -> Option<String> {
    let mut sql = String::new();
    for (name, value) in client.iter() {
        let differs = match server.get(name) {
            Some(current) => current != value && !current.eq_ignore_ascii_case(value),
            None => true,
        };
        if differs {
            if name.eq_ignore_ascii_case("search_path") {
                sql.push_str(&format!(
                    "SET {}={};",
                    quote_ident(name),
                    list_value_sql(value)
                ));
            } else {
                sql.push_str(&format!(
                    "SET {}={};",
                    quote_ident(name),
                    quote_literal(value)
                ));
            }
        }
    }
    if sql.is_empty() { None } else { Some(sql) }
}

fn quote_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn quote_ident(name: &str) -> String {
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_keeps_spelling() {
        let mut p = ParamSet::new();
        p.set("DateStyle", "ISO, MDY");
        p.set("datestyle", "ISO, DMY");
        assert_eq!(p.get("DATESTYLE"), Some("ISO, DMY"));
        assert_eq!(p.iter().next().map(|(k, _)| k), Some("DateStyle"));
    }

    #[test]
    fn sync_query_sets_only_differences() {
        let mut client = ParamSet::new();
        client.set("application_name", "it's me");
        client.set("client_encoding", "UTF8");
        let mut server = ParamSet::new();
        server.set("client_encoding", "utf8");
        server.set("application_name", "");
        assert_eq!(
            sync_query(&client, &server).as_deref(),
            Some("SET application_name='it''s me';")
        );
        server.set("application_name", "it's me");
        assert_eq!(sync_query(&client, &server), None);
    }

    #[test]
    fn empty_search_path_is_a_valid_set() {
        let mut client = ParamSet::new();
        client.set("search_path", "\"\"");
        let mut server = ParamSet::new();
        server.set("search_path", "\"$user\", public");
        assert_eq!(
            sync_query(&client, &server).as_deref(),
            Some("SET search_path='';")
        );
    }

    #[test]
    fn tracked_names_add_extras_once() {
        let t = tracked_names(&["IntervalStyle".into(), "datestyle".into()]);
        assert_eq!(t.len(), 6);
        assert!(is_tracked("intervalstyle", &t));
        assert!(!is_tracked("search_path", &t));
    }
}
