//! Value parsers and renderers with PgBouncer's semantics: `CF_INT` (C `strtol` base 0, so
//! `0777` is octal and `0x10` hex), `CF_UINT`, `CF_TIME_USEC` (seconds with fractions, no unit
//! suffixes), 0/1 flags, case-insensitive lookups, `atoi` for connection strings, and `%g`
//! rendering of times for SHOW CONFIG.

use std::num::{ParseFloatError, TryFromIntError};
use std::time::Duration;

/// Why a setting's text is not a valid value. The texts are krbouncer's established wording:
/// they follow `invalid value "..." for parameter ...: ` in `--check` output and logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not an integer")]
    NotInteger,
    #[error("integer out of range")]
    IntegerOutOfRange(#[source] TryFromIntError),
    #[error("not a boolean (0/1)")]
    NotBoolean,
    #[error("not a number of seconds")]
    NotSeconds(#[source] ParseFloatError),
    #[error("not a non-negative number of seconds")]
    NegativeSeconds,
    #[error("time out of range")]
    TimeOutOfRange,
    /// A lookup setting given a word outside its table; `allowed` is `a|b|c`.
    #[error("expected one of {allowed}")]
    NotOneOf { allowed: String },
    /// PgBouncer's `CF_AUTHDB` check: the admin console cannot serve `auth_query`.
    #[error("cannot use the reserved \"{0}\" database as an auth_dbname")]
    ReservedAuthDb(String),
}

/// C `strtol(value, &end, 0)` that must consume the whole string; `None` if it does not or the
/// result leaves `i64`.
fn strtol_base0(value: &str) -> Option<i64> {
    let s = value.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, hex)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// `CF_INT`: a C `int` written in decimal, octal (`0…`) or hex (`0x…`).
pub(crate) fn parse_int(value: &str) -> Result<i32, ValueError> {
    let n = strtol_base0(value).ok_or(ValueError::NotInteger)?;
    i32::try_from(n).map_err(ValueError::IntegerOutOfRange)
}

/// `CF_UINT`: an unsigned C `int`.
pub(crate) fn parse_uint(value: &str) -> Result<u32, ValueError> {
    let n = strtol_base0(value).ok_or(ValueError::NotInteger)?;
    u32::try_from(n).map_err(ValueError::IntegerOutOfRange)
}

/// A 0/1 setting. PgBouncer stores these as `CF_INT` (any non-zero integer is on); the usual
/// boolean words are accepted as well.
pub(crate) fn parse_flag(value: &str) -> Result<bool, ValueError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => return Ok(true),
        "off" | "no" | "false" => return Ok(false),
        _ => {}
    }
    parse_int(value)
        .map(|n| n != 0)
        .map_err(|_| ValueError::NotBoolean)
}

/// `CF_TIME_USEC`: non-negative seconds, fractions allowed ("0.5", "15", "1e3"). Truncated to
/// microseconds like PgBouncer's `(usec_t)(USEC * v)`.
pub(crate) fn parse_time(value: &str) -> Result<Duration, ValueError> {
    let s = value.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let secs: f64 = s.parse().map_err(ValueError::NotSeconds)?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(ValueError::NegativeSeconds);
    }
    let micros = secs * 1e6;
    if micros >= u64::MAX as f64 {
        return Err(ValueError::TimeOutOfRange);
    }
    Ok(Duration::from_micros(micros as u64))
}

/// How PgBouncer shows a time: C `printf("%g", seconds)`.
pub(crate) fn render_time(d: Duration) -> String {
    format_g(d.as_micros() as f64 / 1e6)
}

/// C `printf("%g")`: 6 significant digits, trailing zeros removed, exponent form when the
/// exponent is below -4 or at least 6.
pub(crate) fn format_g(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    // Round to 6 significant digits first: the exponent is that of the rounded value.
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (5 - exp).max(0) as usize;
        trim_fraction(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C `atoi`: leading spaces, an optional sign, then digits; anything after is ignored and no
/// digits means 0. PgBouncer reads connection-string numbers this way; we warn when the text
/// was not a clean integer so typos do not pass silently.
pub fn atoi(value: &str) -> i64 {
    let s = value.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(18)
        .collect();
    let n: i64 = digits.parse().unwrap_or(0);
    let clean = !digits.is_empty() && digits.len() == s.len();
    if !clean {
        tracing::warn!(
            value,
            parsed = if negative { -n } else { n },
            "connection string number is not a plain integer"
        );
    }
    if negative { -n } else { n }
}

/// Splits a comma list (`admin_users`, `ignore_startup_parameters`, …) into trimmed, non-empty
/// items.
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_follow_strtol_base_0() {
        assert_eq!(parse_int("6432"), Ok(6432));
        assert_eq!(parse_int("0777"), Ok(0o777));
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("-1"), Ok(-1));
        assert_eq!(parse_int(" 5"), Ok(5));
        assert_eq!(parse_int("0"), Ok(0));
        assert!(parse_int("5k").is_err());
        assert!(parse_int("").is_err());
        assert!(parse_int("09").is_err());
        assert!(parse_int("99999999999").is_err());
        assert_eq!(parse_uint("2147483647"), Ok(2147483647));
        assert!(parse_uint("-1").is_err());
    }

    #[test]
    fn flags_accept_ints_and_words() {
        assert_eq!(parse_flag("1"), Ok(true));
        assert_eq!(parse_flag("0"), Ok(false));
        assert_eq!(parse_flag("2"), Ok(true));
        assert_eq!(parse_flag("On"), Ok(true));
        assert_eq!(parse_flag("no"), Ok(false));
        assert!(parse_flag("maybe").is_err());
    }

    #[test]
    fn times_are_seconds_with_fractions() {
        assert_eq!(parse_time("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_time("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_time("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(parse_time(".25"), Ok(Duration::from_millis(250)));
        assert!(parse_time("-1").is_err());
        assert!(parse_time("10s").is_err());
        assert!(parse_time("inf").is_err());
        assert!(parse_time("nan").is_err());
    }

    #[test]
    fn times_render_like_printf_g() {
        assert_eq!(render_time(Duration::from_secs(3600)), "3600");
        assert_eq!(render_time(Duration::from_millis(500)), "0.5");
        assert_eq!(render_time(Duration::ZERO), "0");
        assert_eq!(render_time(Duration::from_secs(120)), "120");
        assert_eq!(render_time(Duration::from_secs(1_000_000)), "1e+06");
        assert_eq!(render_time(Duration::from_micros(1)), "1e-06");
        assert_eq!(render_time(Duration::from_micros(123_456_789)), "123.457");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(999999.5), "1e+06");
    }

    #[test]
    fn atoi_is_lenient_like_c() {
        assert_eq!(atoi("20"), 20);
        assert_eq!(atoi("-1"), -1);
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("abc"), 0);
    }

    #[test]
    fn comma_lists_trim() {
        assert_eq!(comma_list(" a, b ,,c "), vec!["a", "b", "c"]);
        assert!(comma_list("").is_empty());
    }
}
