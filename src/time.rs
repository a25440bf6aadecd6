//! Times are stored as UTC in `TIMESTAMP` columns (the portable schema has no time-zone type) and
//! shown to clients as RFC 3339 with a `Z`.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::Serializer;

/// Now, to the microsecond: PostgreSQL keeps no finer, so a stored time reads back equal.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn rfc3339(time: &NaiveDateTime) -> String {
    time.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses a client-given RFC 3339 time (any offset) into stored UTC.
pub fn parse_rfc3339(raw: &str) -> Result<NaiveDateTime, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|time| time.naive_utc())
        .map_err(|_| format!("{raw:?} is not an RFC 3339 time such as 2026-01-31T09:00:00Z"))
}

pub fn serialize<S: Serializer>(time: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(time))
}

pub fn serialize_option<S: Serializer>(
    time: &Option<NaiveDateTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// The clock sessions and SAML checks read. It is the system clock, moved by an offset that only
/// tests change, so a test can live through a 15-minute session without waiting for it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_seconds: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> NaiveDateTime {
        let offset = self
            .offset_seconds
            .load(std::sync::atomic::Ordering::Relaxed);
        now() + chrono::TimeDelta::seconds(offset)
    }

    /// Moves this clock (and every copy of it) forward.
    pub fn advance(&self, by: chrono::TimeDelta) {
        self.offset_seconds
            .fetch_add(by.num_seconds(), std::sync::atomic::Ordering::Relaxed);
    }
}
