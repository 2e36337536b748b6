//! Table tests for `hba.rs`: one rules file, then connections and the method each must get.

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::config::ident::IdentMaps;

const RULES: &str = r#"
# types, then odd whitespace
 	 	
local   dbpeer   all     peer
local   all      upw     password
local   all      all     md5

hostssl   all  all   10.0.0.0/8         cert
hostnossl all  all   11.0.0.0/8         md5
host      all  all   127.0.0.0  255.255.255.0   password
host      only1 all  0.0.0.0/0          scram-sha-256

host  a,b , c   u1,"u 2" 16.0.0.0/8  trust # a comment
host  "all"  "all"     19.0.0.0/8  reject
host  all    all       19.0.0.0/8  cert
host  same   sameuser  20.0.0.0/8  trust
host  replication  repl  21.0.0.0/8  trust

host  nets  u   128.0.0.0/9  trust
host  nets  u   128.0.0.0/1  reject
host  nets  u   ff11::/16    md5
host  nets  u   ::1/128      trust
host  anyaddr u all          md5

host  mapped  all  30.0.0.0/8  cert map=m1
host  missing all  30.0.0.0/8  cert map=nosuchmap
host  bad     all  30.0.0.0/40 md5
host  bad     all  30.0.0.0/8  md5 extra
bogus bad     all  30.0.0.0/8  md5
host  bad     all  30.0.0.0/8  kerberos
"#;

fn rules() -> HbaRules {
    let ident = IdentMaps::parse("m1 somecn someuser\n");
    HbaRules::parse(RULES, Path::new("/nonexistent/hba.conf"), &ident)
}

fn tcp(ip: &str, tls: bool) -> Peer {
    Peer::Tcp {
        ip: ip.parse::<IpAddr>().expect("ip"),
        tls,
    }
}

#[test]
fn each_connection_gets_the_first_matching_rule() {
    let r = rules();
    let cases: &[(Peer, &str, &str, Option<HbaMethod>)] = &[
        (Peer::Unix, "dbpeer", "x", Some(HbaMethod::Peer)),
        (Peer::Unix, "other", "upw", Some(HbaMethod::Password)),
        (Peer::Unix, "other", "x", Some(HbaMethod::Md5)),
        // hostssl / hostnossl follow TLS
        (tcp("10.1.1.1", true), "db", "u", Some(HbaMethod::Cert)),
        (tcp("10.1.1.1", false), "db", "u", None),
        (tcp("11.1.1.1", false), "db", "u", Some(HbaMethod::Md5)),
        (tcp("11.1.1.1", true), "db", "u", None),
        // address + separate mask
        (tcp("127.0.0.3", true), "db", "u", Some(HbaMethod::Password)),
        (tcp("127.0.1.3", false), "db", "u", None),
        (
            tcp("127.0.1.3", false),
            "only1",
            "u",
            Some(HbaMethod::ScramSha256),
        ),
        // lists with spaces around commas and quoted names
        (tcp("16.0.0.1", false), "b", "u 2", Some(HbaMethod::Trust)),
        (tcp("16.0.0.1", false), "c", "u1", Some(HbaMethod::Trust)),
        (tcp("16.0.0.1", false), "d", "u1", None),
        // a quoted "all" is a name, not the keyword
        (
            tcp("19.0.0.2", false),
            "all",
            "all",
            Some(HbaMethod::Reject),
        ),
        (tcp("19.0.0.2", false), "db", "x", Some(HbaMethod::Cert)),
        (
            tcp("20.0.0.1", false),
            "same",
            "same",
            Some(HbaMethod::Trust),
        ),
        (tcp("20.0.0.1", false), "same", "other", None),
        // masks: the narrowest listed first wins
        (tcp("128.1.1.1", false), "nets", "u", Some(HbaMethod::Trust)),
        (
            tcp("254.1.1.1", false),
            "nets",
            "u",
            Some(HbaMethod::Reject),
        ),
        (tcp("ff11:2::1", false), "nets", "u", Some(HbaMethod::Md5)),
        (tcp("ff22::1", false), "nets", "u", None),
        (tcp("::1", false), "nets", "u", Some(HbaMethod::Trust)),
        // an IPv4 client through an IPv6 socket
        (
            tcp("::ffff:128.1.1.1", false),
            "nets",
            "u",
            Some(HbaMethod::Trust),
        ),
        (tcp("8.8.8.8", false), "anyaddr", "u", Some(HbaMethod::Md5)),
        (tcp("30.1.1.1", true), "mapped", "u", Some(HbaMethod::Cert)),
        // broken lines are skipped, not applied
        (tcp("30.1.1.1", true), "missing", "u", None),
        (tcp("30.1.1.1", true), "bad", "u", None),
    ];
    for (peer, db, user, want) in cases {
        let got = r.eval(*peer, false, db, user).map(|rule| rule.method);
        assert_eq!(got, *want, "{peer:?} db={db} user={user}");
    }
}

#[test]
fn replication_matches_only_replication_rules() {
    let r = rules();
    let rule = r.eval(tcp("21.0.0.1", false), true, "anything", "repl");
    assert_eq!(rule.map(|r| r.method), Some(HbaMethod::Trust));
    assert!(r.eval(tcp("16.0.0.1", false), true, "a", "u1").is_none());
}

#[test]
fn maps_resolve_and_broken_lines_are_reported() {
    let r = rules();
    let mapped = r
        .eval(tcp("30.1.1.1", true), false, "mapped", "u")
        .expect("rule");
    let map = mapped.ident_map.as_ref().expect("map");
    assert!(map.allows("somecn", "someuser"));
    let broken: Vec<&String> = r
        .warnings
        .iter()
        .filter(|w| w.starts_with("could not parse"))
        .collect();
    assert_eq!(broken.len(), 5, "{:#?}", r.warnings);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("Ident map nosuchmap is not found")),
        "{:#?}",
        r.warnings
    );
}

#[test]
fn names_can_come_from_a_file_beside_the_rules() {
    let dir = std::env::temp_dir().join(format!("krbouncer-hba-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("users.list"), "alice, bob\n\n# c\ncarol\n").expect("write");
    let hba = dir.join("hba.conf");
    let r = HbaRules::parse(
        "host all @users.list 0.0.0.0/0 md5\n",
        &hba,
        &IdentMaps::default(),
    );
    for user in ["alice", "bob", "carol"] {
        assert!(
            r.eval(tcp("1.2.3.4", false), false, "d", user).is_some(),
            "{user}"
        );
    }
    assert!(r.eval(tcp("1.2.3.4", false), false, "d", "dave").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_file_refuses_everyone() {
    let r = HbaRules::load(Path::new("/nonexistent/hba.conf"), &IdentMaps::default());
    assert!(r.rules.is_empty());
    assert!(r.warnings[0].starts_with("could not open hba config file"));
}
