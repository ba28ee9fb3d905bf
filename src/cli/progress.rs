//! Progress on the terminal: an indicatif bar with rate and ETA on a TTY, plain lines
//! otherwise (logs, CI, pipes), nothing with -q.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use osimage::Progress;

/// A line on stderr; one nobody reads any more (a closed pipe) is dropped, not a panic
/// (`eprintln!` panics on a write error): a capture goes on to clean up or finish.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// How much to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// The CLI's `Progress`.
pub struct TermProgress {
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
    phase: Mutex<Option<(String, u64, Instant)>>,
}

impl TermProgress {
    pub fn new(verbosity: Verbosity) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && verbosity != Verbosity::Quiet).then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        TermProgress {
            verbosity,
            bar,
            phase: Mutex::new(None),
        }
    }

    /// Prints a line for the user (not with -q), above the bar when there is one.
    pub fn say(&self, line: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(line),
            None => stderr_line!("{line}"),
        }
    }
}

impl Progress for TermProgress {
    fn start(&self, phase: &str, total: u64) {
        if let Ok(mut p) = self.phase.lock() {
            *p = Some((phase.to_string(), total, Instant::now()));
        }
        match &self.bar {
            Some(b) => {
                b.reset();
                b.set_length(total);
                b.set_position(0);
                b.set_message(phase.to_string());
            }
            None if self.verbosity == Verbosity::Verbose => stderr_line!("{phase}…"),
            None => {}
        }
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn note(&self, line: &str) {
        if line.starts_with("warning:") || self.verbosity == Verbosity::Verbose {
            match &self.bar {
                Some(b) => b.println(line),
                None if self.verbosity != Verbosity::Quiet || line.starts_with("warning:") => {
                    stderr_line!("{line}")
                }
                None => {}
            }
        }
    }

    fn status(&self, line: &str) {
        self.say(line);
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let done = self.phase.lock().ok().and_then(|mut p| p.take());
        if let (Some((phase, total, t0)), Verbosity::Verbose) = (done, self.verbosity) {
            stderr_line!(
                "{phase}: done, {} in {:.1} s",
                super::show::bytes(total),
                t0.elapsed().as_secs_f64()
            );
        }
    }
}
