//! Command line: argument parsing, progress display, exit codes; no logic of its own.

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    0
}
