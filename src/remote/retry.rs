//! How long and how often a failed request is tried again, and what the reads cost
//! (docs/STORE.md §7.3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The retry window of §7.3 when nothing else is said.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(600);
/// How often a request that keeps failing says what it waits for (§7.3).
pub const DEFAULT_WAITING_EVERY: Duration = Duration::from_secs(10);
/// Backoff starts here and doubles per attempt…
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// …up to this.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Requests in flight for a planned read unless `--connections` or `osimage.connections=`
/// says otherwise (docs/STORE.md §7.2.1).
pub const DEFAULT_CONNECTIONS: usize = 4;
/// The most connections a plan is fetched with (`--connections` refuses more).
pub const MAX_CONNECTIONS: usize = 32;
/// The bytes fetched ahead of the reader at most, unless `--fetch-cache MiB` or
/// `osimage.fetch-cache=MiB` says otherwise (§7.2.1).
pub const DEFAULT_FETCH_CACHE: u64 = super::ahead::DEFAULT_BUDGET;
/// The largest `--fetch-cache`, in MiB (16 GiB: beyond it the budget is no bound).
pub const MAX_FETCH_CACHE_MIB: u64 = 16 << 10;

/// Timeouts and the retry window of every request of one object, and how many requests a
/// planned read keeps in flight within how many bytes fetched ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long transient failures of one request are retried, from its first failure.
    pub retry_for: Duration,
    /// Connecting (TCP and TLS) gives up after this.
    pub connect_timeout: Duration,
    /// No byte for this long is a failure.
    pub read_timeout: Duration,
    /// While a request keeps failing, a `waiting for URL: …` line goes to stderr this long
    /// after its first failure and as often again; zero: never.
    pub waiting_every: Duration,
    /// Fetcher threads of a planned read (1 to `MAX_CONNECTIONS`; `--connections`).
    pub connections: usize,
    /// The budget of a planned read in bytes: fetched and not yet read, plus runs in
    /// flight (`--fetch-cache`, given in MiB).
    pub fetch_cache: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_for: DEFAULT_RETRY_FOR,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            waiting_every: DEFAULT_WAITING_EVERY,
            connections: DEFAULT_CONNECTIONS,
            fetch_cache: DEFAULT_FETCH_CACHE,
        }
    }
}

/// The pause before retry `n` (0 for the first): `min(30 s, 0.5 s × 2^n)` times a factor
/// in [0.5, 1) taken from `unit` in [0, 1), so that clients that failed together do not
/// come back together.
pub fn backoff(n: u32, unit: f64) -> Duration {
    let base = FIRST_DELAY
        .checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .map_or(MAX_DELAY, |d| d.min(MAX_DELAY));
    base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 0.999_999))
}

/// The line that says what a failing request waits for (§7.3): the last error, the number
/// of the next retry and the seconds until it, rounded up.
pub fn waiting_line(shown: &str, last_error: &str, retry: u32, left: Duration) -> String {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    format!("waiting for {shown}: {last_error}, retry {retry} in {secs} s")
}

/// When waiting lines are due in a pause from `from` to `end`: of the series `due`, `due +
/// every`, `due + 2 × every`, … (none when `every` is zero), the instants in [from, end).
pub fn waiting_times(
    from: std::time::Instant,
    end: std::time::Instant,
    mut due: std::time::Instant,
    every: Duration,
) -> Vec<std::time::Instant> {
    let mut v = Vec::new();
    if every.is_zero() {
        return v;
    }
    while due < end {
        if due >= from {
            v.push(due);
        }
        match due.checked_add(every) {
            Some(next) => due = next,
            None => break,
        }
    }
    v
}

/// A number in [0, 1) that differs from call to call: std's per-instance random hash keys.
pub fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What reading one object cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Requests sent (each retry is one).
    pub requests: u64,
    /// Requests that were retries after a transient failure.
    pub retries: u64,
    /// Bytes kept from bodies that broke off, which a resumed request did not fetch again.
    pub resumed_bytes: u64,
    /// Bytes received in response bodies.
    pub bytes: u64,
    /// Blocks read a second time because their bytes failed their hash (§7.4).
    pub refetched: u64,
}

impl NetStats {
    /// What reading both `self`'s object and `other`'s cost (a store version: its version
    /// object and its packs).
    pub fn plus(self, other: NetStats) -> NetStats {
        NetStats {
            requests: self.requests + other.requests,
            retries: self.retries + other.retries,
            resumed_bytes: self.resumed_bytes + other.resumed_bytes,
            bytes: self.bytes + other.bytes,
            refetched: self.refetched + other.refetched,
        }
    }

    /// One line: requests, retries, bytes received and resumed, blocks refetched.
    pub fn describe(&self) -> String {
        format!(
            "{}, {}, {} received, {} resumed, {}",
            crate::units::count(self.requests, "request", "requests"),
            crate::units::count(self.retries, "retry", "retries"),
            crate::units::human_bytes(self.bytes),
            crate::units::human_bytes(self.resumed_bytes),
            crate::units::count(self.refetched, "block refetched", "blocks refetched"),
        )
    }
}

/// The counters behind `NetStats`, shared by the threads reading one object.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    resumed_bytes: AtomicU64,
    bytes: AtomicU64,
    refetched: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn resumed(&self, n: u64) {
        self.resumed_bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn received(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn refetch(&self) {
        self.refetched.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> NetStats {
        NetStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            resumed_bytes: self.resumed_bytes.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            refetched: self.refetched.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_stops_at_thirty() {
        for (n, full) in [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (5, 16000),
            (6, 30000),
            (40, 30000),
        ] {
            let full = Duration::from_millis(full);
            assert_eq!(backoff(n, 0.0), full / 2, "attempt {n}, least");
            let most = backoff(n, 0.999_999_9);
            assert!(
                most < full && most > full.mul_f64(0.99),
                "attempt {n}: {most:?}"
            );
        }
        assert_eq!(backoff(u32::MAX, 0.0), MAX_DELAY / 2);
        assert_eq!(
            backoff(0, -3.0),
            Duration::from_millis(250),
            "clamped below"
        );
        assert!(
            backoff(0, 7.0) < Duration::from_millis(500),
            "clamped above"
        );
    }

    #[test]
    fn waiting_lines_come_every_interval_from_the_first_failure() {
        use std::time::Instant;
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // First failure at t0, lines every 10 s: a pause from 4 s to 31 s holds 10, 20, 30.
        let got = waiting_times(t0 + s(4), t0 + s(31), t0 + s(10), s(10));
        assert_eq!(got, [t0 + s(10), t0 + s(20), t0 + s(30)]);
        // The next pause, from 31 s, says nothing before 40 s.
        assert_eq!(waiting_times(t0 + s(31), t0 + s(39), t0 + s(40), s(10)), []);
        assert!(waiting_times(t0, t0 + s(100), t0, Duration::ZERO).is_empty());
        assert_eq!(
            waiting_line(
                "http://h/x.iso",
                "connection refused",
                7,
                Duration::from_millis(15_200)
            ),
            "waiting for http://h/x.iso: connection refused, retry 7 in 16 s"
        );
        assert!(waiting_line("u", "e", 1, s(2)).ends_with("retry 1 in 2 s"));
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        let xs: Vec<f64> = (0..200).map(|_| jitter_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]), "it varies");
    }
}
