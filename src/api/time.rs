//! Timestamps in grants: parsing what users write, formatting what the operator records.
//!
//! Users write RFC 3339 timestamps with an explicit zone (`Z` or `±hh:mm`) and an upper-case
//! `T` separator, the form Kubernetes itself writes; the CRD schema enforces the same shape
//! with [`TIMESTAMP_PATTERN`] so a zone-less time never reaches the operator. The operator records every time in UTC with millisecond precision
//! (`2026-11-29T12:00:00.250Z`; the fraction is omitted when it is zero).

use jiff::{Timestamp, Unit};

/// The regular expression the CRD schema applies to `spec.startsAt` and `spec.expiresAt`:
/// RFC 3339 `date-time` with an upper-case `T` and a mandatory zone designator (`Z` or
/// `±hh:mm`).
pub const TIMESTAMP_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// The CEL rule the CRD schema applies to `spec.startsAt` and `spec.expiresAt`:
/// [`TIMESTAMP_PATTERN`] (a CEL rule rather than an OpenAPI `pattern`, so that the API
/// server's message is readable).
pub const TIMESTAMP_SHAPE_RULE: &str =
    "self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$')";

/// Why a timestamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not shaped like an RFC 3339 date-time with a zone.
    #[error("{input:?} is not an RFC 3339 time with a zone, e.g. 2026-11-29T18:00:00Z or 2026-11-29T19:00:00+01:00")]
    Malformed {
        /// The whole input.
        input: String,
    },
    /// Shaped right, but not a real instant (e.g. February 30, offset +99:99).
    #[error("{input:?} is not a valid time: {reason}")]
    Invalid {
        /// The whole input.
        input: String,
        /// What is wrong, as the time parser says it.
        reason: String,
    },
}

/// Parses an RFC 3339 timestamp that carries a zone (`Z` or `±hh:mm`).
///
/// Returns the instant it names (an absolute point in time, no zone attached);
/// [`TimeError::Malformed`] when the zone is missing or the shape differs from RFC 3339
/// (e.g. a bracketed IANA zone name); [`TimeError::Invalid`] when the shape is right but
/// the date or offset is impossible (e.g. February 30).
pub fn parse_timestamp(input: &str) -> Result<Timestamp, TimeError> {
    let malformed = || TimeError::Malformed {
        input: input.to_owned(),
    };
    if input.as_bytes().get(10) != Some(&b'T') || !has_rfc3339_zone(input) || input.contains('[') {
        return Err(malformed());
    }
    input.parse::<Timestamp>().map_err(|e| TimeError::Invalid {
        input: input.to_owned(),
        reason: e.to_string(),
    })
}

/// Formats an instant the way the operator records it: UTC, `Z`, milliseconds only when
/// non-zero, e.g. `2026-11-29T12:00:00Z` or `2026-11-29T12:00:00.250Z`.
pub fn format_timestamp(at: Timestamp) -> String {
    truncate_to_millis(at).to_string()
}

/// Drops everything below one millisecond, the precision the operator works at.
pub fn truncate_to_millis(at: Timestamp) -> Timestamp {
    at.round(
        jiff::TimestampRound::new()
            .smallest(Unit::Millisecond)
            .mode(jiff::RoundMode::Trunc),
    )
    .unwrap_or(at)
}

/// True when the string ends in `Z` or a numeric `±hh:mm` offset.
fn has_rfc3339_zone(input: &str) -> bool {
    if input.ends_with('Z') {
        return true;
    }
    let bytes = input.as_bytes();
    if bytes.len() < 6 {
        return false;
    }
    let tail = &bytes[bytes.len() - 6..];
    matches!(tail[0], b'+' | b'-')
        && tail[1].is_ascii_digit()
        && tail[2].is_ascii_digit()
        && tail[3] == b':'
        && tail[4].is_ascii_digit()
        && tail[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zoned_rfc3339_and_normalises_to_utc() {
        let t = parse_timestamp("2026-11-29T19:00:00+01:00").expect("valid");
        assert_eq!(format_timestamp(t), "2026-11-29T18:00:00Z");
        let t = parse_timestamp("2026-11-29T18:00:00.250Z").expect("valid");
        assert_eq!(format_timestamp(t), "2026-11-29T18:00:00.25Z");
    }

    #[test]
    fn rejects_times_without_zone_or_in_other_shapes() {
        for bad in [
            "2026-11-29T18:00:00",
            "2026-11-29",
            "2026-11-29T18:00:00+01",
            "2026-11-29T18:00:00+01:00[Europe/Paris]",
            "2026-11-29t18:00:00z",
            "2026-11-29 18:00:00Z",
            "tomorrow",
            "",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn impossible_dates_say_why() {
        let err = parse_timestamp("2026-02-30T18:00:00Z").expect_err("no February 30");
        assert!(matches!(err, TimeError::Invalid { .. }), "{err}");
        assert!(!err.to_string().contains("with a zone"), "{err}");
    }

    #[test]
    fn the_schema_rule_is_the_pattern() {
        assert!(TIMESTAMP_SHAPE_RULE.contains(TIMESTAMP_PATTERN));
    }

    #[test]
    fn truncates_below_milliseconds() {
        let t = parse_timestamp("2026-11-29T18:00:00.123456789Z").expect("valid");
        assert_eq!(format_timestamp(t), "2026-11-29T18:00:00.123Z");
    }
}
