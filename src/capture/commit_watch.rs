//! A capture into a store interrupted while it commits (docs/STORE.md §4.3 step 5, §4.4):
//! the version exists from the moment its PUT completes, whatever the client does meanwhile,
//! so an interrupt that arrives once the PUT may have been sent must not report "interrupted,
//! nothing committed" and exit as if nothing were. The interrupt's cleanup waits for the
//! PUT's answer (at most [`INTERRUPT_WAIT`], as for an index object in flight) before the
//! lock is deleted, then says what happened: committed (exit status 0: the capture is
//! complete, only what follows the commit was not done), not committed (128 + the signal),
//! or not known because the store did not answer in time (128 + the signal, said so).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::store::checkpoint::INTERRUPT_WAIT;

/// Where the commit is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Commit {
    NotSent,
    InFlight,
    Answered(Result<(), String>),
}

/// The commit's state, shared by the capturing thread and the interrupt's cleanup.
#[derive(Clone)]
pub(crate) struct CommitWatch {
    state: Arc<(Mutex<Commit>, Condvar)>,
    /// The version, as messages name it: `s3://BUCKET/PREFIX/NAME@VERSION`.
    shown: String,
}

/// What the interrupt's cleanup learnt of the commit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Interrupted before the commit was sent: nothing is committed.
    NotSent,
    Committed,
    Failed(String),
    /// Still unanswered after the wait.
    Unknown,
}

impl CommitWatch {
    pub(crate) fn new(shown: String) -> CommitWatch {
        CommitWatch {
            state: Arc::new((Mutex::new(Commit::NotSent), Condvar::new())),
            shown,
        }
    }

    fn state(&self) -> MutexGuard<'_, Commit> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit is about to be sent.
    pub(crate) fn sending(&self) {
        *self.state() = Commit::InFlight;
    }

    /// The commit was answered: `Ok` committed, `Err` not.
    pub(crate) fn answered(&self, result: Result<(), String>) {
        *self.state() = Commit::Answered(result);
        self.state.1.notify_all();
    }

    /// Waits up to `limit` for the answer of a commit in flight.
    fn outcome(&self, limit: std::time::Duration) -> Outcome {
        let end = Instant::now() + limit;
        let mut s = self.state();
        loop {
            match &*s {
                Commit::NotSent => return Outcome::NotSent,
                Commit::Answered(Ok(())) => return Outcome::Committed,
                Commit::Answered(Err(e)) => return Outcome::Failed(e.clone()),
                Commit::InFlight => {}
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Outcome::Unknown;
            }
            s = (self.state.1.wait_timeout(s, left))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The interrupt's cleanup: waits for a commit in flight, says its outcome and gives the
    /// exit status 0 when the version was committed.
    pub(crate) fn on_interrupt(&self) -> impl FnOnce() -> Option<i32> + Send + 'static {
        let watch = self.clone();
        move || {
            let (line, status) = watch.report(watch.outcome(INTERRUPT_WAIT));
            if let Some(line) = line {
                eprintln!("osimage: {line}");
            }
            status
        }
    }

    /// The line an interrupt says about the commit, and the exit status it decides.
    fn report(&self, outcome: Outcome) -> (Option<String>, Option<i32>) {
        let v = &self.shown;
        match outcome {
            Outcome::NotSent => (None, None),
            Outcome::Committed => (
                Some(format!(
                    "{v} was committed before the interrupt took effect: the capture is \
                     complete (exit status 0; nothing after the commit, such as --verify, was \
                     done)"
                )),
                Some(0),
            ),
            Outcome::Failed(e) => (
                Some(format!(
                    "the commit of {v} failed: nothing was committed: {e}"
                )),
                None,
            ),
            Outcome::Unknown => (
                Some(format!(
                    "the commit of {v} was still unanswered after {} s: it may or may not be \
                     committed (osimage store ls shows whether it exists)",
                    INTERRUPT_WAIT.as_secs()
                )),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_interrupt_waits_for_the_commit_in_flight_and_says_its_outcome() {
        let w = CommitWatch::new("s3://b/p/web01@v".into());
        assert_eq!(w.outcome(Duration::ZERO), Outcome::NotSent);
        assert_eq!(w.report(Outcome::NotSent), (None, None));
        w.sending();
        assert_eq!(w.outcome(Duration::from_millis(20)), Outcome::Unknown);
        let answering = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            answering.answered(Ok(()));
        });
        assert_eq!(w.outcome(Duration::from_secs(30)), Outcome::Committed);
        t.join().unwrap();
        let (line, status) = w.report(Outcome::Committed);
        assert!(line.unwrap().contains("s3://b/p/web01@v was committed"));
        assert_eq!(status, Some(0));
        w.answered(Err("HTTP 500".into()));
        let (line, status) = w.report(w.outcome(Duration::ZERO));
        assert!(line.unwrap().contains("nothing was committed: HTTP 500"));
        assert_eq!(status, None);
        assert!(
            w.report(Outcome::Unknown)
                .0
                .unwrap()
                .contains("may or may not")
        );
    }
}
