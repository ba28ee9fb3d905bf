//! The restore log: every phase, note and warning with its time since the start, shown through
//! the caller's `Progress` and kept for `/var/log/osimage-restore.log` in the restored system.

use std::sync::Mutex;
use std::time::Instant;

use crate::progress::Progress;

/// Where the log goes in the restored system.
pub const LOG_PATH: &str = "/var/log/osimage-restore.log";

/// A `Progress` that records what passes through it.
pub struct RestoreLog<'p> {
    inner: &'p dyn Progress,
    start: Instant,
    lines: Mutex<Vec<String>>,
    /// Prefix for phase names (`/boot/efi: writing files`).
    prefix: Mutex<String>,
}

impl<'p> RestoreLog<'p> {
    pub fn new(inner: &'p dyn Progress) -> Self {
        RestoreLog {
            inner,
            start: Instant::now(),
            lines: Mutex::new(Vec::new()),
            prefix: Mutex::new(String::new()),
        }
    }

    fn record(&self, line: &str) {
        let t = self.start.elapsed().as_secs_f64();
        if let Ok(mut l) = self.lines.lock() {
            l.push(format!("[{t:8.2}] {line}"));
        }
    }

    /// A line shown to the user and kept in the log.
    pub fn say(&self, line: &str) {
        self.record(line);
        self.inner.note(line);
    }

    /// Phases started from now on are named `prefix: phase`.
    pub fn set_prefix(&self, p: &str) {
        if let Ok(mut x) = self.prefix.lock() {
            *x = p.to_string();
        }
    }

    /// The log so far, one line each.
    pub fn text(&self) -> String {
        let mut s = format!(
            "osimage {} restore log (times in seconds since the restore started)\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Ok(l) = self.lines.lock() {
            for line in l.iter() {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Progress for RestoreLog<'_> {
    fn start(&self, phase: &str, total: u64) {
        let p = self.prefix.lock().map(|p| p.clone()).unwrap_or_default();
        let phase = if p.is_empty() {
            phase.to_string()
        } else {
            format!("{p}: {phase}")
        };
        self.record(&format!("{phase} ({total} units)"));
        self.inner.start(&phase, total);
    }
    fn advance(&self, n: u64) {
        self.inner.advance(n);
    }
    fn note(&self, line: &str) {
        self.record(line);
        self.inner.note(line);
    }
    fn finish(&self) {
        self.inner.finish();
    }
}
