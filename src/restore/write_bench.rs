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

/// CPU time a process used, user and system (all its threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    /// This process's so far (`/proc/self/stat`'s utime and stime); `None` where /proc
    /// cannot say.
    pub fn now() -> Option<Cpu> {
        Cpu::of_stat(
            &Cpu::own_stat()?,
            rustix::param::clock_ticks_per_second(),
            11,
        )
    }

    /// What this process's children that ended and were waited for used (cutime, cstime).
    pub fn children_now() -> Option<Cpu> {
        Cpu::of_stat(
            &Cpu::own_stat()?,
            rustix::param::clock_ticks_per_second(),
            13,
        )
    }

    fn own_stat() -> Option<String> {
        std::fs::read_to_string("/proc/self/stat").ok()
    }

    /// Two fields of a `/proc/PID/stat` line, user then system time in ticks: `first` 11 is
    /// utime and stime (fields 14 and 15), 13 cutime and cstime (16 and 17). The name in
    /// field 2 may hold spaces and parentheses, so fields are counted after its last `)`.
    fn of_stat(stat: &str, ticks_per_second: u64, first: usize) -> Option<Cpu> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let secs = |i: usize| -> Option<Duration> {
            let ticks = f.get(i)?.parse::<u64>().ok()?;
            Some(Duration::from_secs_f64(
                ticks as f64 / ticks_per_second.max(1) as f64,
            ))
        };
        Some(Cpu {
            user: secs(first)?,
            system: secs(first + 1)?,
        })
    }

    /// What was used between `self` and `later`.
    pub fn until(self, later: Cpu) -> Cpu {
        Cpu {
            user: later.user.saturating_sub(self.user),
            system: later.system.saturating_sub(self.system),
        }
    }

    /// Measures `f`: its wall time and this process's CPU time meanwhile.
    fn of<T>(f: impl FnOnce() -> T) -> (T, Duration, Option<Cpu>) {
        let before = Cpu::now();
        let started = Instant::now();
        let out = f();
        let took = started.elapsed();
        (out, took, before.zip(Cpu::now()).map(|(b, a)| b.until(a)))
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU {:.1} s: user {:.1}, system {:.1}",
            (self.user + self.system).as_secs_f64(),
            self.user.as_secs_f64(),
            self.system.as_secs_f64()
        )
    }
}

/// What the bench line adds after the ratio, to split the unpack's time (docs/PERFORMANCE.md
/// "Agent unpack against dd"): its CPU time (`unpack_cpu`) and dd's (`dd_cpu`) on this
/// machine's CPUs; then the
/// same image's chunks read, decompressed and checked with no writes (`payload::verify`)
/// twice, first from the medium (the page cache dropped), then from the page cache. The first
/// less the second is reading the medium, the second the checking; the unpack less the first
/// is making the files and writing them.
pub(super) fn cpu_split(
    reader: &crate::payload::reader::PayloadReader,
    threads: usize,
    unpack_cpu: Option<Cpu>,
    dd_cpu: Option<Cpu>,
) -> Result<String, RestoreError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check = || crate::payload::verify::verify(reader, threads, &crate::progress::NoProgress);
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok();
    let (cold, cold_took, cold_cpu) = Cpu::of(check);
    let (warm, warm_took, warm_cpu) = Cpu::of(check);
    let problems = !cold?.ok() || !warm?.ok();
    let cpu = |c: Option<Cpu>| c.map_or("CPU ?".to_string(), |c| c.to_string());
    Ok(format!(
        "; unpack {}, dd {}, on {cpus} CPUs; read+check {} {:.1} s ({}); again from the page \
         cache {:.1} s ({}){}",
        cpu(unpack_cpu),
        cpu(dd_cpu),
        if dropped {
            "from the medium"
        } else {
            "(page cache not dropped)"
        },
        cold_took.as_secs_f64(),
        cpu(cold_cpu),
        warm_took.as_secs_f64(),
        cpu(warm_cpu),
        if problems { "; problems found" } else { "" }
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
    fn cpu_time_is_utime_and_stime_counted_after_the_name() {
        let stat = "4242 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 3 0";
        let c = Cpu::of_stat(stat, 100, 11).expect("a whole line");
        let children = Cpu::of_stat(stat, 100, 13).expect("a whole line");
        assert_eq!(children.to_string(), "CPU 0.0 s: user 0.0, system 0.0");
        assert_eq!(
            (c.user, c.system),
            (Duration::from_millis(1500), Duration::from_millis(500))
        );
        assert_eq!(c.to_string(), "CPU 2.0 s: user 1.5, system 0.5");
        let later = Cpu {
            user: Duration::from_secs(4),
            system: Duration::from_secs(1),
        };
        assert_eq!(
            c.until(later).to_string(),
            "CPU 3.0 s: user 2.5, system 0.5"
        );
        assert_eq!(Cpu::of_stat("4242 (x) R 1", 100, 11), None);
        assert!(Cpu::now().is_some() && Cpu::children_now().is_some());
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
