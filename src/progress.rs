//! How long-running library work reports progress, without knowing about terminals.
//!
//! The CLI implements `Progress` with an indicatif bar on a TTY and plain log lines otherwise;
//! tests and library callers use `NoProgress`.

/// Receives progress from a long operation. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// Starts a phase of `total` units (bytes unless the phase says otherwise).
    fn start(&self, phase: &str, total: u64);
    /// `n` more units done in the current phase.
    fn advance(&self, n: u64);
    /// A line for the user (a warning, or a note shown with -v).
    fn note(&self, line: &str);
    /// A line the user sees without -v (what the work is doing, e.g. where it reads from);
    /// by default a note.
    fn status(&self, line: &str) {
        self.note(line);
    }
    /// The current phase is over.
    fn finish(&self);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn note(&self, _line: &str) {}
    fn finish(&self) {}
}
