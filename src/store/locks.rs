//! Shared locks on a store (docs/STORE.md §2.7, §5.1): a writer or a long reader PUTs
//! `locks/<32 hex random>`, rewrites the same bytes every 5 minutes while it runs, and DELETEs
//! it when done. Nobody waits for a lock: a prune only defers sweeping packs while locks it saw
//! are fresh. A lock is stale when its `LastModified` is more than 30 minutes older than the
//! server's `Date` on the listing that shows it: server time on both sides, so no client clock
//! decides. A holder that went 25 minutes (the stale window less one refresh) without a
//! successful rewrite must not commit (§4.3 step 4): others may have called its lock stale.
//!
//! The windows are shrunk only by tests, through `OSIMAGE_STORE_TIMES` (§12.3).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::names::{self, LOCKS};
use super::objects::frame::{HEADER_LEN, Kind};
use super::objects::{Lock, LockKind, ObjectError, decode_lock, encode_lock};
use super::{Store, StoreError};
use crate::format::manifest::Timestamp;
use crate::remote::s3::{S3Client, S3Error};

pub use super::times::StoreTimes;

/// A lock this process holds: rewritten by a thread of its own until released.
pub struct HeldLock {
    shared: Arc<Shared>,
    refresher: Option<JoinHandle<()>>,
    times: StoreTimes,
    released: bool,
}

/// What the holder and its refresh thread share.
struct Shared {
    client: Arc<S3Client>,
    /// The lock's key in the bucket, and its address as messages show it.
    key: String,
    shown: String,
    /// The object's bytes: every refresh PUTs them again.
    bytes: Vec<u8>,
    state: Mutex<State>,
    /// Wakes the refresh thread early when the lock is released.
    wake: Condvar,
    /// Held across each refresh PUT and the DELETE, so no refresh can bring back a lock
    /// that was deleted.
    writing: Mutex<()>,
}

/// How the lock's refreshes went.
struct State {
    released: bool,
    /// When the last successful PUT began (its `LastModified` is no earlier).
    last_ok: Instant,
    /// The longest time between the starts of two successful PUTs and the end of the
    /// second: how long others may have seen the lock unrefreshed.
    worst_gap: Duration,
    /// Why the last refresh failed, while it has not succeeded since.
    failing: Option<String>,
}

impl State {
    /// A PUT that began at `began` succeeded at `now`: the lock's previous `LastModified` is
    /// no earlier than `last_ok`, its new one no later than `now`.
    fn refreshed(&mut self, began: Instant, now: Instant) {
        self.worst_gap = self
            .worst_gap
            .max(now.saturating_duration_since(self.last_ok));
        self.last_ok = began;
        self.failing = None;
    }

    /// The longest the lock may have looked unrefreshed to others, up to `now`.
    fn lapse(&self, now: Instant) -> Duration {
        self.worst_gap
            .max(now.saturating_duration_since(self.last_ok))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One refresh: the same bytes PUT again, unless the lock was released meanwhile.
    fn refresh(&self) {
        let _w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if self.state().released {
            return;
        }
        let began = Instant::now();
        let put = self.client.put(&self.key, &self.bytes);
        let mut s = self.state();
        match put {
            Ok(()) => s.refreshed(began, Instant::now()),
            Err(e) => s.failing = Some(e.to_string()),
        }
    }

    /// Stops the refreshes and DELETEs the lock (a missing one is no error).
    fn release(&self) -> Result<(), StoreError> {
        self.state().released = true;
        self.wake.notify_all();
        let _w = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.client.delete(&self.key)?;
        Ok(())
    }
}

/// The refresh thread: a PUT every `every` until released.
fn refresh_loop(shared: &Shared, every: Duration) {
    let mut next = Instant::now() + every;
    loop {
        {
            let mut s = shared.state();
            loop {
                if s.released {
                    return;
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                s = shared
                    .wake
                    .wait_timeout(s, next - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        shared.refresh();
        next = Instant::now() + every;
    }
}

impl Store {
    /// Takes a shared lock of `kind` (for `series`, when there is one) with the windows of
    /// `OSIMAGE_STORE_TIMES` or the defaults: PUT now, rewritten every refresh interval by a
    /// thread until [`HeldLock::release`] or the drop.
    pub fn take_lock(&self, kind: LockKind, series: Option<&str>) -> Result<HeldLock, StoreError> {
        self.take_lock_with(kind, series, StoreTimes::from_env()?)
    }

    /// [`Store::take_lock`] with the windows `times`.
    pub fn take_lock_with(
        &self,
        kind: LockKind,
        series: Option<&str>,
        times: StoreTimes,
    ) -> Result<HeldLock, StoreError> {
        let id = super::random_bytes::<16>()?;
        let nonce = super::random_bytes::<16>()?;
        let rel = names::lock_key(&id);
        let shown = self.shown(&rel);
        let now = Utc::now();
        let lock = Lock {
            kind,
            host: host_name(),
            pid: std::process::id(),
            started: Timestamp {
                sec: now.timestamp(),
                nsec: now.timestamp_subsec_nanos(),
            },
            series: series.map(str::to_string),
        };
        let bytes = encode_lock(&shown, &lock, nonce, self.keys())?;
        let key = self.root.key(&rel);
        let began = Instant::now();
        self.client.put(&key, &bytes)?;
        let shared = Arc::new(Shared {
            client: Arc::clone(&self.client),
            key,
            shown,
            bytes,
            state: Mutex::new(State {
                released: false,
                last_ok: began,
                worst_gap: Duration::ZERO,
                failing: None,
            }),
            wake: Condvar::new(),
            writing: Mutex::new(()),
        });
        let for_thread = Arc::clone(&shared);
        let every = times.lock_refresh;
        let refresher = std::thread::Builder::new()
            .name("store-lock".into())
            .spawn(move || refresh_loop(&for_thread, every));
        let refresher = match refresher {
            Ok(t) => Some(t),
            Err(e) => {
                let _ = shared.release();
                return Err(StoreError::Unsupported(format!(
                    "{}: cannot start the thread that refreshes it: {e}",
                    shared.shown
                )));
            }
        };
        Ok(HeldLock {
            shared,
            refresher,
            times,
            released: false,
        })
    }

    /// Every lock in the store, judged stale or fresh against the listing's server time
    /// with the window `times.stale`. A listing without a `Date` cannot judge: an error.
    pub fn list_locks(&self, times: &StoreTimes) -> Result<Vec<ListedLock>, StoreError> {
        let listing = self.client.list(&self.root.key(LOCKS))?;
        let now = listing.server_date.ok_or_else(|| {
            S3Error::Request(format!(
                "{}: the server's listing of {LOCKS} carries no Date header, so no lock can be \
                 judged stale",
                self.root
            ))
        })?;
        let mut out = Vec::with_capacity(listing.objects.len());
        for o in listing.objects {
            let rel = self.root.listed_relative(&o.key)?;
            let id =
                names::parse_lock_key(rel).map_err(|e| ObjectError::new(&self.shown(rel), e))?;
            out.push(ListedLock {
                id,
                last_modified: o.last_modified,
                age: age(o.last_modified, now),
                stale: is_stale(o.last_modified, now, times.stale),
            });
        }
        Ok(out)
    }

    /// The lock `id`: `None` when it is gone (released since the listing).
    pub fn read_lock(&self, id: &[u8; 16]) -> Result<Option<Lock>, StoreError> {
        let rel = names::lock_key(id);
        let max = (HEADER_LEN as u64) + Kind::Lock.max_stored();
        let Some(bytes) = self.client.get(&self.root.key(&rel), max)? else {
            return Ok(None);
        };
        Ok(Some(decode_lock(&self.shown(&rel), &bytes, self.keys())?))
    }

    /// Deletes the lock `id` (`store unlock`).
    pub fn remove_lock(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        self.client.delete(&self.root.key(&names::lock_key(id)))?;
        Ok(())
    }
}

/// One lock as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedLock {
    /// Its name: `locks/<32 hex of id>`.
    pub id: [u8; 16],
    /// The server's time of its last PUT (its last refresh).
    pub last_modified: DateTime<Utc>,
    /// How long before the listing's server time that was (zero if after it).
    pub age: Duration,
    pub stale: bool,
}

/// How long before the server's `now` the lock was last written.
fn age(last_modified: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - last_modified).to_std().unwrap_or(Duration::ZERO)
}

/// §2.7: stale when its `LastModified` is more than `stale` older than the server's `Date`
/// on the listing that showed it.
pub fn is_stale(last_modified: DateTime<Utc>, now: DateTime<Utc>, stale: Duration) -> bool {
    age(last_modified, now) > stale
}

impl HeldLock {
    /// The lock's address, as messages show it.
    pub fn shown(&self) -> &str {
        &self.shared.shown
    }

    /// §4.3 step 4, the check before a commit (its message names no object: the caller
    /// names the image): fails when the lock ever went longer than
    /// the stale window less one refresh without a successful rewrite, since others may
    /// then have called it stale (and a prune swept packs this holder relies on).
    pub fn check_before_commit(&self) -> Result<(), StoreError> {
        let s = self.shared.state();
        let gap = s.lapse(Instant::now());
        if gap <= self.times.margin() {
            return Ok(());
        }
        let why = match &s.failing {
            Some(e) => format!(" (its refresh fails: {e})"),
            None => String::new(),
        };
        Err(StoreError::LockLapsed(format!(
            "the store lock lapsed for {}{why} (a prune may have deleted packs this image \
             reuses); nothing was committed; run the capture again",
            shown_duration(gap)
        )))
    }

    /// Whether the lock's refreshes are in trouble now: the last one failed, or it is late
    /// past the margin of [`HeldLock::check_before_commit`]. A commit made while this holds
    /// may have raced a sweep (§4.3 step 6).
    pub fn in_trouble(&self) -> bool {
        let s = self.shared.state();
        s.failing.is_some() || s.lapse(Instant::now()) > self.times.margin()
    }

    /// A cleanup that deletes the lock from any thread (an interrupted capture's), for
    /// `capture::interrupt`; it stops the refreshes first.
    pub fn releaser(&self) -> impl FnOnce() + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            let _ = shared.release();
        }
    }

    /// Stops the refreshes and deletes the lock.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        self.released = true;
        self.shared.state().released = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        self.shared.release()
    }
}

impl Drop for HeldLock {
    /// A lock not released (an error on the way) is deleted, as far as the server answers;
    /// one that stays goes stale.
    fn drop(&mut self) {
        if !self.released {
            let _ = self.stop();
        }
    }
}

/// This machine's host name, as locks name their holder.
fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    match name.len() {
        0 => "unknown".into(),
        n if n > super::objects::lock::MAX_HOST => name
            .chars()
            .take(super::objects::lock::MAX_HOST / 4)
            .collect(),
        _ => name,
    }
}

/// A duration for messages: seconds below two minutes, minutes above.
pub fn shown_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else {
        format!("{} min", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_lock_is_stale_only_past_the_window_by_server_time() {
        let lm = Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
        let window = Duration::from_secs(30 * 60);
        let at = |m: i64, s: i64| lm + chrono::Duration::minutes(m) + chrono::Duration::seconds(s);
        assert!(!is_stale(lm, at(0, 0), window));
        assert!(!is_stale(lm, at(30, 0), window), "exactly 30 min: fresh");
        assert!(is_stale(lm, at(30, 1), window));
        // A server clock behind the object's time (another node's): age zero, fresh.
        assert!(!is_stale(lm, at(-5, 0), window));
        assert_eq!(age(lm, at(-5, 0)), Duration::ZERO);
        assert_eq!(age(lm, at(2, 3)), Duration::from_secs(123));
    }

    #[test]
    fn a_lapse_is_remembered_after_later_refreshes() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = State {
            released: false,
            last_ok: t0,
            worst_gap: Duration::ZERO,
            failing: Some("503".into()),
        };
        assert_eq!(s.lapse(at(4)), Duration::from_secs(4));
        // Refreshes every 5 s (each taking 1 s): the worst gap is 6 s.
        s.refreshed(at(5), at(6));
        assert_eq!(s.failing, None);
        s.refreshed(at(10), at(11));
        assert_eq!(s.lapse(at(12)), Duration::from_secs(6));
        // A pause of 40 s (SIGSTOP), then a refresh that succeeds at once: the 41 s without
        // one stay on record, so the commit check still fails.
        s.refreshed(at(50), at(51));
        assert_eq!(s.lapse(at(52)), Duration::from_secs(41));
        // And a long wait since the last refresh counts as much as a gap between two.
        assert_eq!(s.lapse(at(150)), Duration::from_secs(100));
    }

    #[test]
    fn durations_read_as_seconds_then_minutes() {
        assert_eq!(shown_duration(Duration::from_millis(9_400)), "9 s");
        assert_eq!(shown_duration(Duration::from_secs(119)), "119 s");
        assert_eq!(shown_duration(Duration::from_secs(26 * 60 + 5)), "26 min");
    }

    #[test]
    fn the_host_name_is_a_valid_lock_host() {
        let l = Lock {
            kind: LockKind::Read,
            host: host_name(),
            pid: 1,
            started: Timestamp { sec: 0, nsec: 0 },
            series: None,
        };
        assert_eq!(l.check(), Ok(()));
    }
}
