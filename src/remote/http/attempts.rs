//! The retries of one request (docs/STORE.md §7.3): backoff with jitter within the retry
//! window, a line on stderr every `waiting_every` saying what is awaited, and an end as soon
//! as the object is dropped.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Conn;
use crate::remote::retry::{backoff, jitter_unit, waiting_line, waiting_times};

/// The retries of one request (§7.3): how many so far, since when.
pub(super) struct Attempts<'c> {
    conn: &'c Conn,
    /// What the waiting line names: the object, or the part of it asked for.
    shown: &'c str,
    since: Option<Instant>,
    n: u32,
    total: u32,
}

impl<'c> Attempts<'c> {
    pub(super) fn new(conn: &'c Conn, shown: &'c str) -> Self {
        Attempts {
            conn,
            shown,
            since: None,
            n: 0,
            total: 0,
        }
    }

    /// Bytes arrived: the backoff and the window start again.
    pub(super) fn progressed(&mut self) {
        self.since = None;
        self.n = 0;
    }

    /// After a transient failure `msg`: waits its backoff and returns, or, once the retry
    /// window has passed since the first failure, the message to give up with.
    pub(super) fn failed(&mut self, msg: String) -> Result<(), String> {
        let since = *self.since.get_or_insert_with(Instant::now);
        let window = self.conn.policy.retry_for;
        let elapsed = since.elapsed();
        if self.conn.closed.load(Ordering::SeqCst) {
            return Err(format!("{msg} (not retried: the read was abandoned)"));
        }
        if elapsed >= window {
            return Err(format!(
                "{msg} (gave up after retrying for {} s, {} {})",
                window.as_secs(),
                self.total,
                if self.total == 1 { "retry" } else { "retries" }
            ));
        }
        let delay = backoff(self.n, jitter_unit()).min(window - elapsed);
        self.n = self.n.saturating_add(1);
        self.total = self.total.saturating_add(1);
        self.pause(since, delay, &msg);
        self.conn.counters.retry();
        Ok(())
    }

    /// Sleeps `delay` before the next retry, saying on stderr what the request waits for
    /// every `waiting_every` from its first failure at `since` (§7.3: a stuck restore keeps
    /// telling the console why).
    fn pause(&self, since: Instant, delay: Duration, msg: &str) {
        let now = Instant::now();
        let end = now + delay;
        let every = self.conn.policy.waiting_every;
        let first = since.checked_add(every).unwrap_or(end);
        for due in waiting_times(now, end, first, every) {
            self.nap(due);
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.conn.closed.load(Ordering::SeqCst) {
                break;
            }
            let line = waiting_line(self.shown, msg, self.total, left);
            eprintln!("osimage: {line}");
        }
        self.nap(end);
    }

    /// Sleeps until `until`, or until the object is dropped (a fetcher then ends soon).
    fn nap(&self, until: Instant) {
        const SLICE: Duration = Duration::from_millis(100);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.conn.closed.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(left.min(SLICE));
        }
    }
}
