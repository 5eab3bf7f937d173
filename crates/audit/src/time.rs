//! Timestamps in the one RFC 3339 form the log uses, and the clock the writer
//! reads them from.
//!
//! The form is `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: UTC, always nine fraction
//! digits, so every `time` field is 30 bytes and sorts as text. Years run from
//! 1970 to 9999; there are no leap seconds (the system clock has none).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Seconds from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MAX_UNIX_SECS: u64 = 253_402_300_799;
const SECS_PER_DAY: u64 = 86_400;
const NANOS_PER_SEC: u32 = 1_000_000_000;

/// A UTC instant with nanosecond precision, between 1970 and the end of 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: u64,
    nanos: u32,
}

/// A `time` field that is not in the log's RFC 3339 form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {input:?}: expected YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ, UTC, year 1970 to 9999"
)]
pub struct TimestampError {
    /// The text that failed to parse (at most 64 characters of it).
    pub input: String,
}

impl Timestamp {
    /// 1970-01-01T00:00:00.000000000Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// 9999-12-31T23:59:59.999999999Z, the last instant the form can express.
    pub const MAX: Timestamp = Timestamp {
        secs: MAX_UNIX_SECS,
        nanos: NANOS_PER_SEC - 1,
    };

    /// `unix_secs` seconds and `nanos` nanoseconds after the Unix epoch, or
    /// `None` past the end of year 9999 or with `nanos` ≥ 10⁹.
    pub const fn new(unix_secs: u64, nanos: u32) -> Option<Self> {
        if unix_secs > MAX_UNIX_SECS || nanos >= NANOS_PER_SEC {
            None
        } else {
            Some(Timestamp {
                secs: unix_secs,
                nanos,
            })
        }
    }

    /// The instant `time` names, or `None` before 1970 or after 9999.
    pub fn from_system_time(time: SystemTime) -> Option<Self> {
        let since = time.duration_since(UNIX_EPOCH).ok()?;
        Self::new(since.as_secs(), since.subsec_nanos())
    }

    /// Whole seconds since the Unix epoch.
    pub const fn unix_secs(&self) -> u64 {
        self.secs
    }

    /// Nanoseconds past [`Timestamp::unix_secs`], below 10⁹.
    pub const fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    fn fields(&self) -> Fields {
        let days = self.secs / SECS_PER_DAY;
        let rem = self.secs % SECS_PER_DAY;
        let (year, month, day) = civil_from_days(days);
        Fields {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            nanos: self.nanos,
        }
    }
}

struct Fields {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    nanos: u32,
}

/// Year, month (1–12), day (1–31) of the day `days` after 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`, restricted to days ≥ 0 so that every
/// intermediate value is unsigned.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to the given date; `year` must be ≥ 1970 and the date
/// valid (the caller checked both).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Timestamp {
    /// The 30 bytes of the log's form, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`,
    /// written digit by digit (the writer stamps every record with this;
    /// `Display` prints the same bytes).
    pub(crate) fn rfc3339(&self) -> [u8; 30] {
        let t = self.fields();
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        put_digits(&mut out[0..4], t.year);
        put_digits(&mut out[5..7], t.month);
        put_digits(&mut out[8..10], t.day);
        put_digits(&mut out[11..13], t.hour);
        put_digits(&mut out[14..16], t.minute);
        put_digits(&mut out[17..19], t.second);
        put_digits(&mut out[20..29], u64::from(t.nanos));
        out
    }
}

/// Writes the low `out.len()` decimal digits of `n` into `out`, zero-padded.
/// Every field fits its width: years end at 9999, nanoseconds below 10⁹.
fn put_digits(out: &mut [u8], mut n: u64) {
    for d in out.iter_mut().rev() {
        let digit = (n % 10) as u8;
        *d = b'0' + digit;
        n /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.rfc3339();
        // Digits and ASCII punctuation only.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// Reads the unsigned decimal number of exactly `digits.len()` ASCII digits.
fn number(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimestampError {
            input: text.chars().take(64).collect(),
        };
        let b = text.as_bytes();
        let [
            y0,
            y1,
            y2,
            y3,
            b'-',
            m0,
            m1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            mi0,
            mi1,
            b':',
            s0,
            s1,
            b'.',
            n0,
            n1,
            n2,
            n3,
            n4,
            n5,
            n6,
            n7,
            n8,
            b'Z',
        ] = *b
        else {
            return Err(err());
        };
        let year = number(&[y0, y1, y2, y3]).ok_or_else(err)?;
        let month = number(&[m0, m1]).ok_or_else(err)?;
        let day = number(&[d0, d1]).ok_or_else(err)?;
        let hour = number(&[h0, h1]).ok_or_else(err)?;
        let minute = number(&[mi0, mi1]).ok_or_else(err)?;
        let second = number(&[s0, s1]).ok_or_else(err)?;
        let nanos = number(&[n0, n1, n2, n3, n4, n5, n6, n7, n8]).ok_or_else(err)?;
        let date_ok = year >= 1970
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        if !date_ok || hour > 23 || minute > 59 || second > 59 {
            return Err(err());
        }
        let secs =
            days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second;
        let nanos = u32::try_from(nanos).map_err(|_| err())?;
        Timestamp::new(secs, nanos).ok_or_else(err)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Where the writer gets the `time` of each record.
///
/// The writer asks once per record. Tests pass a clock that returns fixed or
/// stepping values so that logs are byte-for-byte reproducible.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time to stamp on the record being written now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
///
/// A clock set before 1970 reads as the epoch and one past 9999 as
/// [`Timestamp::MAX`]: a broken clock must not stop the gate from writing its
/// record, and the record's order is its `seq` anyway.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = SystemTime::now();
        match Timestamp::from_system_time(now) {
            Some(t) => t,
            None if now < UNIX_EPOCH => Timestamp::UNIX_EPOCH,
            None => Timestamp::MAX,
        }
    }
}

/// A clock that always returns the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}
