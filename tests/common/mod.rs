//! Shared by the integration tests: the fixture builder, the independent comparator, a runner
//! for the built `osimage` binary that treats a panic as a failure of every test, the ISO
//! helpers (`iso`), the end-to-end harness (`e2e`), a real S3 server on loopback (`garage`),
//! the one check for host tools (`need`) and the one-VM-at-a-time lock (`vm_lock`).

pub mod compare;
pub mod e2e;
pub mod fault_proxy;
pub mod fixture;
pub mod garage;
pub mod garage_cluster;
pub mod hold_proxy;
pub mod http;
pub mod iso;
pub mod kernel;
pub mod loopdev;
pub mod oimg;
pub mod s3_gate;
pub mod sys;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use sys::shorten;
use tempfile::TempDir;

/// A scratch directory under cargo's target tmp dir (a real filesystem with xattrs and holes,
/// unlike a tmpfs /tmp might be).
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("osimage-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("creating a scratch dir under CARGO_TARGET_TMPDIR")
}

/// The tools every loop-device test calls (attach, partition, find and mount filesystems),
/// and `extra` besides: `need_disk_tools(&[("mkfs.xfs", "xfsprogs")])`.
pub fn need_disk_tools(extra: &[(&str, &str)]) {
    need(&[
        ("losetup", "mount"),
        ("partx", "util-linux"),
        ("sfdisk", "fdisk"),
        ("blkid", "util-linux"),
        ("mount", "mount"),
    ]);
    need(extra);
}

/// Fails the calling test (never skips it) when a host tool is missing, naming the Debian
/// package that installs it: `need(&[("mkfs.xfs", "xfsprogs")])`. Every package is in
/// .ci/apt-packages, which CI installs.
pub fn need(tools: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    let on_path = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                std::fs::metadata(dir.join(tool))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
    };
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, package)| format!("`{tool}` (install the Debian package {package})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not found on PATH: {} (.ci/apt-packages lists what the tests need)",
        missing.join(", ")
    );
}

/// Held by every test while a VM of its runs (QEMU in this process through
/// `osimage::vm`, or in an `osimage verify --boot` child): at most [`vm_slots`] VMs at a time
/// in the whole test run. One TCG guest keeps about 1.3 of the two cores busy (a boot is mostly
/// one vCPU's work; docs/PERFORMANCE.md), so two side by side finish sooner than one after the
/// other. Never taken twice by one thread (a thread waiting for a second slot while holding one
/// could wait for ever): take it around the boot itself, not around helpers that may boot.
pub fn vm_lock() -> VmSlot {
    VmSlot::take(1)
}

/// Like [`vm_lock`], for two VMs run at the same time by one test (they count as two).
pub fn vm_lock_two() -> VmSlot {
    VmSlot::take(2.min(vm_slots()))
}

/// How many VMs may run at once: `OSIMAGE_TEST_VMS` (1 runs them one after the other, as on a
/// one-core machine), else 2.
pub fn vm_slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| match std::env::var("OSIMAGE_TEST_VMS") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("OSIMAGE_TEST_VMS={v:?}: expected a whole number of VMs, 1 or more"),
        },
        Err(_) => 2,
    })
}

/// VM slots in use, and the condition a waiting test sleeps on.
static VMS_RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One test's VM slots; dropping it frees them.
pub struct VmSlot(usize);

impl VmSlot {
    fn take(n: usize) -> VmSlot {
        // A test that failed while holding the mutex poisons it; the next VM may still run.
        let mut running = VMS_RUNNING.0.lock().unwrap_or_else(|e| e.into_inner());
        while *running + n > vm_slots() {
            running = VMS_RUNNING
                .1
                .wait(running)
                .unwrap_or_else(|e| e.into_inner());
        }
        *running += n;
        VmSlot(n)
    }
}

impl Drop for VmSlot {
    fn drop(&mut self) {
        let mut running = VMS_RUNNING.0.lock().unwrap_or_else(|e| e.into_inner());
        *running -= self.0;
        VMS_RUNNING.1.notify_all();
    }
}

/// Held for its whole run by every test that attaches loop devices, mounts filesystems, makes
/// filesystems or restores onto disk images (`module` is its `module_path!()`). Tests of one
/// module still run side by side, as when each file was a test binary of its own, but never
/// beside another such module's: a loop device that is detached while another process has it
/// open (`mkfs.btrfs -U` and restores probe every block device) lingers until closed, and a
/// restore beside it then meets the same filesystem UUID twice (`mkfs.btrfs`: non-unique
/// UUID; XFS refuses the mount) or partition nodes that are not there yet.
pub fn loop_devices(module: &'static str) -> LoopDevices {
    let mut held = LOOP_DEVICES.0.lock().unwrap_or_else(|e| e.into_inner());
    while held.0.is_some_and(|m| m != module) {
        held = LOOP_DEVICES.1.wait(held).unwrap_or_else(|e| e.into_inner());
    }
    *held = (Some(module), held.1 + 1);
    LoopDevices
}

/// Which module holds the loop devices, and how many of its tests.
type LoopDevicesState = (Option<&'static str>, usize);

static LOOP_DEVICES: (std::sync::Mutex<LoopDevicesState>, std::sync::Condvar) =
    (std::sync::Mutex::new((None, 0)), std::sync::Condvar::new());

/// A test's share of [`loop_devices`]; the last one of a module lets the next module in.
pub struct LoopDevices;

impl Drop for LoopDevices {
    fn drop(&mut self) {
        let mut held = LOOP_DEVICES.0.lock().unwrap_or_else(|e| e.into_inner());
        held.1 -= 1;
        if held.1 == 0 {
            held.0 = None;
            LOOP_DEVICES.1.notify_all();
        }
    }
}

/// Runs a command; panics with its output if it cannot start or fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Runs a command and returns stdout + stderr as text.
pub fn run_text(cmd: &mut Command) -> String {
    let out = run(cmd);
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// The fixture tests need root (device nodes, foreign owners, trusted.* xattrs, capabilities).
pub fn require_root() {
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (mknod, chown, trusted.* and security.* xattrs); CI runs as root"
    );
}

/// A built fixture inside its own scratch dir: `root` is the tree, `work` a place for images
/// and extractions.
pub struct Built {
    pub dir: TempDir,
    pub root: PathBuf,
}

impl Built {
    /// A path in the scratch dir, beside the tree (not inside it).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh empty directory beside the tree.
    pub fn empty_dir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }
}

/// Builds the full fixture in a new scratch dir.
pub fn build_fixture() -> Built {
    require_root();
    let dir = scratch();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).expect("mkdir src");
    let notes = fixture::build(&root).unwrap_or_else(|e| panic!("building the fixture: {e}"));
    for s in &notes.skipped {
        eprintln!("fixture: skipped {s}");
    }
    Built { dir, root }
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "`osimage {}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            shorten(&self.args.join(" ")),
            self.code,
            shorten(&self.stdout_str()),
            shorten(&self.stderr)
        )
    }

    /// Asserts exit 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {}", self.describe());
        self
    }

    /// Asserts exit 1 with a message on stderr starting `osimage: `.
    pub fn fails(self) -> Run {
        assert_eq!(
            self.code,
            1,
            "expected failure (exit 1): {}",
            self.describe()
        );
        assert!(
            self.stderr.starts_with("osimage: ") || self.stderr.contains("\nosimage: "),
            "the failure message must start with `osimage: `: {}",
            self.describe()
        );
        self
    }

    /// Asserts exit 1 without requiring an `osimage: ` line: `verify`'s report of damage is
    /// its normal output (a list of damaged files), not an error message.
    pub fn reports_damage(self) -> Run {
        assert_eq!(
            self.code,
            1,
            "expected exit 1 (damage found): {}",
            self.describe()
        );
        self
    }

    /// Asserts exit 2 (usage error).
    pub fn usage_error(self) -> Run {
        assert_eq!(
            self.code,
            2,
            "expected a usage error (exit 2): {}",
            self.describe()
        );
        self
    }

    /// Asserts the combined output mentions `needle` (raw bytes, e.g. a path).
    pub fn mentions(self, needle: &[u8]) -> Run {
        let mut all = self.stdout.clone();
        all.extend_from_slice(self.stderr.as_bytes());
        let found = all.windows(needle.len().max(1)).any(|w| w == needle)
            || self
                .stderr
                .contains(&String::from_utf8_lossy(needle).into_owned());
        assert!(
            found,
            "expected the output to name {:?}: {}",
            sys::bstr(needle),
            self.describe()
        );
        self
    }
}

/// Runs the built binary. A panic (exit 101) or a signal fails the calling test at once.
pub fn osimage<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    osimage_with(args, |_| {})
}

/// Like `osimage`, with the soft limit on open files lowered to `nofile` in the child.
pub fn osimage_nofile<I, S>(nofile: u64, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::os::unix::process::CommandExt;
    osimage_with(args, |cmd| {
        let set = move || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit/setrlimit are async-signal-safe; runs between fork and exec.
            unsafe {
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = nofile.min(lim.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the closure only makes the two syscalls above.
        unsafe {
            cmd.pre_exec(set);
        }
    })
}

/// Like `osimage`, under the limits of issue #20 for a reading command: the address space
/// capped at [`READ_MEMORY_CAP`] (`prlimit --as`) and the CPU time at [`READ_CPU_CAP`] seconds.
/// An allocation past the cap fails and aborts, and the kernel kills a process past its CPU
/// limit (SIGXCPU): either signal fails the calling test, so a clean exit proves the image
/// could not make the command ask for more.
pub fn osimage_capped<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::os::unix::process::CommandExt;
    osimage_with(args, |cmd| {
        let limit = |n| libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        let (mem, cpu) = (limit(READ_MEMORY_CAP), limit(READ_CPU_CAP));
        // SAFETY: setrlimit is async-signal-safe; runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &mem) != 0
                    || libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// The memory cap of issue #20: every reading command stays within 512 MiB for any image.
pub const READ_MEMORY_CAP: u64 = 512 << 20;
/// The CPU cap of issue #20, in seconds: "a few seconds for any image under 1 MB", with room
/// for a slow or loaded machine (a resource limit, not a timing assertion).
pub const READ_CPU_CAP: u64 = 10;

/// Like `osimage`, with extra environment variables.
pub fn osimage_env<I, S>(args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    osimage_with(args, |cmd| {
        for (k, v) in env {
            cmd.env(k, v);
        }
    })
}

/// Like `osimage`, in a new session without a controlling terminal: nothing can prompt.
pub fn osimage_no_tty<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::os::unix::process::CommandExt;
    osimage_with(args, |cmd| {
        // SAFETY: setsid is async-signal-safe; runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

pub fn osimage_with<I, S>(args: I, configure: impl FnOnce(&mut Command)) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osimage"));
    cmd.args(&args).env("RUST_BACKTRACE", "1");
    configure(&mut cmd);
    let out = cmd.output().expect("running the osimage binary");
    let run = Run {
        args: args
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.signal().is_none(),
        "osimage killed by signal {:?}: {}",
        out.status.signal(),
        run.describe()
    );
    assert_ne!(
        run.code,
        101,
        "osimage panicked (always a bug): {}",
        run.describe()
    );
    run
}

/// `osimage capture ROOT -o IMAGE [extra...]`, asserting success.
pub fn capture(root: &Path, image: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec!["capture".as_ref(), root.as_os_str(), "-o".as_ref()];
    args.push(image.as_os_str());
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    osimage(args).ok()
}

/// `osimage extract IMAGE -C DIR [PATH...]` (not asserted).
pub fn extract(image: &Path, dir: &Path, paths: &[&[u8]]) -> Run {
    let mut args: Vec<&OsStr> = vec!["extract".as_ref(), image.as_os_str(), "-C".as_ref()];
    args.push(dir.as_os_str());
    args.extend(paths.iter().map(|p| OsStr::from_bytes(p)));
    osimage(args)
}

/// `osimage info IMAGE --json`, parsed.
pub fn info_json(image: &Path) -> serde_json::Value {
    let run = osimage(["info".as_ref(), image.as_os_str(), "--json".as_ref()]).ok();
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON ({e}):\n{}", run.stdout_str()))
}

/// A counter from `info --json`, searched at the top level and one level down (e.g. under
/// "stats"), so the test does not pin the exact nesting.
pub fn counter(info: &serde_json::Value, key: &str) -> u64 {
    let direct = info.get(key).and_then(|v| v.as_u64());
    let nested = || {
        info.as_object()?
            .values()
            .find_map(|v| v.get(key).and_then(|v| v.as_u64()))
    };
    direct
        .or_else(nested)
        .unwrap_or_else(|| panic!("info --json has no numeric `{key}`:\n{info:#}"))
}

/// Removes `dir` when the test process exits: for scratch dirs held by a `static`, which is
/// never dropped.
pub fn remove_at_exit(dir: &Path) {
    static DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    extern "C" fn cleanup() {
        if let Ok(dirs) = DIRS.lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        unsafe { libc::atexit(cleanup) };
    });
    DIRS.lock().expect("cleanup list").push(dir.to_path_buf());
}

/// Whether a directory exists and has no entries.
pub fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Every file under `a` has the same bytes under `b`, and `b` has no other file.
pub fn same_files(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut files = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    files.push(p.strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        files.sort();
        files
    };
    let (left, right) = (list(a), list(b));
    assert_eq!(left, right, "the same file names");
    for f in &left {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

/// The store tests' tree, some of it compressible and some not, made under `dir/root`:
/// `dirs` directories `dN`, each with `files` text files `tF.txt` (the line `file N/F`
/// repeated 200 + 10·F times) and `noise.bin` (`noise_len` bytes of noise seeded by
/// `seed + N`), and a symlink `link` → `d0/t1.txt`. Returns the root.
pub fn text_and_noise_tree(
    dir: &Path,
    dirs: usize,
    files: usize,
    noise_len: usize,
    seed: u64,
) -> PathBuf {
    let root = dir.join("root");
    for d in 0..dirs {
        let sub = root.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("mkdir {}: {e}", sub.display()));
        for f in 0..files {
            let text = format!("file {d}/{f}\n").repeat(200 + f * 10);
            std::fs::write(sub.join(format!("t{f}.txt")), text).expect("writing a text file");
        }
        let noise = iso::noise(noise_len, seed + d as u64);
        std::fs::write(sub.join("noise.bin"), noise).expect("writing noise.bin");
    }
    std::os::unix::fs::symlink("d0/t1.txt", root.join("link")).expect("symlink link");
    root
}
