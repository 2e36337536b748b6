//! Result sets the pooler answers itself (the admin console): RowDescription with PgBouncer's
//! column types, DataRow in text format, CommandComplete; and the two parsers the pooler needs
//! for its own queries' results (auth_query): column counts and DataRow values. Sans-IO.

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::message_codec::{Cursor, begin, body_of, finish, put_cstr};

/// Column types as PgBouncer's `pktbuf_write_RowDescription` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// 's': text.
    Text,
    /// 'i': int4.
    Int4,
    /// 'q': int8.
    Int8,
    /// 'N': numeric (the statistics counters).
    Numeric,
    /// 'T': a timestamp sent as text.
    Time,
}

const TEXTOID: u32 = 25;
const INT4OID: u32 = 23;
const INT8OID: u32 = 20;
const NUMERICOID: u32 = 1700;

impl ColType {
    fn oid_and_size(self) -> (u32, i16) {
        match self {
            ColType::Text | ColType::Time => (TEXTOID, -1),
            ColType::Int4 => (INT4OID, 4),
            ColType::Int8 => (INT8OID, 8),
            ColType::Numeric => (NUMERICOID, -1),
        }
    }
}

/// RowDescription ('T'): name, table oid 0, column 0, type oid, size, typmod -1, text format.
pub(crate) fn row_description(buf: &mut BytesMut, cols: &[(&str, ColType)]) {
    let at = begin(buf, b'T');
    buf.put_u16(cols.len() as u16);
    for (name, ty) in cols {
        let (oid, size) = ty.oid_and_size();
        put_cstr(buf, name.as_bytes());
        buf.put_u32(0);
        buf.put_u16(0);
        buf.put_u32(oid);
        buf.put_i16(size);
        buf.put_i32(-1);
        buf.put_u16(0);
    }
    finish(buf, at);
}

/// DataRow ('D') in text format; `None` is SQL NULL.
pub(crate) fn data_row<S: AsRef<str>>(buf: &mut BytesMut, values: &[Option<S>]) {
    let at = begin(buf, b'D');
    buf.put_u16(values.len() as u16);
    for v in values {
        match v {
            Some(v) => {
                let v = v.as_ref().as_bytes();
                buf.put_i32(v.len() as i32);
                buf.put_slice(v);
            }
            None => buf.put_i32(-1),
        }
    }
    finish(buf, at);
}

/// CommandComplete ('C').
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag.as_bytes());
    finish(buf, at);
}

/// EmptyQueryResponse ('I').
pub fn empty_query_response(buf: &mut BytesMut) {
    let at = begin(buf, b'I');
    finish(buf, at);
}

/// RowDescription ('T'): the number of columns (the column details are not needed).
pub fn parse_row_description_columns(msg: &[u8]) -> Result<u16, ProtocolError> {
    let mut c = Cursor::new(body_of(msg, b'T')?, "RowDescription");
    let hi = c.u8()?;
    let lo = c.u8()?;
    Ok(u16::from_be_bytes([hi, lo]))
}

/// DataRow ('D'): each column's bytes, `None` for SQL NULL.
pub fn parse_data_row(msg: &[u8]) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let mut c = Cursor::new(body_of(msg, b'D')?, "DataRow");
    let hi = c.u8()?;
    let lo = c.u8()?;
    let n = u16::from_be_bytes([hi, lo]);
    let mut values = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let len = c.i32()?;
        values.push(match usize::try_from(len) {
            Ok(len) => Some(c.bytes(len)?),
            // -1 is NULL; other negative lengths are malformed
            Err(_) if len == -1 => None,
            Err(_) => return Err(ProtocolError::malformed("DataRow", "negative length")),
        });
    }
    c.expect_end()?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parsers_read_what_the_builders_write() {
        let mut buf = BytesMut::new();
        row_description(&mut buf, &[("a", ColType::Text), ("b", ColType::Text)]);
        assert_eq!(parse_row_description_columns(&buf).expect("parses"), 2);
        let mut row = BytesMut::new();
        data_row(&mut row, &[Some("x"), None]);
        let values = parse_data_row(&row).expect("parses");
        assert_eq!(values, vec![Some(&b"x"[..]), None]);
        // a length past the end, and a negative length other than -1
        assert!(parse_data_row(b"D\0\0\0\x0a\0\x01\0\0\0\x09").is_err());
        assert!(parse_data_row(b"D\0\0\0\x0a\0\x01\xff\xff\xff\xfe").is_err());
    }

    #[test]
    fn row_description_and_data_row_frame_correctly() {
        let mut buf = BytesMut::new();
        row_description(&mut buf, &[("a", ColType::Text), ("b", ColType::Numeric)]);
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        assert_eq!(buf.len(), len + 1);
        let mut row = BytesMut::new();
        data_row(&mut row, &[Some("x"), None]);
        assert_eq!(&row[..], b"D\0\0\0\x0f\0\x02\0\0\0\x01x\xff\xff\xff\xff");
    }
}
