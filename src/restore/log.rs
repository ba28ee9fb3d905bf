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

/// Progress as plain lines (the rescue console has no terminal to redraw): each phase's start,
/// then at most every `every` its bytes done, rate and ETA, and its end.
pub struct LineProgress<F: Fn(&str) + Sync> {
    out: F,
    every: std::time::Duration,
    state: Mutex<LineState>,
}

struct LineState {
    phase: String,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl<F: Fn(&str) + Sync> LineProgress<F> {
    pub fn new(out: F, every: std::time::Duration) -> Self {
        let now = Instant::now();
        LineProgress {
            out,
            every,
            state: Mutex::new(LineState {
                phase: String::new(),
                total: 0,
                done: 0,
                started: now,
                last: now,
            }),
        }
    }
}

/// `12.0 MiB / 100.0 MiB (12%), 30.0 MiB/s, ETA 3 s`.
pub fn progress_line(done: u64, total: u64, secs: f64) -> String {
    use super::plan::size;
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let eta = if rate > 0.0 && total > done {
        format!(", ETA {:.0} s", (total - done) as f64 / rate)
    } else {
        String::new()
    };
    format!(
        "{} / {} ({pct}%), {}/s{eta}",
        size(done),
        size(total),
        size(rate as u64)
    )
}

impl<F: Fn(&str) + Sync> Progress for LineProgress<F> {
    fn start(&self, phase: &str, total: u64) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            *s = LineState {
                phase: phase.to_string(),
                total,
                done: 0,
                started: now,
                last: now,
            };
        }
        (self.out)(&format!("osimage: {phase}"));
    }
    fn advance(&self, n: u64) {
        let line = {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            s.done += n;
            if s.last.elapsed() < self.every || s.total == 0 {
                return;
            }
            s.last = Instant::now();
            format!(
                "osimage:   {}: {}",
                s.phase,
                progress_line(s.done, s.total, s.started.elapsed().as_secs_f64())
            )
        };
        (self.out)(&line);
    }
    fn note(&self, line: &str) {
        (self.out)(&format!("osimage: {line}"));
    }
    fn finish(&self) {
        let line = self.state.lock().ok().and_then(|s| {
            (s.total > 0).then(|| {
                format!(
                    "osimage:   {}: done, {}",
                    s.phase,
                    progress_line(s.done, s.total, s.started.elapsed().as_secs_f64())
                )
            })
        });
        if let Some(l) = line {
            (self.out)(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_bytes_rate_and_eta() {
        let l = progress_line(50 << 20, 100 << 20, 2.0);
        assert_eq!(l, "50.0 MiB / 100.0 MiB (50%), 25.0 MiB/s, ETA 2 s");
        let seen = Mutex::new(Vec::new());
        let p = LineProgress::new(
            |s: &str| seen.lock().unwrap().push(s.to_string()),
            std::time::Duration::ZERO,
        );
        p.start("/: writing files", 10);
        p.advance(5);
        p.finish();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen[0], "osimage: /: writing files");
        assert!(seen[1].contains("50%"), "{seen:?}");
        assert!(seen[2].contains("done"), "{seen:?}");
    }
}
