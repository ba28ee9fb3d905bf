//! When a scheduled capture runs (`schedule install --every`): `daily`, `weekly`, `hourly`,
//! `monthly` or a five-field cron expression, parsed into one `Calendar` that renders both as
//! a systemd `OnCalendar=` value (systemd.time(7)) and as the time fields of a cron line
//! (crontab(5)), so the two back ends run at the same times.

use std::fmt;

/// One field of a calendar: every value, or the listed ones (sorted, distinct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Any,
    Values(Vec<u8>),
}

/// Minute, hour, day of month, month and day of week (0 = Sunday … 6 = Saturday).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    pub minute: Field,
    pub hour: Field,
    pub day: Field,
    pub month: Field,
    pub weekday: Field,
}

/// Why an `--every` value was refused.
#[derive(Debug, thiserror::Error)]
#[error("--every {given:?}: {why}")]
pub struct CalendarError {
    given: String,
    why: String,
}

/// The range and names of each cron field.
struct Spec {
    what: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
}

const MINUTE: Spec = Spec {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Spec = Spec {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Spec = Spec {
    what: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Spec = Spec {
    what: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// Cron accepts 7 for Sunday as well as 0.
const WEEKDAY: Spec = Spec {
    what: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// systemd's day names, indexed like cron's (0 = Sunday).
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl Calendar {
    /// Parses an `--every` value: a keyword, a cron macro (`@daily`) or five cron fields.
    pub fn parse(s: &str) -> Result<Calendar, CalendarError> {
        let err = |why: &str| CalendarError {
            given: s.to_string(),
            why: why.to_string(),
        };
        let at = |m: u8, h: u8, day: Field, weekday: Field| Calendar {
            minute: Field::Values(vec![m]),
            hour: Field::Values(vec![h]),
            day,
            month: Field::Any,
            weekday,
        };
        let word = s.trim().trim_start_matches('@').to_ascii_lowercase();
        match word.as_str() {
            "hourly" => {
                return Ok(Calendar {
                    minute: Field::Values(vec![0]),
                    hour: Field::Any,
                    day: Field::Any,
                    month: Field::Any,
                    weekday: Field::Any,
                });
            }
            "daily" | "midnight" => return Ok(at(0, 0, Field::Any, Field::Any)),
            // systemd's `weekly` is Monday 00:00; cron's @weekly Sunday: we say Monday.
            "weekly" => return Ok(at(0, 0, Field::Any, Field::Values(vec![1]))),
            "monthly" => return Ok(at(0, 0, Field::Values(vec![1]), Field::Any)),
            "reboot" | "yearly" | "annually" => {
                return Err(err(
                    "not supported; use daily, weekly, hourly, monthly or five cron fields",
                ));
            }
            _ => {}
        }
        let fields: Vec<&str> = s.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(
                "expected daily, weekly, hourly, monthly or a cron expression of five fields \
                 (minute hour day-of-month month day-of-week, e.g. \"30 2 * * 1-5\")",
            ));
        }
        let f = |i: usize, spec: &Spec| parse_field(fields[i], spec).map_err(|w| err(&w));
        let mut weekday = f(4, &WEEKDAY)?;
        if let Field::Values(v) = &mut weekday {
            // 7 is Sunday too.
            for d in v.iter_mut() {
                *d %= 7;
            }
            v.sort_unstable();
            v.dedup();
            if v.len() == 7 {
                weekday = Field::Any;
            }
        }
        let cal = Calendar {
            minute: f(0, &MINUTE)?,
            hour: f(1, &HOUR)?,
            day: f(2, &DAY)?,
            month: f(3, &MONTH)?,
            weekday,
        };
        if cal.day != Field::Any && cal.weekday != Field::Any {
            // crontab(5): with both restricted, cron runs when EITHER matches; OnCalendar
            // needs both. Refused rather than run at other times than asked.
            return Err(err(
                "day of month and day of week are both restricted: cron runs when either \
                 matches, systemd only when both do; install two schedules instead",
            ));
        }
        Ok(cal)
    }

    /// The systemd `OnCalendar=` value, e.g. `Mon,Fri *-*-* 02:30:00`.
    pub fn on_calendar(&self) -> String {
        let list = |f: &Field, width: usize| match f {
            Field::Any => "*".to_string(),
            Field::Values(v) => v
                .iter()
                .map(|n| format!("{n:0width$}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut s = String::new();
        if let Field::Values(days) = &self.weekday {
            let names: Vec<&str> = days.iter().map(|&d| SYSTEMD_DAYS[d as usize]).collect();
            s.push_str(&names.join(","));
            s.push(' ');
        }
        s.push_str(&format!(
            "*-{}-{} {}:{}:00",
            list(&self.month, 2),
            list(&self.day, 2),
            list(&self.hour, 2),
            list(&self.minute, 2)
        ));
        s
    }

    /// The five time fields of a cron line, e.g. `30 2 * * 1,5`.
    pub fn cron_fields(&self) -> String {
        let list = |f: &Field| match f {
            Field::Any => "*".to_string(),
            Field::Values(v) => v
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        };
        [
            &self.minute,
            &self.hour,
            &self.day,
            &self.month,
            &self.weekday,
        ]
        .map(list)
        .join(" ")
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.on_calendar())
    }
}

/// One cron field: `*`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S` (to the maximum), names for months
/// and days, and comma lists of those.
fn parse_field(s: &str, spec: &Spec) -> Result<Field, String> {
    let mut values = Vec::new();
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let step: u8 = st
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{}: bad step {st:?} in {part:?}", spec.what))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec)?, value(b, spec)?)
        } else {
            let v = value(range, spec)?;
            // `A/S` means from A to the end, stepping S.
            (v, if part.contains('/') { spec.max } else { v })
        };
        if lo > hi {
            return Err(format!("{}: range {range:?} runs backwards", spec.what));
        }
        values.extend((lo..=hi).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    let all = (spec.max - spec.min + 1) as usize;
    if s == "*" || (values.len() == all && spec.what != WEEKDAY.what) {
        return Ok(Field::Any);
    }
    Ok(Field::Values(values))
}

fn value(s: &str, spec: &Spec) -> Result<u8, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        // Months are 1-based, days 0-based.
        return Ok(i as u8 + spec.min);
    }
    match s.parse::<u8>() {
        Ok(n) if (spec.min..=spec.max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{}: {s:?} is not a value from {} to {}{}",
            spec.what,
            spec.min,
            spec.max,
            if spec.names.is_empty() {
                String::new()
            } else {
                format!(" or a name ({}…)", spec.names[..3].join(", "))
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(s: &str) -> (String, String) {
        let c = Calendar::parse(s).unwrap_or_else(|e| panic!("{e}"));
        (c.on_calendar(), c.cron_fields())
    }

    #[test]
    fn keywords_mean_the_same_time_for_systemd_and_cron() {
        assert_eq!(both("daily"), ("*-*-* 00:00:00".into(), "0 0 * * *".into()));
        assert_eq!(
            both("weekly"),
            ("Mon *-*-* 00:00:00".into(), "0 0 * * 1".into())
        );
        assert_eq!(
            both("@hourly"),
            ("*-*-* *:00:00".into(), "0 * * * *".into())
        );
        assert_eq!(
            both("monthly"),
            ("*-*-01 00:00:00".into(), "0 0 1 * *".into())
        );
    }

    #[test]
    fn cron_fields_become_lists() {
        assert_eq!(
            both("30 2 * * 1-5"),
            (
                "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00".into(),
                "30 2 * * 1,2,3,4,5".into()
            )
        );
        assert_eq!(
            both("*/20 */6 * * *"),
            (
                "*-*-* 00,06,12,18:00,20,40:00".into(),
                "0,20,40 0,6,12,18 * * *".into()
            )
        );
        assert_eq!(
            both("15 3 1,15 jan-mar *"),
            (
                "*-01,02,03-01,15 03:15:00".into(),
                "15 3 1,15 1,2,3 *".into()
            )
        );
        // 0 and 7 are both Sunday; names work.
        assert_eq!(
            both("0 4 * * sun,7,sat").0,
            "Sun,Sat *-*-* 04:00:00".to_string()
        );
        assert_eq!(both("0 4 * * 0-7").0, "*-*-* 04:00:00".to_string());
        assert_eq!(both("5/20 1 * * *").1, "5,25,45 1 * * *".to_string());
    }

    #[test]
    fn what_cannot_be_converted_is_refused_with_the_reason() {
        for (bad, says) in [
            ("0 3 1 * 1", "either"),
            ("@reboot", "not supported"),
            ("60 * * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day of month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("0 0 * *", "five fields"),
            ("fortnightly", "five fields"),
        ] {
            let e = Calendar::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
