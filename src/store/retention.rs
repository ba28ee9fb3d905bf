//! Retention rules (docs/STORE.md §5.4): which versions of a series a prune keeps. Pure:
//! the versions and the rules in, one decision per version out, with every reason that kept
//! it, so `store prune --dry-run` can print `keep (last 2, daily 3)`.
//!
//! Periods (hours, days, ISO 8601 weeks starting on Monday, months, years) are those of UTC,
//! or of the machine's zone with `--tz local`. For each of the N most recent periods that
//! hold a version, the newest version in it is kept: a period without versions does not use
//! up one of the N (restic's rule), so a schedule that stopped for a while keeps as much.

use std::time::Duration;

use chrono::{DateTime, Datelike as _, Local, NaiveDateTime, Timelike as _, Utc};

/// The zone whose calendar the periods follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Zone {
    #[default]
    Utc,
    /// The machine's zone (`TZ`, `/etc/localtime`).
    Local,
}

/// The rules of one prune. A rule left `None` (or an empty tag list) keeps nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    /// Keep every version at most this much older than the series' newest.
    pub within: Option<Duration>,
    /// Keep every version carrying one of these tags.
    pub tags: Vec<String>,
    /// Do not keep the newest version for being the newest.
    pub forget_all: bool,
    pub zone: Zone,
}

impl Policy {
    /// Whether any rule is given: without one, a prune forgets nothing (§5.4).
    pub fn has_rules(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.within.is_some()
            || !self.tags.is_empty()
    }
}

/// One version of a series, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub version: String,
    pub created: DateTime<Utc>,
    pub tags: Vec<String>,
    /// A pin with `until` in the future names it.
    pub pinned: bool,
}

/// Why a version is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The n-th newest (`--keep-last`).
    Last(u32),
    /// The newest of the n-th most recent hour, day, … that has a version.
    Hourly(u32),
    Daily(u32),
    Weekly(u32),
    Monthly(u32),
    Yearly(u32),
    Within,
    Tag(String),
    Pinned,
    /// The series' newest (kept unless `--forget-all`).
    Newest,
    /// No rule was given.
    NoRule,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Last(n) => write!(f, "last {n}"),
            Reason::Hourly(n) => write!(f, "hourly {n}"),
            Reason::Daily(n) => write!(f, "daily {n}"),
            Reason::Weekly(n) => write!(f, "weekly {n}"),
            Reason::Monthly(n) => write!(f, "monthly {n}"),
            Reason::Yearly(n) => write!(f, "yearly {n}"),
            Reason::Within => write!(f, "within"),
            Reason::Tag(t) => write!(f, "tag {t}"),
            Reason::Pinned => write!(f, "pinned"),
            Reason::Newest => write!(f, "newest"),
            Reason::NoRule => write!(f, "no rule"),
        }
    }
}

/// What the rules decided for one version: kept when `reasons` is not empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub version: String,
    pub created: DateTime<Utc>,
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// `keep (last 2, daily 3)` or `forget`, as `--dry-run` prints it.
    pub fn shown(&self) -> String {
        if self.reasons.is_empty() {
            return "forget".into();
        }
        let r: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
        format!("keep ({})", r.join(", "))
    }
}

/// The period a local time falls in, as a comparable key (year, month or week, day, hour).
type PeriodOf = fn(NaiveDateTime) -> (i32, u32, u32, u32);
/// One period rule: its N, its periods, and the reason it gives.
type PeriodRule = (Option<u32>, PeriodOf, fn(u32) -> Reason);

/// The decisions for the versions of one series, newest first (by `created`; equal times by
/// the version string, which ends in the image id, so the order is total).
pub fn apply(policy: &Policy, versions: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = versions.iter().collect();
    order.sort_by(|a, b| (b.created, &b.version).cmp(&(a.created, &a.version)));
    let mut out: Vec<Decision> = order
        .iter()
        .map(|c| Decision {
            version: c.version.clone(),
            created: c.created,
            reasons: Vec::new(),
        })
        .collect();
    if !policy.has_rules() {
        out.iter_mut().for_each(|d| d.reasons.push(Reason::NoRule));
        return out;
    }
    if let Some(n) = policy.last {
        for (i, d) in out.iter_mut().take(n as usize).enumerate() {
            d.reasons.push(Reason::Last(i as u32 + 1));
        }
    }
    let local = |t: DateTime<Utc>| match policy.zone {
        Zone::Utc => t.naive_utc(),
        Zone::Local => t.with_timezone(&Local).naive_local(),
    };
    let periods: [PeriodRule; 5] = [
        (
            policy.hourly,
            |t| (t.year(), t.month(), t.day(), t.hour()),
            Reason::Hourly,
        ),
        (
            policy.daily,
            |t| (t.year(), t.month(), t.day(), 0),
            Reason::Daily,
        ),
        (
            policy.weekly,
            |t| {
                let w = t.iso_week();
                (w.year(), w.week(), 0, 0)
            },
            Reason::Weekly,
        ),
        (
            policy.monthly,
            |t| (t.year(), t.month(), 0, 0),
            Reason::Monthly,
        ),
        (policy.yearly, |t| (t.year(), 0, 0, 0), Reason::Yearly),
    ];
    for (n, period, reason) in periods {
        let Some(n) = n else { continue };
        let mut last = None;
        let mut kept = 0u32;
        for d in out.iter_mut() {
            if kept >= n {
                break;
            }
            let p = period(local(d.created));
            if last != Some(p) {
                last = Some(p);
                kept += 1;
                d.reasons.push(reason(kept));
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.within, out.first().map(|d| d.created)) {
        let span = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let cutoff = newest.checked_sub_signed(span);
        for d in out.iter_mut() {
            if cutoff.is_none_or(|c| d.created >= c) {
                d.reasons.push(Reason::Within);
            }
        }
    }
    for (d, c) in out.iter_mut().zip(&order) {
        for t in &policy.tags {
            if c.tags.contains(t) {
                d.reasons.push(Reason::Tag(t.clone()));
            }
        }
        if c.pinned {
            d.reasons.push(Reason::Pinned);
        }
    }
    if !policy.forget_all
        && let Some(d) = out.first_mut()
        && d.reasons.is_empty()
    {
        d.reasons.push(Reason::Newest);
    }
    out
}

/// `--keep-within`'s DURATION: a whole number with `h`, `d`, `w` (weeks) or `y` (365 days),
/// or several of them (`1d12h`).
pub fn parse_within(text: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err("an empty duration (e.g. 36h, 14d, 2w)".into());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?}: a number without its unit (h, d, w or y)"))?;
        let (n, tail) = rest.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{text:?}: expected a whole number before each unit"))?;
        let hours = match tail.as_bytes()[0] {
            b'h' => 1,
            b'd' => 24,
            b'w' => 24 * 7,
            b'y' => 24 * 365,
            _ => return Err(format!("{text:?}: the units are h, d, w and y")),
        };
        total = n
            .checked_mul(hours * 3600)
            .and_then(|s| total.checked_add(s))
            .filter(|&s| s <= 1000 * 365 * 24 * 3600)
            .ok_or_else(|| format!("{text:?} is longer than 1000 years"))?;
        rest = &tail[1..];
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn cand(t: DateTime<Utc>) -> Candidate {
        Candidate {
            version: format!("{}-0000000000000000", t.format("%Y%m%dT%H%M%SZ")),
            created: t,
            tags: Vec::new(),
            pinned: false,
        }
    }

    /// The decisions as (version time "MMDD HH:MM", shown decision), newest first.
    fn run(p: &Policy, c: &[Candidate]) -> Vec<(String, String)> {
        apply(p, c)
            .into_iter()
            .map(|d| (d.created.format("%Y%m%d %H:%M").to_string(), d.shown()))
            .collect()
    }

    fn kept(p: &Policy, c: &[Candidate]) -> Vec<String> {
        run(p, c)
            .into_iter()
            .filter(|(_, s)| s != "forget")
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn no_rule_forgets_nothing() {
        let c = vec![cand(at(2026, 1, 1, 0, 0)), cand(at(2026, 1, 2, 0, 0))];
        assert!(!Policy::default().has_rules());
        assert!(
            apply(&Policy::default(), &c)
                .iter()
                .all(|d| d.reasons == [Reason::NoRule])
        );
        let all = Policy {
            forget_all: true,
            ..Policy::default()
        };
        assert!(apply(&all, &c).iter().all(Decision::keep));
    }

    #[test]
    fn keep_last_counts_newest_first_whatever_the_input_order() {
        let c = vec![
            cand(at(2026, 3, 1, 0, 0)),
            cand(at(2026, 3, 3, 0, 0)),
            cand(at(2026, 3, 2, 0, 0)),
        ];
        let p = Policy {
            last: Some(2),
            ..Policy::default()
        };
        assert_eq!(
            run(&p, &c),
            [
                ("20260303 00:00".into(), "keep (last 1)".into()),
                ("20260302 00:00".into(), "keep (last 2)".into()),
                ("20260301 00:00".into(), "forget".into()),
            ]
        );
    }

    #[test]
    fn each_period_keeps_its_newest_and_empty_periods_do_not_count() {
        // Three on 1 March (UTC), one on 3 March, two on 10 March; nothing on 2 March.
        let c = vec![
            cand(at(2026, 3, 1, 1, 0)),
            cand(at(2026, 3, 1, 13, 0)),
            cand(at(2026, 3, 1, 23, 59)),
            cand(at(2026, 3, 3, 8, 0)),
            cand(at(2026, 3, 10, 8, 0)),
            cand(at(2026, 3, 10, 9, 30)),
        ];
        let p = Policy {
            daily: Some(3),
            last: Some(1),
            ..Policy::default()
        };
        assert_eq!(
            run(&p, &c),
            [
                ("20260310 09:30".into(), "keep (last 1, daily 1)".into()),
                ("20260310 08:00".into(), "forget".into()),
                ("20260303 08:00".into(), "keep (daily 2)".into()),
                ("20260301 23:59".into(), "keep (daily 3)".into()),
                ("20260301 13:00".into(), "forget".into()),
                ("20260301 01:00".into(), "forget".into()),
            ]
        );
        let hourly = Policy {
            hourly: Some(2),
            forget_all: true,
            ..Policy::default()
        };
        assert_eq!(kept(&hourly, &c), ["20260310 09:30", "20260310 08:00"]);
    }

    #[test]
    fn weeks_are_iso_weeks_starting_on_monday_across_a_year_boundary() {
        // Monday 29 Dec 2025 to Sunday 4 Jan 2026 is ISO week 2026-W01; Sunday 28 Dec 2025
        // is 2025-W52; Monday 5 Jan 2026 starts W02.
        let c = vec![
            cand(at(2025, 12, 28, 23, 0)), // W52, Sunday
            cand(at(2025, 12, 29, 0, 0)),  // W01, Monday
            cand(at(2026, 1, 4, 23, 0)),   // W01, Sunday: W01's newest
            cand(at(2026, 1, 5, 0, 0)),    // W02, Monday
        ];
        let p = Policy {
            weekly: Some(3),
            forget_all: true,
            ..Policy::default()
        };
        assert_eq!(
            run(&p, &c),
            [
                ("20260105 00:00".into(), "keep (weekly 1)".into()),
                ("20260104 23:00".into(), "keep (weekly 2)".into()),
                ("20251229 00:00".into(), "forget".into()),
                ("20251228 23:00".into(), "keep (weekly 3)".into()),
            ]
        );
        // Months and years split there too: December 2025 and January 2026.
        let my = Policy {
            monthly: Some(5),
            yearly: Some(1),
            ..Policy::default()
        };
        assert_eq!(
            run(&my, &c).into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            [
                "keep (monthly 1, yearly 1)",
                "forget",
                "keep (monthly 2)",
                "forget"
            ]
        );
    }

    #[test]
    fn equal_times_are_ordered_by_the_version_string() {
        let t = at(2026, 6, 1, 12, 0);
        let mut a = cand(t);
        a.version = "20260601T120000Z-aaaaaaaaaaaaaaaa".into();
        let mut b = cand(t);
        b.version = "20260601T120000Z-bbbbbbbbbbbbbbbb".into();
        let p = Policy {
            daily: Some(1),
            ..Policy::default()
        };
        for input in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let d = apply(&p, &input);
            assert_eq!(d[0].version, b.version);
            assert_eq!(d[0].shown(), "keep (daily 1)");
            assert_eq!(d[1].shown(), "forget");
        }
    }

    #[test]
    fn within_is_relative_to_the_newest_version() {
        // The newest is a year old by now: --keep-within 2d still keeps what is near it.
        let c = vec![
            cand(at(2025, 1, 1, 0, 0)),
            cand(at(2025, 1, 8, 0, 0)),
            cand(at(2025, 1, 9, 0, 0)),
            cand(at(2025, 1, 10, 0, 0)),
        ];
        let p = Policy {
            within: Some(parse_within("2d").unwrap()),
            ..Policy::default()
        };
        // Exactly 2 days older than the newest is still within.
        assert_eq!(
            kept(&p, &c),
            ["20250110 00:00", "20250109 00:00", "20250108 00:00"]
        );
    }

    #[test]
    fn tags_pins_and_the_newest_are_kept() {
        let mut tagged = cand(at(2026, 2, 1, 0, 0));
        tagged.tags = vec!["golden".into(), "x".into()];
        let mut pinned = cand(at(2026, 2, 2, 0, 0));
        pinned.pinned = true;
        let c = vec![
            tagged,
            pinned,
            cand(at(2026, 2, 3, 0, 0)),
            cand(at(2026, 2, 4, 0, 0)),
        ];
        let p = Policy {
            tags: vec!["golden".into()],
            ..Policy::default()
        };
        assert_eq!(
            run(&p, &c).into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            [
                "keep (newest)",
                "forget",
                "keep (pinned)",
                "keep (tag golden)"
            ]
        );
        // --forget-all: the newest goes too, a pin still keeps its version.
        let all = Policy {
            forget_all: true,
            last: Some(0),
            ..Policy::default()
        };
        assert_eq!(kept(&all, &c), ["20260202 00:00"]);
        // The newest kept by a rule is not also marked "newest".
        let last = Policy {
            last: Some(1),
            ..Policy::default()
        };
        assert_eq!(apply(&last, &c)[0].reasons, [Reason::Last(1)]);
    }

    #[test]
    fn local_zone_periods_follow_the_machine_zone() {
        // The machine's zone is whatever the test runs under (no offset reaches 3.5 days):
        // two versions four days apart are two days in any zone.
        let c = vec![cand(at(2026, 3, 1, 12, 0)), cand(at(2026, 3, 5, 12, 0))];
        let p = Policy {
            daily: Some(2),
            zone: Zone::Local,
            ..Policy::default()
        };
        assert_eq!(kept(&p, &c).len(), 2);
    }

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(parse_within("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_within("14d"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_within("1w2d"), Ok(Duration::from_secs(9 * 86400)));
        assert_eq!(parse_within("1y"), Ok(Duration::from_secs(365 * 86400)));
        for bad in [
            "",
            "5",
            "d",
            "5m",
            "1.5d",
            "-1d",
            "99999999999999999999y",
            "1001y",
        ] {
            assert!(parse_within(bad).is_err(), "{bad}");
        }
    }
}
