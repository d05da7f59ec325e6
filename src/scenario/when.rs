//! Points in time for validity windows: `now`, relative offsets (`-1h`, `+30d`, `90m`) or an
//! absolute RFC 3339 time. Relative ones are resolved when certificates are generated, so a
//! scenario that says "expired yesterday" stays expired however old the file is.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, relative to "now" or absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TimeSpec {
    /// This many seconds from now (negative: in the past).
    Relative(i64),
    /// A fixed instant.
    Absolute(OffsetDateTime),
}

/// Why a time could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: expected `now`, an offset such as `-1h`, `+30d`, `90m`, `15s`, `2w`, or an RFC 3339 time such as `2030-01-01T00:00:00Z`"
)]
pub struct TimeSpecError(String);

impl TimeSpec {
    /// An offset of `seconds` from now.
    pub const fn relative_seconds(seconds: i64) -> TimeSpec {
        TimeSpec::Relative(seconds)
    }

    /// The instant this spec denotes, given what "now" is.
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            TimeSpec::Relative(seconds) => now.saturating_add(time::Duration::seconds(seconds)),
            TimeSpec::Absolute(at) => at,
        }
    }
}

impl FromStr for TimeSpec {
    type Err = TimeSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimeSpecError(text.to_owned());
        let trimmed = text.trim();
        if trimmed == "now" {
            return Ok(TimeSpec::Relative(0));
        }
        if let Ok(at) = OffsetDateTime::parse(trimmed, &Rfc3339) {
            return Ok(TimeSpec::Absolute(at));
        }
        let (sign, rest) = match trimmed.as_bytes().first() {
            Some(b'-') => (-1, &trimmed[1..]),
            Some(b'+') => (1, &trimmed[1..]),
            _ => (1, trimmed),
        };
        let unit_at = rest.len().checked_sub(1).ok_or_else(err)?;
        if !rest.is_char_boundary(unit_at) {
            return Err(err());
        }
        let (digits, unit) = rest.split_at(unit_at);
        let unit_seconds: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "w" => 7 * 86400,
            _ => return Err(err()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let amount: i64 = digits.parse().map_err(|_| err())?;
        // Certificates cannot express times past year 9999; cap far below i64 overflow.
        const LIMIT: i64 = 10_000 * 366 * 86400;
        let seconds = amount.checked_mul(unit_seconds).ok_or_else(err)?;
        if seconds > LIMIT {
            return Err(err());
        }
        Ok(TimeSpec::Relative(sign * seconds))
    }
}

impl TryFrom<String> for TimeSpec {
    type Error = TimeSpecError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<TimeSpec> for String {
    fn from(spec: TimeSpec) -> String {
        spec.to_string()
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TimeSpec::Relative(0) => f.write_str("now"),
            TimeSpec::Relative(s) => {
                let sign = if s < 0 { '-' } else { '+' };
                let abs = s.unsigned_abs();
                let (amount, unit) = [(7 * 86400, 'w'), (86400, 'd'), (3600, 'h'), (60, 'm')]
                    .into_iter()
                    .find(|(unit, _)| abs % unit == 0)
                    .map_or((abs, 's'), |(unit, c)| (abs / unit, c));
                write!(f, "{sign}{amount}{unit}")
            }
            TimeSpec::Absolute(at) => match at.format(&Rfc3339) {
                Ok(text) => f.write_str(&text),
                Err(_) => write!(f, "{at}"),
            },
        }
    }
}

impl JsonSchema for TimeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`now`, an offset from now such as `-1h`, `+30d`, `90m`, `15s`, `2w`, or an RFC 3339 time",
            "pattern": "^(now|[+-]?[0-9]+[smhdw]|[0-9]{4}-.*)$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_sign_and_unit() {
        assert_eq!("-1h".parse(), Ok(TimeSpec::Relative(-3600)));
        assert_eq!("+30d".parse(), Ok(TimeSpec::Relative(30 * 86400)));
        assert_eq!("90m".parse(), Ok(TimeSpec::Relative(5400)));
        assert_eq!("now".parse(), Ok(TimeSpec::Relative(0)));
    }

    #[test]
    fn rfc3339_parses_as_absolute() {
        let spec: TimeSpec = "2030-01-01T00:00:00Z".parse().expect("valid time");
        assert!(matches!(spec, TimeSpec::Absolute(at) if at.year() == 2030));
    }

    #[test]
    fn garbage_is_rejected_with_the_accepted_forms() {
        for bad in [
            "",
            "-",
            "1x",
            "h",
            "+-1d",
            "1.5h",
            "99999999999999999999d",
            "é",
        ] {
            let err = bad.parse::<TimeSpec>().expect_err(bad);
            assert!(err.to_string().contains("expected `now`"), "{err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["now", "-1h", "+30d", "+2w", "-15s", "+90m"] {
            let spec: TimeSpec = text.parse().expect(text);
            let again: TimeSpec = spec.to_string().parse().expect("round trip");
            assert_eq!(spec, again, "{text}");
        }
    }
}
