//! The grant duration grammar: `90m`, `1h30m`, `8h`, `1d`.
//!
//! One grammar, implemented here and mirrored by the CRD schema ([`DURATION_PATTERN`] plus
//! the non-zero rule [`DURATION_NONZERO_RULE`]): a duration is one or more components
//! `<number><unit>` with units `d` (24 hours), `h`, `m` and `s`, written in that order,
//! each unit at most once, each number 1 to 6 decimal digits, and a total greater than
//! zero. Nothing else is accepted: no sign, no fractions, no spaces, no ISO 8601 (`PT1H`),
//! no months or years (their length is not fixed).

use std::fmt;

/// The regular expression of the grammar (RE2/ECMA compatible).
pub const DURATION_PATTERN: &str = "^([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$";

/// The CEL rule the CRD schema applies to `spec.duration`: [`DURATION_PATTERN`] (a CEL rule
/// rather than an OpenAPI `pattern`, so that the API server's message is readable).
pub const DURATION_SHAPE_RULE: &str = "self.matches('^([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$')";

/// The CEL rule the CRD schema applies to `spec.duration`: at least one non-zero digit,
/// which, given [`DURATION_PATTERN`], is the same as "the total is greater than zero".
pub const DURATION_NONZERO_RULE: &str = "self.matches('[1-9]')";

/// Units in the order the grammar requires them, with their length in seconds.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Longest number a single component may carry (the schema says `{1,6}` digits).
const MAX_DIGITS: usize = 6;

/// Why a duration string was rejected. The `Display` text is written for the person who
/// typed the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("duration is empty; use a value such as 90m, 1h30m, 8h or 1d")]
    Empty,
    /// A character that is neither a digit nor one of the units `d`, `h`, `m`, `s`.
    #[error("duration {input:?} has an unexpected {found:?}; use digits and the units d, h, m, s, e.g. 1h30m")]
    UnexpectedChar {
        /// The whole input.
        input: String,
        /// The offending character.
        found: char,
    },
    /// A unit without a number before it, or a number without a unit after it.
    #[error("duration {input:?} is incomplete; every number needs a unit (d, h, m, s), e.g. 90m")]
    Incomplete {
        /// The whole input.
        input: String,
    },
    /// Units out of order (`30m1h`) or repeated (`1h1h`).
    #[error("duration {input:?} must list units at most once and in the order d, h, m, s, e.g. 1d2h30m")]
    Order {
        /// The whole input.
        input: String,
    },
    /// A number longer than six digits.
    #[error("duration {input:?} has a number longer than {MAX_DIGITS} digits")]
    TooManyDigits {
        /// The whole input.
        input: String,
    },
    /// The total is zero (`0s`, `0h0m`).
    #[error("duration {input:?} is zero; it must be at least one second")]
    Zero {
        /// The whole input.
        input: String,
    },
}

/// A validated grant duration, a whole number of seconds greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantDuration {
    seconds: u64,
}

impl GrantDuration {
    /// One hour.
    pub const HOUR: Self = Self { seconds: 3_600 };
    /// One day.
    pub const DAY: Self = Self { seconds: 86_400 };
    /// Seven days, the operator's default maximum grant length.
    pub const WEEK: Self = Self { seconds: 7 * 86_400 };

    /// Parses a duration written in the grammar described in the module docs.
    ///
    /// Takes the string as written in `spec.duration`; returns the duration, or a
    /// [`DurationError`] naming what is wrong. Never panics; the largest value the grammar
    /// allows (`999999d999999h999999m999999s`) fits comfortably in `u64` seconds.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        if input.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut seconds: u64 = 0;
        let mut next_unit = 0; // index into UNITS of the earliest unit still allowed
        let mut digits = String::new();
        for c in input.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == c) else {
                return Err(DurationError::UnexpectedChar {
                    input: input.to_owned(),
                    found: c,
                });
            };
            if digits.is_empty() {
                return Err(DurationError::Incomplete {
                    input: input.to_owned(),
                });
            }
            if pos < next_unit {
                return Err(DurationError::Order {
                    input: input.to_owned(),
                });
            }
            if digits.len() > MAX_DIGITS {
                return Err(DurationError::TooManyDigits {
                    input: input.to_owned(),
                });
            }
            let value: u64 = digits.parse().map_err(|_| DurationError::TooManyDigits {
                input: input.to_owned(),
            })?;
            seconds += value * UNITS[pos].1;
            next_unit = pos + 1;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(DurationError::Incomplete {
                input: input.to_owned(),
            });
        }
        if seconds == 0 {
            return Err(DurationError::Zero {
                input: input.to_owned(),
            });
        }
        Ok(Self { seconds })
    }

    /// Builds a duration from whole seconds; returns `None` for zero.
    pub fn from_secs(seconds: u64) -> Option<Self> {
        (seconds > 0).then_some(Self { seconds })
    }

    /// The length in whole seconds (always > 0).
    pub fn as_secs(self) -> u64 {
        self.seconds
    }

    /// The length as a `jiff::SignedDuration` (for arithmetic on timestamps).
    pub fn to_signed(self) -> jiff::SignedDuration {
        // At most ~1.1e11 seconds (999999 days plus the rest), far below i64::MAX.
        jiff::SignedDuration::from_secs(i64::try_from(self.seconds).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for GrantDuration {
    /// Writes the duration in canonical form of the same grammar, e.g. `1d2h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        for (unit, len) in UNITS {
            let n = rest / len;
            rest %= len;
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        GrantDuration::parse(s).map(GrantDuration::as_secs).unwrap_or(0)
    }

    #[test]
    fn accepts_the_documented_examples() {
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("8h"), 28_800);
        assert_eq!(secs("1d"), 86_400);
        assert_eq!(secs("1d2h3m4s"), 86_400 + 7200 + 180 + 4);
        assert_eq!(secs("45s"), 45);
        assert_eq!(secs("0h1s"), 1);
        assert_eq!(secs("1h90m"), 9000);
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        assert_eq!(GrantDuration::parse(""), Err(DurationError::Empty));
        for bad in ["0s", "0h0m", "000d"] {
            assert!(
                matches!(GrantDuration::parse(bad), Err(DurationError::Zero { .. })),
                "{bad}"
            );
        }
        for bad in ["-1h", "forever", "1y", "1.5.h", "PT1H", "1h 30m", "1.5h", "1H"] {
            assert!(
                matches!(GrantDuration::parse(bad), Err(DurationError::UnexpectedChar { .. })),
                "{bad}"
            );
        }
        for bad in ["h", "1", "1h30", "m5"] {
            assert!(
                matches!(GrantDuration::parse(bad), Err(DurationError::Incomplete { .. })),
                "{bad}"
            );
        }
        for bad in ["30m1h", "1h1h", "1s1d"] {
            assert!(
                matches!(GrantDuration::parse(bad), Err(DurationError::Order { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            GrantDuration::parse("1234567h"),
            Err(DurationError::TooManyDigits { .. })
        ));
    }

    #[test]
    fn the_schema_rule_is_the_grammar() {
        assert!(DURATION_SHAPE_RULE.contains(DURATION_PATTERN));
    }

    #[test]
    fn largest_value_does_not_overflow() {
        let d = GrantDuration::parse("999999d999999h999999m999999s");
        assert!(d.is_ok());
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (input, canonical) in [("90m", "1h30m"), ("1d", "1d"), ("3661s", "1h1m1s")] {
            let d = GrantDuration::parse(input).expect("valid");
            assert_eq!(d.to_string(), canonical);
            assert_eq!(GrantDuration::parse(canonical), Ok(d));
        }
    }
}
