//! The store's time windows (docs/STORE.md §2.7, §5.2): a lock is rewritten every 5 minutes
//! and stale after 30; a prune sweeps a condemnation no sooner than an hour after it was made
//! (`--grace`'s default) and, with `--wait`, looks again every minute. Only tests change them,
//! through `OSIMAGE_STORE_TIMES` (`lock_refresh=1s,stale=6s,grace=0s,prune_poll=1s`, §12.3),
//! so a test can let a lock go stale in seconds. The
//! variable is parsed strictly: a window a user mistyped must not silently become another.

use std::time::Duration;

use super::StoreError;

/// The test-only variable that shrinks the windows.
pub const STORE_TIMES_ENV: &str = "OSIMAGE_STORE_TIMES";

/// How often a held lock is rewritten, and how old a lock must be to be stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTimes {
    pub lock_refresh: Duration,
    pub stale: Duration,
    /// `store prune --grace`'s default: how old a condemnation must be to be swept.
    pub grace: Duration,
    /// How often `store prune --wait` tries its condemnation's sweep again.
    pub prune_poll: Duration,
}

impl Default for StoreTimes {
    fn default() -> StoreTimes {
        StoreTimes {
            lock_refresh: Duration::from_secs(5 * 60),
            stale: Duration::from_secs(30 * 60),
            grace: Duration::from_secs(60 * 60),
            prune_poll: Duration::from_secs(60),
        }
    }
}

impl StoreTimes {
    /// The windows `OSIMAGE_STORE_TIMES` sets, or the defaults when it is unset.
    pub fn from_env() -> Result<StoreTimes, StoreError> {
        match std::env::var(STORE_TIMES_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(StoreTimes::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::Setting(format!(
                "{STORE_TIMES_ENV} is not UTF-8 text"
            ))),
            Ok(text) => StoreTimes::parse(&text)
                .map_err(|e| StoreError::Setting(format!("{STORE_TIMES_ENV}={text:?}: {e}"))),
        }
    }

    /// `key=DURATION` pairs separated by commas, each key at most once: `lock_refresh`,
    /// `stale`, `grace`, `prune_poll`. A duration is a whole number with its unit: `ms`, `s`, `m` or `h`. Keys not
    /// given keep their defaults; the refresh must come well before the stale window.
    pub fn parse(text: &str) -> Result<StoreTimes, String> {
        let mut t = StoreTimes::default();
        let mut seen: Vec<&str> = Vec::new();
        for pair in text.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=DURATION"))?;
            if seen.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            seen.push(key);
            let d = duration(value).map_err(|e| format!("{key}: {e}"))?;
            match key {
                "lock_refresh" => t.lock_refresh = d,
                "stale" => t.stale = d,
                "grace" => t.grace = d,
                "prune_poll" => t.prune_poll = d,
                _ => {
                    return Err(format!(
                        "unknown window {key:?} (known: lock_refresh, stale, grace, prune_poll)"
                    ));
                }
            }
        }
        if t.lock_refresh.is_zero() {
            return Err("lock_refresh must be longer than zero".into());
        }
        if t.prune_poll.is_zero() {
            return Err("prune_poll must be longer than zero".into());
        }
        if t.stale <= t.lock_refresh {
            return Err(format!(
                "stale ({:?}) must be longer than lock_refresh ({:?})",
                t.stale, t.lock_refresh
            ));
        }
        Ok(t)
    }

    /// §4.3 step 4: the longest a holder may go without a successful refresh and still
    /// commit: the stale window less one refresh (25 minutes by default).
    pub fn margin(&self) -> Duration {
        self.stale - self.lock_refresh
    }
}

/// A window as `--grace` takes it: a whole number and its unit (`ms`, `s`, `m`, `h`), at
/// most a day.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    duration(text)
}

/// A whole number and its unit (`ms`, `s`, `m`, `h`), at most a day.
fn duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (ms, s, m or h)"))?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: the unit is ms, s, m or h")),
    };
    n.checked_mul(ms)
        .filter(|&ms| ms <= 24 * 3_600_000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is longer than a day"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_five_and_thirty_minutes() {
        let t = StoreTimes::default();
        assert_eq!(t.lock_refresh, Duration::from_secs(300));
        assert_eq!(t.stale, Duration::from_secs(1800));
        assert_eq!(t.margin(), Duration::from_secs(25 * 60));
        assert_eq!(t.grace, Duration::from_secs(3600));
        assert_eq!(t.prune_poll, Duration::from_secs(60));
    }

    #[test]
    fn the_test_windows_parse() {
        let t = StoreTimes::parse("lock_refresh=1s,stale=6s").unwrap();
        assert_eq!(t.lock_refresh, Duration::from_secs(1));
        assert_eq!(t.stale, Duration::from_secs(6));
        assert_eq!(t.margin(), Duration::from_secs(5));
        let t = StoreTimes::parse("stale=45m").unwrap();
        assert_eq!(t.lock_refresh, Duration::from_secs(300));
        assert_eq!(t.stale, Duration::from_secs(2700));
        let t = StoreTimes::parse("lock_refresh=500ms,stale=1h").unwrap();
        assert_eq!(t.lock_refresh, Duration::from_millis(500));
        let t = StoreTimes::parse("grace=0s,prune_poll=200ms").unwrap();
        assert_eq!(t.grace, Duration::ZERO);
        assert_eq!(t.prune_poll, Duration::from_millis(200));
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        for (text, why) in [
            ("", "not key=DURATION"),
            ("lock_refresh=1s,", "not key=DURATION"),
            ("lock_refresh 1s", "not key=DURATION"),
            ("lock_refresh=1", "no unit"),
            ("lock_refresh=s", "whole number"),
            ("lock_refresh=1.5s", "the unit is"),
            ("lock_refresh=-1s", "whole number"),
            ("lock_refresh=1sec", "the unit is"),
            ("lock_refresh=1S", "the unit is"),
            ("lock_refresh=1s,stale=6s,stale=7s", "given twice"),
            ("sweep=0s", "unknown window"),
            ("prune_poll=0s", "longer than zero"),
            ("Stale=6s", "unknown window"),
            ("lock_refresh=0s,stale=6s", "longer than zero"),
            (
                "lock_refresh=6s,stale=6s",
                "must be longer than lock_refresh",
            ),
            ("stale=1s", "must be longer than lock_refresh"),
            ("stale=25h", "longer than a day"),
            ("stale=99999999999999999999h", "whole number"),
        ] {
            let e = StoreTimes::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {why}: {e}");
        }
    }
}
