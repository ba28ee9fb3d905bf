//! The shared Read lock a long read of a store version holds (docs/STORE.md §5.1): `restore`,
//! `extract`, `verify` and `export` of `s3://BUCKET/PREFIX/NAME[@VERSION]` PUT one before
//! they open the version and delete it when they end, fail or are interrupted, so a prune
//! that condemns the version meanwhile waits for them before it sweeps its packs. `--no-lock`
//! takes none, for credentials that may only read. `info`, `list` and `diff` read one object
//! per version and take none.
//!
//! The lock is `osimage::store`'s, refreshed by its thread as a capture's is; the interrupt
//! handling is the capture's (`osimage::Interrupts`): started before the lock is taken, so
//! every thread started afterwards leaves SIGINT, SIGTERM and SIGHUP to it.

use clap::Args;
use osimage::store::objects::LockKind;
use osimage::store::{HeldLock, Store, StoreError};
use osimage::{Interrupts, OnInterrupt, Progress};

use super::Failure;

/// `--no-lock`, for the reading commands of a store version.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct LockArgs {
    /// When IMAGE is a version in an osimage store: take no Read lock on the store (for
    /// credentials that may only read). A prune running meanwhile may then delete the
    /// version's data in the middle of the read, which then fails.
    #[arg(long)]
    pub no_lock: bool,
}

/// A Read lock held on a store and the interrupt handling that deletes it. Dropping it
/// deletes the lock (as far as the server answers: one left behind goes stale).
pub struct ReadLock {
    // Dropped in this order: the interrupt's cleanup unregistered, the lock deleted, the
    // signal mask restored.
    _on_interrupt: OnInterrupt,
    lock: Option<HeldLock>,
    _interrupts: Interrupts,
}

impl ReadLock {
    /// Takes a Read lock on `store` for `series` unless `args` says not to.
    pub fn take(store: &Store, series: &str, args: LockArgs) -> Result<Option<ReadLock>, Failure> {
        if args.no_lock {
            return Ok(None);
        }
        let interrupts = Interrupts::start();
        let lock = match store.take_lock(LockKind::Read, Some(series)) {
            Ok(lock) => lock,
            Err(e @ StoreError::S3(_)) => {
                return Err(format!(
                    "{e} (taking a Read lock on the store; with credentials that may only read, \
                     --no-lock reads without one)"
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let on_interrupt = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
        Ok(Some(ReadLock {
            _on_interrupt: on_interrupt,
            lock: Some(lock),
            _interrupts: interrupts,
        }))
    }

    /// Deletes the lock now; a failure is only noted (the lock goes stale).
    pub fn release(mut self, progress: &dyn Progress) {
        if let Some(lock) = self.lock.take() {
            let shown = lock.shown().to_string();
            if let Err(e) = lock.release() {
                progress.note(&format!("warning: {shown} stays until it goes stale: {e}"));
            }
        }
    }
}
