//! Durations as operators write them (`500ms`, `30s`, `5m`, `24h`, `7d`, `1h30m`, or
//! plain seconds): the one parser every binary's flags use, and [`HumanDuration`],
//! which prints a duration back the same way (for `--help` defaults).

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing given.
    #[error("empty duration: give a number with a unit, e.g. 30s, 5m, 24h")]
    Empty,
    /// A unit without a number before it, or a character that is neither.
    #[error("bad duration {0:?}: expected a number, e.g. 30s, 5m, 24h")]
    ExpectedNumber(String),
    /// A number too large for a `u64`.
    #[error("bad duration {0:?}: number too large")]
    TooLarge(String),
    /// A number without a unit in a compound duration (`1h30`).
    #[error("bad duration {0:?}: missing unit (ms, s, m, h, d)")]
    MissingUnit(String),
    /// A unit this parser does not know.
    #[error("bad duration {text:?}: unknown unit {unit:?} (use ms, s, m, h, d)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
}

/// Parses a human duration: `500ms`, `2s`, `5m`, `24h`, `7d`, or plain seconds
/// (`90`). Compound forms such as `1h30m` are accepted too; fractions and signs are
/// not.
///
/// ```
/// use std::time::Duration;
/// use revocast_core::duration::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::ExpectedNumber(text.to_owned()));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge(text.to_owned()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" | "sec" | "secs" => Duration::from_secs(number),
            "m" | "min" | "mins" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A [`Duration`] that parses with [`parse_duration`] and prints the same way
/// (`1h30m`, `250ms`, `0s`), so that a flag's default is written once, as a
/// `Duration`, and `--help` still shows it readably.
///
/// ```
/// use std::time::Duration;
/// use revocast_core::duration::HumanDuration;
/// let d: HumanDuration = "90m".parse().unwrap();
/// assert_eq!(d.0, Duration::from_secs(5400));
/// assert_eq!(d.to_string(), "1h30m");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(secs))
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> HumanDuration {
        HumanDuration(d)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

impl std::fmt::Display for HumanDuration {
    /// Whole units from days down to milliseconds; what is below a millisecond is
    /// not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ok = [
            ("1s", 1_000),
            ("24h", 86_400_000),
            ("90", 90_000),
            ("2m30s", 150_000),
            ("15ms", 15),
            ("7d", 604_800_000),
            (" 5s ", 5_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "s",
            "1x",
            "h1",
            "1.5s",
            "-1s",
            "5.0",
            "1h30",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("3 fortnights"),
            Err(DurationError::UnknownUnit {
                text: "3 fortnights".into(),
                unit: " fortnights".into()
            })
        );
    }

    #[test]
    fn durations_print_as_they_parse() {
        for text in [
            "0s",
            "250ms",
            "1s",
            "5m",
            "1h30m",
            "1d2h3m4s5ms",
            "24h",
            "7d",
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d, "{text}");
        }
        assert_eq!(HumanDuration::from_secs(86_400).to_string(), "1d");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1s500ms"
        );
    }
}
