//! `auth_ident_file`: user name maps for hba `peer` and `cert` rules (`map=NAME`), PgBouncer's
//! subset of PostgreSQL's pg_ident.conf: `MAPNAME SYSTEM-USERNAME PG-USERNAME`, where the
//! PostgreSQL name may be `all`; no regular expressions. A line that does not parse is logged
//! and skipped.

use std::path::Path;

use super::hba_tokens::Tokens;

/// One `SYSTEM-USERNAME PG-USERNAME` pair; `pg_user` None is `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentMapping {
    pub system_user: String,
    pub pg_user: Option<String>,
}

/// The mappings of one map name, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentMap {
    pub name: String,
    pub mappings: Vec<IdentMapping>,
}

impl IdentMap {
    /// Whether `system_user` (the OS user or the certificate's name) may log in as `pg_user`.
    pub fn allows(&self, system_user: &str, pg_user: &str) -> bool {
        self.mappings.iter().any(|m| {
            m.system_user == system_user && m.pg_user.as_deref().is_none_or(|u| u == pg_user)
        })
    }
}

/// Every map of the file, with what was logged while reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentMaps {
    pub maps: Vec<IdentMap>,
    pub warnings: Vec<String>,
}

impl IdentMaps {
    pub fn get(&self, name: &str) -> Option<&IdentMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Reads the file; one that cannot be opened gives no maps and a warning.
    pub fn load(path: &Path) -> IdentMaps {
        match std::fs::read_to_string(path) {
            Ok(text) => IdentMaps::parse(&text),
            Err(e) => IdentMaps {
                maps: Vec::new(),
                warnings: vec![format!(
                    "could not open ident config file {}: {e}",
                    path.display()
                )],
            },
        }
    }

    pub fn parse(text: &str) -> IdentMaps {
        let mut out = IdentMaps::default();
        for (i, line) in text.lines().enumerate() {
            let linenr = i + 1;
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((name, mapping))) => match out.maps.iter_mut().find(|m| m.name == name) {
                    Some(map) => map.mappings.push(mapping),
                    None => out.maps.push(IdentMap {
                        name,
                        mappings: vec![mapping],
                    }),
                },
                Err(why) => {
                    if let Some(why) = why {
                        out.warnings.push(format!("ident line {linenr}: {why}"));
                    }
                    out.warnings
                        .push(format!("could not parse ident config line {linenr}"));
                }
            }
        }
        out
    }
}

/// `Ok(None)` for a blank or comment line; `Err(Some(reason))` names what was wrong.
fn parse_line(line: &str) -> Result<Option<(String, IdentMapping)>, Option<&'static str>> {
    let mut t = Tokens::new(line);
    if t.at_end() {
        return Ok(None);
    }
    let Some(super::hba_tokens::Token::Word(name)) = t.next() else {
        return Err(None);
    };
    let system_user = t.name().ok_or(None)?;
    let pg_user = if t.eat_word("all") {
        None
    } else {
        Some(t.name().ok_or(None)?)
    };
    if !t.at_end() {
        return Err(Some("unsupported parameters"));
    }
    Ok(Some((
        name,
        IdentMapping {
            system_user,
            pg_user,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_group_their_lines_and_all_matches_any_user() {
        let maps = IdentMaps::parse(
            "# MAPNAME SYSTEM PG\n\
             test  pgbouncer.acme.org  someuser\n\
             test2 \"bouncer\"  all\n\
             test  pgbouncer.acme.org  anotheruser\n\
             test2 pgbouncer.acme.org \"anotheruser\"\n\
             broken onlytwo\n\
             extra a b c\n",
        );
        let test = maps.get("test").expect("test map");
        assert_eq!(test.mappings.len(), 2);
        assert!(test.allows("pgbouncer.acme.org", "anotheruser"));
        assert!(!test.allows("pgbouncer.acme.org", "bouncer"));
        let test2 = maps.get("test2").expect("test2 map");
        assert!(test2.allows("bouncer", "anyone"));
        assert!(!test2.allows("pgbouncer.acme.org", "someuser"));
        assert!(maps.get("broken").is_none());
        assert_eq!(
            maps.warnings,
            vec![
                "could not parse ident config line 6",
                "ident line 7: unsupported parameters",
                "could not parse ident config line 7"
            ]
        );
    }
}
