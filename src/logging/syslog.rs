//! `syslog = 1`: every log line also goes to the local syslog daemon over `/dev/log` (RFC 3164
//! datagrams, `syslog_ident[pid]: LEVEL ...`, facility from `syslog_facility`). Hand-rolled:
//! one datagram per event is all PgBouncer does too, and it avoids a dependency for ~60 lines.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

const SYSLOG_SOCKET: &str = "/dev/log";

/// Facility numbers, by PgBouncer's `syslog_facility` names.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "auth" => 4,
        "authpriv" => 10,
        "daemon" => 3,
        "user" => 1,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

struct Target {
    socket: UnixDatagram,
    facility: u8,
    ident: String,
}

/// A `MakeWriter` sending each formatted event as one syslog datagram.
#[derive(Clone)]
pub struct SyslogWriter {
    target: Arc<Target>,
}

impl SyslogWriter {
    pub fn connect(ident: &str, facility: &str) -> io::Result<SyslogWriter> {
        SyslogWriter::connect_to(std::path::Path::new(SYSLOG_SOCKET), ident, facility)
    }

    fn connect_to(path: &std::path::Path, ident: &str, facility: &str) -> io::Result<SyslogWriter> {
        let facility = facility_code(facility).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown syslog_facility {facility:?}"),
            )
        })?;
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(SyslogWriter {
            target: Arc::new(Target {
                socket,
                facility,
                ident: ident.to_string(),
            }),
        })
    }
}

/// One event: `tracing_subscriber::fmt` formats an event into a buffer and writes it at once,
/// so each `write` is one datagram.
pub struct Datagram {
    target: Arc<Target>,
    severity: u8,
}

impl io::Write for Datagram {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        let msg = format!(
            "<{}>{}[{}]: {}",
            u16::from(self.target.facility) * 8 + u16::from(self.severity),
            self.target.ident,
            std::process::id(),
            line.trim_end()
        );
        // A full or absent syslog daemon must never stall or fail the pooler.
        let _ = self.target.socket.send(msg.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = Datagram;

    fn make_writer(&'a self) -> Datagram {
        Datagram {
            target: self.target.clone(),
            severity: 6,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Datagram {
        Datagram {
            target: self.target.clone(),
            severity: severity(meta.level()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_follow_syslog_numbers() {
        assert_eq!(facility_code("daemon"), Some(3));
        assert_eq!(facility_code("LOCAL0"), Some(16));
        assert_eq!(facility_code("bogus"), None);
    }

    #[test]
    fn one_datagram_per_event_with_priority_and_ident() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).expect("bind");
        let w = SyslogWriter::connect_to(&path, "pgbouncer", "local0").expect("connect");
        let meta = tracing::Metadata::new(
            "e",
            "t",
            Level::WARN,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        w.make_writer_for(&meta)
            .write_all(b"WARNING something\n")
            .expect("write");
        let mut buf = [0u8; 256];
        let n = daemon.recv(&mut buf).expect("recv");
        let got = String::from_utf8_lossy(&buf[..n]);
        // local0 (16) * 8 + warning (4) = 132
        assert_eq!(
            got,
            format!("<132>pgbouncer[{}]: WARNING something", std::process::id())
        );
    }

    struct Callsite;
    static CALLSITE: Callsite = Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("never registered")
        }
    }
}
