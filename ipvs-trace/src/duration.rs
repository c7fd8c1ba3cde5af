//! Human durations on the command line: `30s`, `500ms`, `5m`, `1h`, `1m30s`, `7d`.
//!
//! A bare number is refused rather than guessed: `--duration 30` could mean seconds or
//! milliseconds, and a wrong guess silently ends (or prolongs) a trace.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration: expected e.g. 30s, 500ms, 5m or 1h")]
    Empty,
    #[error("{0:?} has no unit: write e.g. {0}s (units: ms, s, m, h, d)")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in {input:?}: use ms, s, m, h or d")]
    UnknownUnit { input: String, unit: String },
    #[error("{0:?} is not a duration: expected numbers with units, e.g. 30s, 500ms or 1m30s")]
    Syntax(String),
    #[error("{0:?} is too long")]
    Overflow(String),
}

/// Parses a sequence of `<integer><unit>` parts, units `ms`, `s`, `m`, `h`, `d`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let overflow = || DurationError::Overflow(input.to_owned());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Syntax(input.to_owned()));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "" if rest.is_empty() && total.is_zero() => {
                return Err(DurationError::MissingUnit(input.to_owned()));
            }
            "" => return Err(DurationError::Syntax(input.to_owned())),
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(overflow)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(overflow)?),
            "d" => Duration::from_secs(value.checked_mul(86_400).ok_or_else(overflow)?),
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        total = total.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_mins(5)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_hours(2)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_hours(168)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
    }

    #[test]
    fn refuses_a_bare_number() {
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        assert_eq!(
            parse_duration("30").unwrap_err().to_string(),
            "\"30\" has no unit: write e.g. 30s (units: ms, s, m, h, d)"
        );
        assert_eq!(
            parse_duration("1m30"),
            Err(DurationError::Syntax("1m30".into()))
        );
    }

    #[test]
    fn refuses_unknown_units_and_junk() {
        assert_eq!(
            parse_duration("3w"),
            Err(DurationError::UnknownUnit {
                input: "3w".into(),
                unit: "w".into()
            })
        );
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("s"), Err(DurationError::Syntax("s".into())));
        assert_eq!(
            parse_duration("-5s"),
            Err(DurationError::Syntax("-5s".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::Syntax("1.5s".into()))
        );
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow("99999999999999999999s".into()))
        );
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow("18446744073709551615h".into()))
        );
    }
}
