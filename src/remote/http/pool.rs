//! The planned reads' pool (docs/STORE.md §7.2.1): fetcher threads that take the plan's
//! runs in order within the budget, and the reader's side, which waits for a run in flight or
//! fetches one nobody has started.

use std::sync::Arc;

use super::{Inner, lock};
use crate::remote::ahead::{Claim, Lookup};

/// Gives a claimed run back to the plan, as failed when the fetch ended without doing so
/// (a panic): no reader waits for it forever.
struct Completion<'a> {
    inner: &'a Inner,
    claim: Claim,
    done: bool,
}

impl Completion<'_> {
    fn finish(mut self, got: std::io::Result<Vec<u8>>) {
        self.done = true;
        lock(&self.inner.ahead).complete(self.claim, got);
        self.inner.moved.notify_all();
    }
}

impl Drop for Completion<'_> {
    fn drop(&mut self) {
        if !self.done {
            let e = std::io::Error::other("internal: a fetch ended without an answer");
            lock(&self.inner.ahead).complete(self.claim, Err(e));
            self.inner.moved.notify_all();
        }
    }
}

/// One fetcher: takes the plan's runs in order while the budget allows, until the object is
/// dropped.
pub(super) fn fetcher(inner: Arc<Inner>) {
    loop {
        let claim = {
            let mut a = lock(&inner.ahead);
            loop {
                if a.closed {
                    return;
                }
                if let Some(c) = a.take_next() {
                    break c;
                }
                a = inner.moved.wait(a).unwrap_or_else(|p| p.into_inner());
            }
        };
        let c = Completion {
            inner: &inner,
            claim,
            done: false,
        };
        c.finish(inner.fetch_run(claim));
    }
}

impl Inner {
    /// A run's bytes, with as many requests as it takes.
    fn fetch_run(&self, c: Claim) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; c.len as usize];
        self.fetch(&mut buf, c.at).map(|()| buf)
    }

    /// `len` bytes at `at` when the plan has them: waits for the fetcher of their run, or
    /// fetches the run when nobody has started it. `None`: not planned (or read already).
    pub(super) fn planned(&self, at: u64, len: usize) -> std::io::Result<Option<Arc<Vec<u8>>>> {
        let mut a = lock(&self.ahead);
        loop {
            match a.lookup(at, len as u64) {
                Lookup::NotPlanned => return Ok(None),
                Lookup::Failed(e) => return Err(e),
                Lookup::Wait => a = self.moved.wait(a).unwrap_or_else(|p| p.into_inner()),
                Lookup::Ready(bytes) => {
                    // Kept like any read, for a second thread reading the same block, before
                    // the plan's lock is let go: that thread finds the piece out of the plan
                    // and must then find it among the reads, not fetch it again.
                    lock(&self.reads).keep(at, bytes.clone());
                    drop(a);
                    // room in the budget: a fetcher may go on
                    self.moved.notify_all();
                    return Ok(Some(bytes));
                }
                Lookup::Fetch(claim) => {
                    drop(a);
                    let c = Completion {
                        inner: self,
                        claim,
                        done: false,
                    };
                    c.finish(self.fetch_run(claim));
                    a = lock(&self.ahead);
                }
            }
        }
    }
}
