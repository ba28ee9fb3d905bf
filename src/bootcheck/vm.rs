//! One QEMU virtual machine, watched through its serial console: SeaBIOS or OVMF (read-only
//! code + a fresh copy of the variables per boot), KVM or TCG, no keyboard, no network, the
//! serial port written to a log file that is read while the VM runs. Used by `verify --boot`
//! and by the end-to-end tests (one implementation for both). Command lines as in docs/ISO.md.
//!
//! `run_typing` also types into the serial console, expect-style: each `Typed` line is sent
//! once its prompt text appears on the console after the previous one's (the interactive
//! restore dialogue and the passphrase prompt, docs/RESTORE.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::BootCheckError;
use super::accel::Accel;

/// The QEMU binary, and the Debian package that ships it.
pub const QEMU: &str = "qemu-system-x86_64";
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// OVMF (Debian package `ovmf`): the code is used read-only, the variables copied per boot.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const OVMF_PACKAGE: &str = "ovmf";
/// Secure Boot: OVMF's SMM build, and variables with Microsoft's keys enrolled (PK, KEK, and
/// the UEFI CA in db that signs the distributions' shims), Secure Boot on.
pub const OVMF_SB_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_SB_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// The firmware writes within seconds even under TCG on a busy machine (SeaBIOS to the debug
/// port at once; OVMF to the serial port within ~12 s under TCG here): no byte at all within
/// this long means QEMU never ran it (issue #21).
pub const FIRST_OUTPUT: Duration = Duration::from_secs(60);

/// The firmware a VM boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF (UEFI).
    Uefi,
    /// OVMF with Secure Boot on and Microsoft's keys (q35 with SMM, as that build needs).
    UefiSecureBoot,
}

impl Firmware {
    /// `bios` or `uefi`.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiSecureBoot => "uefi-secureboot",
        }
    }

    /// The firmware's own name.
    pub fn product(self) -> &'static str {
        match self {
            Firmware::Bios => "SeaBIOS",
            Firmware::Uefi => "OVMF",
            Firmware::UefiSecureBoot => "OVMF with Secure Boot (Microsoft keys)",
        }
    }

    /// OVMF's code and variables template; `None` for SeaBIOS.
    pub fn ovmf(self) -> Option<[&'static str; 2]> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some([OVMF_CODE, OVMF_VARS]),
            Firmware::UefiSecureBoot => Some([OVMF_SB_CODE, OVMF_SB_VARS]),
        }
    }
}

/// The bus a disk is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    /// The PC's IDE controller (as a BIOS sees a USB stick or an old disk).
    Ide,
    /// An NVMe controller of its own (`-device nvme`), one per disk.
    Nvme,
}

/// One disk of the VM.
pub struct Drive<'a> {
    pub file: &'a Path,
    pub bus: Bus,
    /// Writes go to a throw-away overlay (`snapshot=on`): booting a disk to look at it must not
    /// change it (journals, logs, random seed, grubenv).
    pub snapshot: bool,
}

/// A kernel booted directly (`-kernel`, `-initrd`, `-append`), without a boot loader.
pub struct DirectKernel<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
}

/// One boot.
pub struct VmSpec<'a> {
    /// Names the console log (`<log_dir>/<name>.log`) and QEMU's stderr beside it.
    pub name: String,
    pub log_dir: &'a Path,
    pub firmware: Firmware,
    pub accel: Accel,
    pub memory_mib: u32,
    /// The ISO as a CD-ROM (then the VM boots from it).
    pub cdrom: Option<&'a Path>,
    pub kernel: Option<DirectKernel<'a>>,
    pub disks: Vec<Drive<'a>>,
    /// The whole boot's limit; the VM is killed when it passes.
    pub timeout: Duration,
    /// Console lines that end the boot successfully: once one appears, the VM gets `grace` to
    /// stop by itself and is then killed. Empty: wait for the VM to stop by itself.
    pub stop_on: &'a [&'a str],
    /// Console text that ends the boot as a failure (a kernel panic, an emergency shell, a
    /// boot loader prompt): the VM gets `grace` for the rest of the message, then is killed.
    pub fail_on: &'a [&'a str],
    /// Console lines whose first appearance is timed (phase boundaries).
    pub milestones: &'a [&'a str],
    pub grace: Duration,
    /// No new console output (serial port or firmware debug port) for this long ends the boot
    /// as `Ended::Stalled` (issue #21). `None`: only `timeout`.
    pub stall: Option<Duration>,
    /// No console output at all for this long ends the boot as `Ended::NoOutput`: the firmware
    /// (SeaBIOS writes to the debug port 0x402, OVMF to the serial port) did not run.
    pub first_output: Option<Duration>,
    /// A network boot (`UserNet`); `None`: no network device at all.
    pub network: Option<UserNet<'a>>,
}

/// QEMU's user-mode network for a network boot: `restrict=on`, so the guest reaches nothing
/// but `forwards`; a virtio NIC whose iPXE option ROM asks slirp's DHCP for an address and
/// loads `bootfile`; the VM boots from it when there is no CD-ROM.
#[derive(Clone, Copy, Debug)]
pub struct UserNet<'a> {
    /// The boot file DHCP hands out: a URL (iPXE fetches it over HTTP) or a file name.
    pub bootfile: &'a str,
    /// Guest `ADDR:PORT` → a command QEMU starts for each connection to it, the connection
    /// as the command's standard input and output (`guestfwd=tcp:ADDR:PORT-cmd:COMMAND`).
    pub forwards: &'a [(&'a str, &'a str)],
}

impl UserNet<'_> {
    /// `-netdev` and `-device` arguments (commas in values doubled, as QEMU's option syntax
    /// wants).
    fn args(&self) -> Vec<String> {
        let q = |v: &str| v.replace(',', ",,");
        let mut netdev = format!("user,id=n0,restrict=on,bootfile={}", q(self.bootfile));
        for (at, cmd) in self.forwards {
            netdev.push_str(&format!(",guestfwd=tcp:{}-cmd:{}", q(at), q(cmd)));
        }
        vec![
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// QEMU exited by itself (the guest powered off, or QEMU failed).
    Exited(ExitStatus),
    /// A `stop_on` line appeared.
    Stopped(String),
    /// A `fail_on` text appeared; the console line holding it.
    Failed(String),
    TimedOut,
    /// No new console output for `stall`; the last console line.
    Stalled(String),
    /// No console output at all within `first_output`: the firmware never ran.
    NoOutput,
    /// QEMU reported that it cannot run the guest (`qemu_error`): its message.
    VmError(String),
}

/// A line typed into the serial console once `after` appears there (expect-style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Typed<'a> {
    /// Console text to wait for, searched after where the previous line's prompt was found
    /// (so the same prompt asked twice is answered twice).
    pub after: &'a str,
    /// What is typed, without its line end (a newline is sent after it).
    pub line: &'a str,
}

/// What a boot left behind.
pub struct Outcome {
    pub console: String,
    pub ended: Ended,
    pub elapsed: Duration,
    /// When each milestone first appeared (since QEMU started), in `milestones` order.
    pub milestones: Vec<Option<Duration>>,
    /// When each `Typed` line was sent (since QEMU started), in order; shorter than the script
    /// when the boot ended before a prompt appeared.
    pub typed: Vec<Duration>,
    pub log: PathBuf,
    pub command: String,
    pub stderr: String,
}

impl Outcome {
    /// Whether QEMU stopped by itself.
    pub fn exited(&self) -> Option<ExitStatus> {
        match self.ended {
            Ended::Exited(s) => Some(s),
            _ => None,
        }
    }

    /// The last `n` console lines (control characters of terminal drawing removed).
    pub fn tail(&self, n: usize) -> Vec<String> {
        super::console::tail(&self.console, n)
    }

    /// Why QEMU could not run the VM, when that is how the boot ended (issue #21): QEMU's own
    /// error on its stderr (KVM's internal error, an emulation failure), the firmware writing
    /// nothing at all, or QEMU exiting with a failure the guest did not ask for (a guest that
    /// powers off or reboots under `-no-reboot` makes QEMU exit 0). `None`: the VM ran, so
    /// what the console shows is the guest's doing.
    pub fn vm_failure(&self) -> Option<String> {
        match &self.ended {
            Ended::VmError(m) => Some(m.clone()),
            Ended::NoOutput => Some(format!(
                "the firmware wrote nothing within {:.0} s{}",
                self.elapsed.as_secs_f64(),
                stderr_note(&self.stderr)
            )),
            Ended::Exited(s) if !s.success() => Some(format!(
                "QEMU exited with {s} without the guest asking{}",
                stderr_note(&self.stderr)
            )),
            _ => qemu_error(&self.stderr),
        }
    }

    /// How it ended, the log's path, the QEMU command, its stderr and the last console lines:
    /// for failure messages.
    pub fn describe(&self) -> String {
        let how = match &self.ended {
            Ended::Exited(s) => format!("QEMU exited by itself ({s})"),
            Ended::Stopped(l) => format!("QEMU stopped after `{}`", l.trim()),
            Ended::Failed(l) => format!("QEMU stopped after a failure: `{}`", l.trim()),
            Ended::TimedOut => "QEMU killed at the timeout".to_string(),
            Ended::Stalled(l) => format!("QEMU killed: the console stalled after `{}`", l.trim()),
            Ended::NoOutput => "QEMU killed: the firmware wrote nothing".to_string(),
            Ended::VmError(m) => format!("QEMU could not run the VM: {m}"),
        };
        format!(
            "{how} after {:.0} s\nconsole: {}\n{QEMU} {}\nqemu stderr: {}\n--- last 60 console lines ---\n{}",
            self.elapsed.as_secs_f64(),
            self.log.display(),
            self.command,
            self.stderr.trim(),
            self.tail(60).join("\n")
        )
    }
}

/// QEMU's own messages (stderr) that mean it cannot run the guest: KVM's internal error with
/// its emulation failure (issue #21: an x87 instruction in OVMF on a nested host), an
/// accelerator that fails to start, a guest that dies in the hypervisor. Warnings
/// (`host doesn't support requested feature`) are not failures. Returns the matching lines,
/// joined with ` … `.
pub fn qemu_error(stderr: &str) -> Option<String> {
    const SIGNS: &[&str] = &[
        "internal error",
        "emulation failure",
        "kvm run failed",
        "failed to initialize kvm",
        "could not access kvm",
        "kvm_init",
        "error: kvm",
        "fatal:",
        "triple fault",
    ];
    let hits: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.to_ascii_lowercase().contains("warning:"))
        .filter(|l| {
            let low = l.to_ascii_lowercase();
            SIGNS.iter().any(|s| low.contains(s))
        })
        .take(3)
        .collect();
    if hits.is_empty() {
        None
    } else {
        Some(hits.join(" … "))
    }
}

/// `: <first stderr line that is not a warning>`, or nothing.
fn stderr_note(stderr: &str) -> String {
    let line = qemu_error(stderr).or_else(|| {
        stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.contains("warning:"))
            .map(str::to_string)
    });
    line.map(|l| format!(" (QEMU: {l})")).unwrap_or_default()
}

/// QEMU's arguments for `spec`; `typing`: the serial port also reads QEMU's standard input
/// (a `stdio` character device logging what the guest writes to `serial`), else it only
/// writes to `serial`.
fn args(spec: &VmSpec, serial: &Path, vars: &Path, typing: bool) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-machine".into(),
        match spec.firmware {
            // the Secure Boot build keeps its variables in SMM-protected flash
            Firmware::UefiSecureBoot => format!("q35,smm=on,accel={}", spec.accel.name()),
            _ => format!("pc,accel={}", spec.accel.name()),
        },
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-smp".into(),
        "2".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
        // An entropy source for the guest's virtio_rng driver (QEMU's built-in backend).
        "-device".into(),
        "virtio-rng-pci".into(),
    ];
    if spec.accel == Accel::Tcg {
        // TCG's default CPU has no RDRAND, so a guest's random pool becomes ready only late in
        // its boot, with user space running on both vCPUs; the kernel then patches its code
        // (the crng_is_ready static key) under them. A restored Debian's first boot was seen
        // stuck for 900 s at exactly that patch site in getrandom(). With RDRAND (which TCG
        // emulates) the pool is ready while the kernel still boots on one CPU.
        a.extend(["-cpu".into(), "qemu64,+rdrand".into()]);
    }
    // SeaBIOS writes its log to the debug port, so even a BIOS boot shows output at once
    a.push("-debugcon".into());
    a.push(format!("file:{}", debug_log(serial).display()));
    a.extend(["-global".into(), "isa-debugcon.iobase=0x402".into()]);
    if typing {
        a.push("-chardev".into());
        a.push(format!(
            "stdio,id=osimage-serial,signal=off,logfile={}",
            serial.display()
        ));
        a.extend(["-serial".into(), "chardev:osimage-serial".into()]);
    } else {
        a.extend(["-serial".into(), format!("file:{}", serial.display())]);
    }
    if spec.firmware == Firmware::UefiSecureBoot {
        a.push("-global".into());
        a.push("driver=cfi.pflash01,property=secure,value=on".into());
    }
    if let Some([code, _]) = spec.firmware.ovmf() {
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={code}"
        ));
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
    }
    for (i, d) in spec.disks.iter().enumerate() {
        a.push("-drive".into());
        let bus = match d.bus {
            Bus::Virtio => "virtio".to_string(),
            Bus::Ide => "ide,media=disk".to_string(),
            Bus::Nvme => format!("none,id=disk{i}"),
        };
        a.push(format!(
            "file={},if={bus},format=raw,cache=unsafe{}",
            d.file.display(),
            if d.snapshot { ",snapshot=on" } else { "" }
        ));
        if d.bus == Bus::Nvme {
            // the serial number is required; the guest names the disk nvme<N>n1
            a.push("-device".into());
            a.push(format!("nvme,drive=disk{i},serial=osimage{i}"));
        }
    }
    if let Some(k) = &spec.kernel {
        a.push("-kernel".into());
        a.push(k.kernel.display().to_string());
        a.push("-initrd".into());
        a.push(k.initrd.display().to_string());
        a.push("-append".into());
        a.push(k.cmdline.to_string());
    }
    match &spec.network {
        Some(n) => a.extend(n.args()),
        None => a.extend(["-nic".into(), "none".into()]),
    }
    if let Some(iso) = spec.cdrom {
        a.push("-drive".into());
        a.push(format!(
            "file={},format=raw,media=cdrom,readonly=on",
            iso.display()
        ));
        a.extend(["-boot".into(), "d".into()]);
    } else if spec.network.is_some() && spec.kernel.is_none() {
        a.extend(["-boot".into(), "n".into()]);
    } else {
        a.extend(["-boot".into(), "c".into()]);
    }
    a
}

/// Fails naming the Debian package when QEMU or (for UEFI) OVMF is missing.
pub fn check_host(firmware: Firmware) -> Result<(), BootCheckError> {
    check_tools(
        firmware,
        super::on_path(QEMU),
        firmware.ovmf().unwrap_or([OVMF_CODE, OVMF_VARS]),
    )
}

/// `check_host` with what was found given: whether QEMU is on PATH, and OVMF's two files.
fn check_tools(firmware: Firmware, qemu: bool, ovmf: [&str; 2]) -> Result<(), BootCheckError> {
    if !qemu {
        return Err(BootCheckError::MissingTool {
            tool: QEMU.into(),
            package: QEMU_PACKAGE.into(),
        });
    }
    if firmware.ovmf().is_some() {
        for f in ovmf {
            if !Path::new(f).is_file() {
                return Err(BootCheckError::MissingTool {
                    tool: f.into(),
                    package: OVMF_PACKAGE.into(),
                });
            }
        }
    }
    Ok(())
}

/// Boots `spec`, watches the serial console and returns how the boot ended. Errors only when
/// QEMU cannot be started or its files cannot be made. Several calls may run at once (on
/// other threads, each VM with its own `name`); how many a host can afford is the caller's
/// choice (`verify --boot` runs one after the other, the tests two at a time).
pub fn run(spec: &VmSpec) -> Result<Outcome, BootCheckError> {
    run_typing(spec, &[])
}

/// `run`, typing `script` into the serial console: each line once its prompt appeared. With
/// an empty script the serial port is output only, exactly as `run`.
pub fn run_typing(spec: &VmSpec, script: &[Typed]) -> Result<Outcome, BootCheckError> {
    check_host(spec.firmware)?;
    let io = |what: &str, path: &Path| {
        let path = path.to_path_buf();
        let what = what.to_string();
        move |source| BootCheckError::Io { what, path, source }
    };
    std::fs::create_dir_all(spec.log_dir).map_err(io("making", spec.log_dir))?;
    let serial = spec.log_dir.join(format!("{}.log", spec.name));
    let vars = spec.log_dir.join(format!("{}.vars.fd", spec.name));
    let stderr_path = spec.log_dir.join(format!("{}.qemu-stderr", spec.name));
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(debug_log(&serial));
    if let Some([_, template]) = spec.firmware.ovmf() {
        std::fs::copy(template, &vars).map_err(io("copying OVMF variables to", &vars))?;
    }
    let typing = !script.is_empty();
    let args = args(spec, &serial, &vars, typing);
    let stderr_file = std::fs::File::create(&stderr_path).map_err(io("creating", &stderr_path))?;
    let mut child = Command::new(QEMU)
        .args(&args)
        .stdin(if typing {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .map_err(io("starting", Path::new(QEMU)))?;
    let mut keyboard = Keyboard::new(child.stdin.take(), script);
    let watched = watch(&mut child, spec, &serial, &stderr_path, &mut keyboard);
    if !matches!(watched.0, Ended::Exited(_)) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (ended, elapsed, milestones) = watched;
    let _ = std::fs::remove_file(&vars);
    Ok(Outcome {
        console: read_console(&serial),
        ended,
        elapsed,
        milestones,
        typed: keyboard.typed,
        log: serial,
        command: args.join(" "),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    })
}

/// Where `needle` next occurs in `console` at or after byte `from`; the byte after it.
fn prompt_end(console: &[u8], from: usize, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    let rest = console.get(from..)?;
    if n.is_empty() {
        return Some(from);
    }
    rest.windows(n.len())
        .position(|w| w == n)
        .map(|i| from + i + n.len())
}

/// Types a script into the VM's standard input (its serial port), one line per prompt.
struct Keyboard<'a> {
    input: Option<ChildStdin>,
    script: &'a [Typed<'a>],
    /// The console bytes already answered: the next prompt is searched after them.
    cursor: usize,
    typed: Vec<Duration>,
}

impl<'a> Keyboard<'a> {
    fn new(input: Option<ChildStdin>, script: &'a [Typed<'a>]) -> Self {
        Keyboard {
            input,
            script,
            cursor: 0,
            typed: Vec::new(),
        }
    }

    /// Sends every line whose prompt is now on `console`, in order.
    fn answer(&mut self, console: &[u8], now: Duration) {
        while let Some(step) = self.script.get(self.typed.len()) {
            let Some(end) = prompt_end(console, self.cursor, step.after) else {
                return;
            };
            let Some(input) = self.input.as_mut() else {
                return;
            };
            // A write error means QEMU is gone: `watch` sees it exit.
            let _ = input
                .write_all(format!("{}\n", step.line).as_bytes())
                .and_then(|()| input.flush());
            self.cursor = end;
            self.typed.push(now);
        }
    }
}

/// The firmware's debug port log beside the serial log (`NAME.debugcon`).
fn debug_log(serial: &Path) -> PathBuf {
    serial.with_extension("debugcon")
}

/// Bytes in a file (0 when it is missing).
fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn read_console(serial: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned()
}

fn read_console_bytes(serial: &Path) -> Vec<u8> {
    std::fs::read(serial).unwrap_or_default()
}

/// The console line holding `needle`.
fn line_with(console: &str, needle: &str) -> String {
    super::console::line_with(console, needle).unwrap_or_else(|| needle.to_string())
}

/// The first console line holding a `fail_on` text, cleaned; a line that also holds one of
/// `script`'s prompts is a question the script answers, not a failure (the rescue agent's
/// `OSIMAGE-RESTORE-WAITING passphrase` when the key is typed).
fn failure_line(console: &str, fail_on: &[&str], script: &[Typed]) -> Option<String> {
    if !fail_on.iter().any(|f| console.contains(f)) {
        return None;
    }
    console
        .lines()
        .find(|l| {
            fail_on.iter().any(|f| l.contains(f))
                && !script
                    .iter()
                    .any(|t| !t.after.is_empty() && l.contains(t.after))
        })
        .map(|l| super::console::clean(l).trim().to_string())
}

/// Polls the VM, its console and QEMU's stderr until it ends.
fn watch(
    child: &mut Child,
    spec: &VmSpec,
    serial: &Path,
    stderr: &Path,
    keyboard: &mut Keyboard,
) -> (Ended, Duration, Vec<Option<Duration>>) {
    let start = Instant::now();
    let mut milestones = vec![None; spec.milestones.len()];
    let mut verdict: Option<(Ended, Instant)> = None;
    // console bytes (serial + debug port) and when they last grew
    let mut seen = 0u64;
    let mut last_output = Instant::now();
    loop {
        let status = child.try_wait();
        let bytes = read_console_bytes(serial);
        keyboard.answer(&bytes, start.elapsed());
        let console = String::from_utf8_lossy(&bytes).into_owned();
        let now_seen = bytes.len() as u64 + file_len(&debug_log(serial));
        if now_seen != seen {
            seen = now_seen;
            last_output = Instant::now();
        }
        for (i, m) in spec.milestones.iter().enumerate() {
            if milestones[i].is_none() && console.contains(m) {
                milestones[i] = Some(start.elapsed());
            }
        }
        if verdict.is_none() {
            if let Some(line) = failure_line(&console, spec.fail_on, keyboard.script) {
                verdict = Some((Ended::Failed(line), Instant::now()));
            } else if let Some(s) = spec.stop_on.iter().find(|s| console.contains(*s)) {
                verdict = Some((Ended::Stopped(line_with(&console, s)), Instant::now()));
            } else if let Some(m) = qemu_error(&std::fs::read_to_string(stderr).unwrap_or_default())
            {
                // QEMU stops the guest but stays: the grace lets the rest of its dump arrive
                verdict = Some((Ended::VmError(m), Instant::now()));
            }
        }
        match status {
            Ok(Some(s)) => {
                let ended = match verdict {
                    Some((e @ (Ended::Failed(_) | Ended::VmError(_)), _)) => e,
                    _ => match qemu_error(&std::fs::read_to_string(stderr).unwrap_or_default()) {
                        Some(m) => Ended::VmError(m),
                        None => Ended::Exited(s),
                    },
                };
                return (ended, start.elapsed(), milestones);
            }
            Err(_) => return (Ended::TimedOut, start.elapsed(), milestones),
            Ok(None) => {}
        }
        if let Some((ended, at)) = &verdict {
            if at.elapsed() > spec.grace {
                let ended = match ended {
                    // the whole message, now that it is complete
                    Ended::VmError(_) => {
                        qemu_error(&std::fs::read_to_string(stderr).unwrap_or_default())
                            .map_or_else(|| ended.clone(), Ended::VmError)
                    }
                    _ => ended.clone(),
                };
                return (ended, start.elapsed(), milestones);
            }
        } else if let Some(end) = silent(spec, seen, last_output.elapsed(), &console) {
            return (end, start.elapsed(), milestones);
        }
        if start.elapsed() > spec.timeout {
            return (Ended::TimedOut, start.elapsed(), milestones);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether the console has been quiet too long: nothing at all within `first_output`, or
/// nothing new within `stall` (then the last line it showed).
fn silent(spec: &VmSpec, seen: u64, quiet: Duration, console: &str) -> Option<Ended> {
    if seen == 0 {
        return match spec.first_output {
            Some(limit) if quiet > limit => Some(Ended::NoOutput),
            _ => None,
        };
    }
    match spec.stall {
        Some(limit) if quiet > limit => {
            let last = super::console::tail(console, 1).pop();
            Some(Ended::Stalled(last.unwrap_or_else(|| {
                "the firmware's debug output (nothing on the serial console)".into()
            })))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
