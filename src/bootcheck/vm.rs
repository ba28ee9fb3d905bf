//! One QEMU virtual machine, watched through its serial console: SeaBIOS or OVMF (read-only
//! code + a fresh copy of the variables per boot), KVM or TCG, no keyboard, no network, the
//! serial port written to a log file that is read while the VM runs. Used by `verify --boot`
//! and by the end-to-end tests (one implementation for both). Command lines as in docs/ISO.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
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

/// A busy host runs one VM at a time, even when callers run on several threads.
static ONE_VM: Mutex<()> = Mutex::new(());

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
}

/// What a boot left behind.
pub struct Outcome {
    pub console: String,
    pub ended: Ended,
    pub elapsed: Duration,
    /// When each milestone first appeared (since QEMU started), in `milestones` order.
    pub milestones: Vec<Option<Duration>>,
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

    /// How it ended, the log's path, the QEMU command, its stderr and the last console lines:
    /// for failure messages.
    pub fn describe(&self) -> String {
        let how = match &self.ended {
            Ended::Exited(s) => format!("QEMU exited by itself ({s})"),
            Ended::Stopped(l) => format!("QEMU stopped after `{}`", l.trim()),
            Ended::Failed(l) => format!("QEMU stopped after a failure: `{}`", l.trim()),
            Ended::TimedOut => "QEMU killed at the timeout".to_string(),
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

/// QEMU's arguments for `spec`.
fn args(spec: &VmSpec, serial: &Path, vars: &Path) -> Vec<String> {
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
        "-nic".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
    ];
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
    for d in &spec.disks {
        a.push("-drive".into());
        let bus = match d.bus {
            Bus::Virtio => "virtio",
            Bus::Ide => "ide,media=disk",
        };
        a.push(format!(
            "file={},if={bus},format=raw,cache=unsafe{}",
            d.file.display(),
            if d.snapshot { ",snapshot=on" } else { "" }
        ));
    }
    if let Some(k) = &spec.kernel {
        a.push("-kernel".into());
        a.push(k.kernel.display().to_string());
        a.push("-initrd".into());
        a.push(k.initrd.display().to_string());
        a.push("-append".into());
        a.push(k.cmdline.to_string());
    }
    if let Some(iso) = spec.cdrom {
        a.push("-drive".into());
        a.push(format!(
            "file={},format=raw,media=cdrom,readonly=on",
            iso.display()
        ));
        a.extend(["-boot".into(), "d".into()]);
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
/// QEMU cannot be started or its files cannot be made.
pub fn run(spec: &VmSpec) -> Result<Outcome, BootCheckError> {
    check_host(spec.firmware)?;
    let _vm = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
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
    if let Some([_, template]) = spec.firmware.ovmf() {
        std::fs::copy(template, &vars).map_err(io("copying OVMF variables to", &vars))?;
    }
    let args = args(spec, &serial, &vars);
    let stderr_file = std::fs::File::create(&stderr_path).map_err(io("creating", &stderr_path))?;
    let mut child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .map_err(io("starting", Path::new(QEMU)))?;
    let watched = watch(&mut child, spec, &serial);
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
        log: serial,
        command: args.join(" "),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    })
}

fn read_console(serial: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned()
}

/// The console line holding `needle`.
fn line_with(console: &str, needle: &str) -> String {
    super::console::line_with(console, needle).unwrap_or_else(|| needle.to_string())
}

/// Polls the VM and its console until it ends.
fn watch(
    child: &mut Child,
    spec: &VmSpec,
    serial: &Path,
) -> (Ended, Duration, Vec<Option<Duration>>) {
    let start = Instant::now();
    let mut milestones = vec![None; spec.milestones.len()];
    let mut verdict: Option<(Ended, Instant)> = None;
    loop {
        let status = child.try_wait();
        let console = read_console(serial);
        for (i, m) in spec.milestones.iter().enumerate() {
            if milestones[i].is_none() && console.contains(m) {
                milestones[i] = Some(start.elapsed());
            }
        }
        if verdict.is_none() {
            if let Some(f) = spec.fail_on.iter().find(|f| console.contains(*f)) {
                verdict = Some((Ended::Failed(line_with(&console, f)), Instant::now()));
            } else if let Some(s) = spec.stop_on.iter().find(|s| console.contains(*s)) {
                verdict = Some((Ended::Stopped(line_with(&console, s)), Instant::now()));
            }
        }
        match status {
            Ok(Some(s)) => {
                let ended = match verdict {
                    Some((Ended::Failed(l), _)) => Ended::Failed(l),
                    _ => Ended::Exited(s),
                };
                return (ended, start.elapsed(), milestones);
            }
            Err(_) => return (Ended::TimedOut, start.elapsed(), milestones),
            Ok(None) => {}
        }
        if let Some((ended, at)) = &verdict
            && at.elapsed() > spec.grace
        {
            return (ended.clone(), start.elapsed(), milestones);
        }
        if start.elapsed() > spec.timeout {
            return (Ended::TimedOut, start.elapsed(), milestones);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qemu_or_ovmf_names_the_debian_package() {
        let e = check_tools(Firmware::Bios, false, [OVMF_CODE, OVMF_VARS]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
        );
        let gone = "/nonexistent/OVMF_CODE_4M.fd";
        let e = check_tools(Firmware::Uefi, true, [gone, OVMF_VARS]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{gone} not found: install the Debian package ovmf")
        );
        // BIOS needs no OVMF
        check_tools(Firmware::Bios, true, [gone, gone]).unwrap();
    }

    #[test]
    fn command_line_follows_the_spec() {
        let logs = Path::new("/l");
        let disk = Path::new("/d.img");
        let iso = Path::new("/s.iso");
        let spec = VmSpec {
            name: "x".into(),
            log_dir: logs,
            firmware: Firmware::Uefi,
            accel: Accel::Tcg,
            memory_mib: 2048,
            cdrom: Some(iso),
            kernel: None,
            disks: vec![Drive {
                file: disk,
                bus: Bus::Virtio,
                snapshot: true,
            }],
            timeout: Duration::from_secs(1),
            stop_on: &[],
            fail_on: &[],
            milestones: &[],
            grace: Duration::from_secs(1),
        };
        let a = args(&spec, Path::new("/l/x.log"), Path::new("/l/x.vars.fd")).join(" ");
        assert!(a.starts_with("-machine pc,accel=tcg -m 2048M "), "{a}");
        assert!(a.contains("-serial file:/l/x.log"), "{a}");
        assert!(
            a.contains(&format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            )),
            "{a}"
        );
        assert!(
            a.contains("if=pflash,format=raw,unit=1,file=/l/x.vars.fd"),
            "{a}"
        );
        assert!(
            a.contains("file=/d.img,if=virtio,format=raw,cache=unsafe,snapshot=on"),
            "{a}"
        );
        assert!(
            a.ends_with("file=/s.iso,format=raw,media=cdrom,readonly=on -boot d"),
            "{a}"
        );
    }
}
