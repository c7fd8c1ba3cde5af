//! Kernel timestamps to wall-clock time.
//!
//! The probes stamp events with `bpf_ktime_get_ns()`, i.e. `CLOCK_MONOTONIC`, which counts from
//! boot and does not jump. Users want UTC. The offset between the two clocks is captured once at
//! start: re-reading it per event would make timestamps jump when NTP steps the wall clock
//! mid-trace, and events must stay ordered as the kernel saw them.
//!
//! Formatting is RFC 3339 with nanoseconds and `Z`; the calendar conversion is the classic
//! days-to-civil algorithm (proleptic Gregorian), small enough not to warrant a date crate.

use std::fmt::Write as _;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Converts `CLOCK_MONOTONIC` nanoseconds into nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    /// Captures the current offset between `CLOCK_REALTIME` and `CLOCK_MONOTONIC`.
    ///
    /// The two clocks are read back to back; the few hundred nanoseconds between the reads are
    /// far below what a trace of network connections can resolve.
    pub fn capture() -> std::io::Result<WallClock> {
        let monotonic = read_clock(libc::CLOCK_MONOTONIC)?;
        let realtime = read_clock(libc::CLOCK_REALTIME)?;
        Ok(WallClock {
            offset_ns: realtime - monotonic,
        })
    }

    /// A clock whose monotonic zero is `unix_ns` nanoseconds after the epoch (for tests and
    /// replays with a known start).
    #[must_use]
    pub const fn with_offset(unix_ns: i128) -> WallClock {
        WallClock { offset_ns: unix_ns }
    }

    /// Nanoseconds since the Unix epoch for a `CLOCK_MONOTONIC` timestamp.
    #[must_use]
    pub fn unix_ns(&self, monotonic_ns: u64) -> i128 {
        i128::from(monotonic_ns) + self.offset_ns
    }

    /// The timestamp as RFC 3339 UTC with nanoseconds, e.g. `2026-11-26T17:12:52.123456789Z`.
    #[must_use]
    pub fn rfc3339(&self, monotonic_ns: u64) -> String {
        format_rfc3339(self.unix_ns(monotonic_ns))
    }

    /// The UTC time of day with microseconds, e.g. `17:12:52.123456` (the table's TIME column:
    /// a trace rarely spans days, and the full date would crowd out the addresses).
    #[must_use]
    pub fn time_of_day(&self, monotonic_ns: u64) -> String {
        let t = Civil::from_unix_ns(self.unix_ns(monotonic_ns));
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            t.hour,
            t.minute,
            t.second,
            t.nanos / 1000
        )
    }
}

/// `CLOCK_MONOTONIC` now, in the nanoseconds of event timestamps: to tell which events came
/// before or after a moment userspace chose (`balance`'s window edges).
pub fn monotonic_now_ns() -> std::io::Result<u64> {
    read_clock(libc::CLOCK_MONOTONIC).map(|ns| ns as u64)
}

fn read_clock(clock: libc::clockid_t) -> std::io::Result<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i128::from(ts.tv_sec) * NANOS_PER_SEC + i128::from(ts.tv_nsec))
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nanoseconds.
#[must_use]
pub fn format_rfc3339(unix_ns: i128) -> String {
    let t = Civil::from_unix_ns(unix_ns);
    let mut out = String::with_capacity(30);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.nanos
    );
    out
}

/// Parses an RFC 3339 time (`2026-12-07T14:03:00Z`, `2026-12-07T14:03:00.5+01:00`; `t`, `z`
/// and a space for `T` accepted) into nanoseconds since the Unix epoch. Leap seconds (`:60`)
/// are refused: the kernel's clock never shows one.
pub fn parse_rfc3339(text: &str) -> Result<i128, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-12-07T14:03:00Z");
    if !text.is_ascii() {
        return Err(bad());
    }
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut nanos: u32 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let value: u32 = fraction[..digits].parse().map_err(|_| bad())?;
        nanos = value * 10u32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            let o = rest.as_bytes();
            if o.len() != 6 || o[3] != b':' {
                return Err(bad());
            }
            let digits = |r: std::ops::Range<usize>| -> Result<i64, String> {
                std::str::from_utf8(&o[r])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(bad)
            };
            let (h, m) = (digits(1..3)?, digits(4..6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    Ok(i128::from(secs) * NANOS_PER_SEC + i128::from(nanos))
}

/// Days from 1970-01-01 to the date: the inverse of [`civil_from_days`] (same algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A broken-down UTC time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

impl Civil {
    fn from_unix_ns(unix_ns: i128) -> Civil {
        // Euclidean division keeps times before the epoch on the right day and second.
        let secs = unix_ns.div_euclid(NANOS_PER_SEC) as i64;
        let nanos = unix_ns.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let secs_of_day = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: secs_of_day / 3600,
            minute: secs_of_day / 60 % 60,
            second: secs_of_day % 60,
            nanos,
        }
    }
}

/// Year, month (1..=12), day (1..=31) of the day `days` after 1970-01-01.
///
/// Howard Hinnant's algorithm: shift the epoch to 0000-03-01 so the leap day is the last day of
/// the (March-based) year, then split into 400-year eras of exactly 146 097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_secs: i64, nanos: i128) -> String {
        format_rfc3339(i128::from(unix_secs) * NANOS_PER_SEC + nanos)
    }

    // Expected values come from `date -u -d <time> +%s` (GNU coreutils).
    #[test]
    fn formats_known_dates() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            at(1_795_713_172, 123_456_789),
            "2026-11-26T17:12:52.123456789Z"
        );
        assert_eq!(at(978_307_199, 1), "2000-12-31T23:59:59.000000001Z");
        assert_eq!(at(2_147_483_648, 0), "2038-01-19T03:14:08.000000000Z");
    }

    #[test]
    fn formats_leap_days() {
        // 2000 is a leap year (divisible by 400), 2100 is not (divisible by 100).
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(at(1_709_251_199, 0), "2024-02-29T23:59:59.000000000Z");
        assert_eq!(at(68_212_800, 0), "1972-02-29T12:00:00.000000000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000000Z");
        assert_eq!(at(4_107_542_400 - 1, 0), "2100-02-28T23:59:59.000000000Z");
    }

    #[test]
    fn formats_times_before_the_epoch() {
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59.000000000Z");
        assert_eq!(at(0, -1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_previous_one() {
        // Walks 1900-01-01 .. 2300-01-01 and checks each date is the successor of the last one:
        // catches any off-by-one at month, year and century boundaries.
        let is_leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = |y: i64, m: u32| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil_from_days(-25_567);
        assert_eq!(prev, (1900, 1, 1));
        for days in -25_566..146_097 - 25_567 {
            let (y, m, d) = civil_from_days(days);
            let expected = if prev.2 < days_in(prev.0, prev.1) {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
        assert_eq!(prev, (2299, 12, 31));
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ns in [
            0i128,
            1_795_713_172_123_456_789,
            951_782_400 * NANOS_PER_SEC,
            -1,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns), "{ns}");
        }
        let utc = parse_rfc3339("2026-12-07T14:03:00Z").unwrap();
        assert_eq!(utc, 1_796_652_180 * NANOS_PER_SEC);
        assert_eq!(parse_rfc3339("2026-12-07T15:03:00+01:00"), Ok(utc));
        assert_eq!(parse_rfc3339("2026-12-07 09:33:00-04:30"), Ok(utc));
        assert_eq!(
            parse_rfc3339("2026-12-07t14:03:00.5z"),
            Ok(utc + NANOS_PER_SEC / 2)
        );
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T14:03:00",
            "2026-02-29T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T14:03:60Z",
            "2026-12-07T14:03:00.Z",
            "2026-12-07T14:03:00.1234567890Z",
            "2026-12-07T14:03:00+1:00",
            "2026-13-01T00:00:00Z",
            "２026-12-07T14:03:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn wall_clock_adds_the_offset() {
        let clock = WallClock::with_offset(1_795_713_172 * NANOS_PER_SEC);
        assert_eq!(clock.rfc3339(123_456_789), "2026-11-26T17:12:52.123456789Z");
        assert_eq!(clock.time_of_day(123_456_789), "17:12:52.123456");
    }

    #[test]
    fn captured_clock_is_close_to_system_time() {
        let clock = WallClock::capture().expect("clock_gettime works on Linux");
        let monotonic = read_clock(libc::CLOCK_MONOTONIC).expect("monotonic clock") as u64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("system time after 1970")
            .as_nanos() as i128;
        let diff = (clock.unix_ns(monotonic) - now).abs();
        assert!(diff < NANOS_PER_SEC, "offset off by {diff} ns");
    }
}
