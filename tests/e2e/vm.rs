//! QEMU under TCG (no KVM on these machines), one VM at a time (two cores): SeaBIOS or OVMF
//! (read-only code + a fresh copy of the variables each boot), no keyboard, the serial
//! console to a file that the caller watches. Command lines as in docs/ISO.md.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Secure Boot: the SMM build of OVMF, and variables with Microsoft's keys enrolled (PK, KEK,
/// db with the UEFI CA that signs the distributions' shims), Secure Boot on.
pub const OVMF_SB_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_SB_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// Two cores: never more than one VM at a time, though the tests run on threads.
static ONE_VM: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    SeaBios,
    Ovmf,
    /// OVMF with Secure Boot on and Microsoft's keys (q35 with SMM, as that build needs).
    OvmfSecureBoot,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::SeaBios => "seabios",
            Firmware::Ovmf => "ovmf",
            Firmware::OvmfSecureBoot => "ovmf-secureboot",
        }
    }

    fn code_and_vars(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::SeaBios => None,
            Firmware::Ovmf => Some((OVMF_CODE, OVMF_VARS)),
            Firmware::OvmfSecureBoot => Some((OVMF_SB_CODE, OVMF_SB_VARS)),
        }
    }

    /// What the source system's boot marker says about the firmware it booted from.
    pub fn marker_word(self) -> &'static str {
        match self {
            Firmware::SeaBios => "firmware=BIOS secureboot=none",
            Firmware::Ovmf => "firmware=UEFI secureboot=off",
            Firmware::OvmfSecureBoot => "firmware=UEFI secureboot=on",
        }
    }
}

/// One disk on the VM's virtio bus.
pub struct Drive<'a> {
    pub file: &'a Path,
    /// Writes go to a throw-away overlay (`snapshot=on`): booting a disk to look at it must not
    /// change it (journals, logs, random seed, grubenv).
    pub snapshot: bool,
}

/// One boot.
pub struct Boot<'a> {
    /// Names the console log (`tests/cache/e2e/logs/<name>.log`).
    pub name: String,
    pub firmware: Firmware,
    /// The ISO as a CD-ROM (then the VM boots from it).
    pub cdrom: Option<&'a Path>,
    pub disks: Vec<Drive<'a>>,
    /// Generous, for a busy two-core machine under TCG: never a timing assertion.
    pub timeout: Duration,
    /// When the console contains one of these, the VM is given `grace` to stop by itself and
    /// is then killed. Empty: wait for the VM to stop by itself.
    pub stop_on: &'a [&'a str],
    pub grace: Duration,
}

/// How a boot ended.
pub struct Outcome {
    pub console: String,
    /// `None`: the VM did not stop by itself (killed after a `stop_on` line or the timeout).
    pub exit: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub log: PathBuf,
    pub command: String,
    pub stderr: String,
}

impl Outcome {
    /// The last console lines, the QEMU command and its stderr: for failure messages.
    pub fn describe(&self) -> String {
        let how = match (&self.exit, self.timed_out) {
            (Some(s), _) => format!("QEMU exited by itself ({s})"),
            (None, true) => "QEMU killed at the timeout".to_string(),
            (None, false) => "QEMU killed after the awaited line".to_string(),
        };
        let failed: Vec<&str> = self
            .console
            .lines()
            .filter(|l| l.contains("OSIMAGE-RESTORE-FAILED"))
            .collect();
        format!(
            "{how} after {:.0} s\n{}console: {}\nqemu-system-x86_64 {}\nqemu stderr: {}\n--- last 60 console lines ---\n{}",
            self.elapsed.as_secs_f64(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("{}\n", failed.join("\n"))
            },
            self.log.display(),
            self.command,
            self.stderr.trim(),
            super::tail(&self.console, 60)
        )
    }
}

fn args(b: &Boot, serial: &Path, vars: &Path) -> Vec<String> {
    let machine = match b.firmware {
        // the Secure Boot build keeps its variables in SMM-protected flash
        Firmware::OvmfSecureBoot => "q35,smm=on",
        _ => "pc",
    };
    let mut a: Vec<String> = [
        "-machine",
        machine,
        "-m",
        "1536M",
        "-smp",
        "2",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .map(String::from)
    .to_vec();
    a.push("-serial".into());
    a.push(format!("file:{}", serial.display()));
    if b.firmware == Firmware::OvmfSecureBoot {
        a.push("-global".into());
        a.push("driver=cfi.pflash01,property=secure,value=on".into());
    }
    if let Some((code, _)) = b.firmware.code_and_vars() {
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
    for d in &b.disks {
        a.push("-drive".into());
        a.push(format!(
            "file={},if=virtio,format=raw,cache=unsafe{}",
            d.file.display(),
            if d.snapshot { ",snapshot=on" } else { "" }
        ));
    }
    if let Some(iso) = b.cdrom {
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

/// Boots, watches the serial console, and returns how it ended.
pub fn boot(b: &Boot) -> Outcome {
    let _vm = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let logs = super::logs_dir();
    let serial = logs.join(format!("{}.log", b.name));
    let vars = logs.join(format!("{}.vars.fd", b.name));
    let _ = std::fs::remove_file(&serial);
    if let Some((_, template)) = b.firmware.code_and_vars() {
        std::fs::copy(template, &vars).expect("a fresh copy of the OVMF variables");
    }
    let args = args(b, &serial, &vars);
    let command = args.join(" ");
    let stderr_path = logs.join(format!("{}.qemu-stderr", b.name));
    let stderr_file = std::fs::File::create(&stderr_path).expect("qemu stderr file");
    let mut vm = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .expect("starting qemu-system-x86_64");
    let start = Instant::now();
    let mut seen_at: Option<Instant> = None;
    let mut timed_out = false;
    let exit = loop {
        if let Some(s) = vm.try_wait().expect("waiting for qemu") {
            break Some(s);
        }
        if seen_at.is_none() && !b.stop_on.is_empty() {
            let console =
                String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
            if b.stop_on.iter().any(|m| console.contains(m)) {
                seen_at = Some(Instant::now());
            }
        }
        if seen_at.is_some_and(|t| t.elapsed() > b.grace) {
            break None;
        }
        if start.elapsed() > b.timeout {
            timed_out = true;
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if exit.is_none() {
        let _ = vm.kill();
        let _ = vm.wait();
    }
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&vars);
    Outcome {
        console: String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned(),
        exit,
        timed_out,
        elapsed,
        log: serial,
        command,
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}
