//! The result-set helpers every SHOW uses: rows of text, writing a table, PgBouncer's time
//! format.

use bytes::BytesMut;

use crate::protocol::result_set::{ColType, data_row, row_description};

/// Rows of text values; `None` is NULL.
pub(crate) type Rows = Vec<Vec<Option<String>>>;

/// Writes a whole result set (RowDescription + DataRows); the caller completes it.
pub(crate) fn table(buf: &mut BytesMut, cols: &[(&str, ColType)], rows: &Rows) {
    row_description(buf, cols);
    for r in rows {
        data_row(buf, r);
    }
}

/// A non-NULL text value.
pub(crate) fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// `usec_t` as PgBouncer's `format_time_s` renders it (UTC here).
pub(crate) fn format_time_us(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_like_pgbouncer() {
        assert_eq!(format_time_us(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC
        assert_eq!(
            format_time_us(1_709_210_096_000_000),
            "2024-02-29 12:34:56 UTC"
        );
    }
}
