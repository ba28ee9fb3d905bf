//! `osimage.bench=dd` (`RestoreOptions::write_bench`, issue #23 goal 3): the unpack's write
//! rate measured against `dd` writing as many bytes to the same virtual disk in the same
//! boot. After phase 6 (unpack, then syncfs of every filesystem: the data is on the disk),
//! `dd if=/dev/zero of=<largest filesystem>/.osimage-write-bench bs=1M count=N conv=fsync`
//! writes the unpack's file bytes again through the same filesystem; the file is then
//! removed and the filesystem synced, so the restored tree is as the image has it. One console
//! line gives both (docs/PERFORMANCE.md "Agent unpack against dd"):
//!
//! `OSIMAGE-BENCH unpack 358.1 MiB in 41.2 s (8.7 MiB/s); dd 358.1 MiB in 30.1 s (11.9 MiB/s); ratio 1.37`
//!
//! `dd` reads /dev/zero, the cheapest source there is, so its time is the disk's (and the
//! filesystem's) alone; the unpack's also holds reading the medium, decompressing, checking
//! every chunk and making every inode. The ratio is unpack time ÷ dd time for equal bytes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::RestoreError;

/// The console line's first word, for scripts.
pub const MARKER: &str = "OSIMAGE-BENCH";
/// The file dd writes (removed afterwards).
const FILE: &str = ".osimage-write-bench";

/// Writes `bytes` (rounded up to a MiB) with dd into `dir` (a mounted filesystem of the
/// target), removes the file, syncs; returns the line to print.
pub(super) fn dd_beside(dir: &Path, bytes: u64, unpack: Duration) -> Result<String, RestoreError> {
    let mib = bytes.div_ceil(1 << 20).max(1);
    let file = dir.join(FILE);
    let started = Instant::now();
    let out = Command::new(dd_program())
        .args(dd_args())
        .arg(format!("of={}", file.display()))
        .arg(format!("count={mib}"))
        .output()
        .map_err(|e| RestoreError::io("running dd for osimage.bench=dd into", dir, e))?;
    let took = started.elapsed();
    let removed = std::fs::remove_file(&file);
    if !out.status.success() {
        return Err(RestoreError::io(
            "osimage.bench=dd: dd failed writing",
            &file,
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    removed.map_err(|e| RestoreError::io("removing", &file, e))?;
    let synced =
        std::fs::File::open(dir).and_then(|f| rustix::fs::syncfs(&f).map_err(std::io::Error::from));
    synced.map_err(|e| RestoreError::io("syncing", dir, e))?;
    Ok(line(bytes, unpack, mib << 20, took))
}

/// The CPU time this process has used so far, all its threads, user and system
/// (`/proc/self/stat`'s utime and stime); `None` where /proc cannot say.
pub(super) fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_of_stat(&stat, rustix::param::clock_ticks_per_second())
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15; the name in field 2 may hold
/// spaces and parentheses, so fields are counted after its last `)`).
fn cpu_of_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// What the bench line adds after the ratio: the unpack's CPU time (`unpack_cpu`) on this
/// machine's CPUs, then the same image's chunks read, decompressed and checked once more with
/// no writes (`payload::verify`, its data now in the page cache), timed with its CPU time: how
/// much of the unpack's time is that CPU work and not the disk (docs/PERFORMANCE.md "Agent
/// unpack against dd").
pub(super) fn cpu_split(
    reader: &crate::payload::reader::PayloadReader,
    threads: usize,
    unpack_cpu: Option<Duration>,
) -> Result<String, RestoreError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = cpu_time();
    let started = Instant::now();
    let report = crate::payload::verify::verify(reader, threads, &crate::progress::NoProgress)?;
    let took = started.elapsed();
    let cpu = before.zip(cpu_time()).map(|(b, a)| a.saturating_sub(b));
    let secs =
        |d: Option<Duration>| d.map_or("?".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
    Ok(format!(
        "; unpack CPU {} s on {cpus} CPUs; read+check alone {:.1} s (CPU {} s{})",
        secs(unpack_cpu),
        took.as_secs_f64(),
        secs(cpu),
        if report.ok() { "" } else { ", problems found" }
    ))
}

/// `dd` on PATH, else busybox's (the rescue environment has busybox).
fn dd_program() -> &'static str {
    if crate::sys::on_path("dd") {
        "dd"
    } else {
        "busybox"
    }
}

fn dd_args() -> Vec<&'static str> {
    let mut a = Vec::new();
    if dd_program() == "busybox" {
        a.push("dd");
    }
    a.extend(["if=/dev/zero", "bs=1M", "conv=fsync"]);
    a
}

/// The console line.
fn line(unpack_bytes: u64, unpack: Duration, dd_bytes: u64, dd: Duration) -> String {
    let mib = |b: u64| b as f64 / 1048576.0;
    let rate = |b: u64, t: Duration| mib(b) / t.as_secs_f64().max(1e-3);
    // time for equal bytes: unpack's seconds per byte over dd's
    let ratio = rate(dd_bytes, dd) / rate(unpack_bytes, unpack);
    format!(
        "{MARKER} unpack {:.1} MiB in {:.1} s ({:.1} MiB/s); dd {:.1} MiB in {:.1} s ({:.1} MiB/s); ratio {ratio:.2}",
        mib(unpack_bytes),
        unpack.as_secs_f64(),
        rate(unpack_bytes, unpack),
        mib(dd_bytes),
        dd.as_secs_f64(),
        rate(dd_bytes, dd),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_both_rates_and_their_ratio_for_equal_bytes() {
        let l = line(
            100 << 20,
            Duration::from_secs(20),
            100 << 20,
            Duration::from_secs(10),
        );
        assert_eq!(
            l,
            "OSIMAGE-BENCH unpack 100.0 MiB in 20.0 s (5.0 MiB/s); dd 100.0 MiB in 10.0 s (10.0 MiB/s); ratio 2.00"
        );
    }

    #[test]
    fn cpu_time_is_utime_plus_stime_counted_after_the_name() {
        let stat = "4242 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 3 0";
        assert_eq!(
            cpu_of_stat(stat, 100),
            Some(Duration::from_secs(2)),
            "150 + 50 ticks at 100 a second"
        );
        assert_eq!(cpu_of_stat("4242 (x) R 1", 100), None);
        assert!(cpu_time().is_some());
    }

    #[test]
    fn dd_writes_the_bytes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept"), b"x").unwrap();
        let l = dd_beside(dir.path(), 3 << 20, Duration::from_secs(1)).unwrap();
        assert!(
            l.starts_with("OSIMAGE-BENCH unpack 3.0 MiB in 1.0 s (3.0 MiB/s); dd 3.0 MiB in "),
            "{l}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("kept")]);
        let e = dd_beside(&dir.path().join("missing"), 1, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("dd failed writing"), "{e}");
    }
}
