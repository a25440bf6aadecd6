//! A `TIMESTAMP` column read the quick way. SQLite stores times as text, and diesel reads each by
//! trying chrono format strings in turn; a page of 100 users has 200 of them, and parsing them was
//! about an eighth of the time a page took. What idgate writes (`YYYY-MM-DD HH:MM:SS[.fraction]`)
//! is read here digit by digit; any other text goes to diesel's reader. PostgreSQL sends binary.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::Pg;
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

use super::MultiBackend;

/// A stored time, for `#[diesel(deserialize_as = StoredTime)]` on a `NaiveDateTime` field.
#[derive(FromSqlRow)]
pub struct StoredTime(NaiveDateTime);

impl From<StoredTime> for NaiveDateTime {
    fn from(time: StoredTime) -> NaiveDateTime {
        time.0
    }
}

impl FromSql<Timestamp, Sqlite> for StoredTime {
    fn from_sql(mut value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        match parse_written(value.read_text()) {
            Some(time) => Ok(StoredTime(time)),
            None => <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(StoredTime),
        }
    }
}

impl FromSql<Timestamp, Pg> for StoredTime {
    fn from_sql(value: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(StoredTime)
    }
}

impl FromSql<Timestamp, MultiBackend> for StoredTime {
    fn from_sql(value: <MultiBackend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<StoredTime, Timestamp>()
    }
}

/// `YYYY-MM-DD HH:MM:SS` with an optional fraction of one to nine digits, as diesel writes a
/// time to SQLite; None for anything else.
fn parse_written(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |number, &digit| {
            digit
                .is_ascii_digit()
                .then(|| number * 10 + u32::from(digit - b'0'))
        })
    };
    let (written, fraction) = bytes.split_at_checked(19)?;
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, separator)| written[at] != separator)
    {
        return None;
    }
    let field = |at: usize, length: usize| number(&written[at..at + length]);
    let nanoseconds = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let year = i32::try_from(field(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, field(5, 2)?, field(8, 2)?)?;
    let time =
        NaiveTime::from_hms_nano_opt(field(11, 2)?, field(14, 2)?, field(17, 2)?, nanoseconds)?;
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_diesel_writes_and_refuses_the_rest() {
        let written = [
            "2026-12-02 19:35:35",
            "2026-12-02 19:35:35.1",
            "2026-12-02 19:35:35.123456",
            "2026-12-02 19:35:35.123456789",
            "1999-02-28 00:00:00.000001",
        ];
        for text in written {
            let expected = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(parse_written(text), Some(expected), "{text}");
        }
        let others = [
            "2026-12-02T19:35:35",
            "2026-12-02 19:35:35Z",
            "2026-12-02 19:35:35+00:00",
            "2026-12-02 19:35",
            "2026-12-02 19:35:35.",
            "2026-12-02 19:35:35.1234567890",
            "2026-02-30 19:35:35",
            "2026-12-02 24:00:00",
            "2026-1x-02 19:35:35",
            "2459000.5",
            "",
        ];
        for text in others {
            assert_eq!(parse_written(text), None, "{text}");
        }
    }
}
