//! The report of `verify --boot`: each phase with its duration and what was checked, one
//! verdict line; as text for people and as JSON (`--json`) for fleets and schedules.

use serde::Serialize;

use super::accel::Accel;
use super::files::FilesReport;
use super::vm::Firmware;

/// A phase of one firmware's run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseName {
    /// The ISO boots and the rescue agent finds its medium and the scratch disk.
    RescueBoot,
    /// The unattended restore onto the scratch disk, until the VM powers off.
    Restore,
    /// The restored disk boots alone until its default target is active.
    FirstBoot,
    /// The scratch disk's files against the image's manifest.
    Files,
}

impl PhaseName {
    pub fn name(self) -> &'static str {
        match self {
            PhaseName::RescueBoot => "rescue-boot",
            PhaseName::Restore => "restore",
            PhaseName::FirstBoot => "first-boot",
            PhaseName::Files => "files",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// Not run because an earlier phase failed.
    Skipped,
    /// QEMU could not run the VM (issue #21): says nothing about the image.
    #[serde(rename = "vm-failed")]
    VmFailed,
}

/// Exit status of `verify --boot`: every phase passed.
pub const EXIT_PASSED: i32 = 0;
/// A phase failed because of the image (or the check could not start: missing tool, not an
/// ISO; the process's usual failure status).
pub const EXIT_IMAGE_FAILED: i32 = 1;
/// No phase blamed the image, but QEMU could not run the VM on this host (KVM's internal
/// error, no firmware output, QEMU exiting unasked): the image was not judged.
pub const EXIT_VM_FAILED: i32 = 3;

/// One phase's result.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub phase: PhaseName,
    pub status: Status,
    pub seconds: f64,
    /// What was checked, or why it failed.
    pub detail: String,
    /// The serial console log of the VM this phase ran in.
    pub console_log: Option<String>,
    /// On failure: the last console lines.
    pub console_tail: Vec<String>,
}

impl Phase {
    pub fn skipped(phase: PhaseName) -> Phase {
        Phase {
            phase,
            status: Status::Skipped,
            seconds: 0.0,
            detail: "an earlier phase failed".into(),
            console_log: None,
            console_tail: Vec::new(),
        }
    }
}

/// One firmware's restore-and-boot cycle.
#[derive(Clone, Debug, Serialize)]
pub struct FirmwareRun {
    pub firmware: Firmware,
    pub phases: Vec<Phase>,
    /// The file comparison, when it ran.
    pub files: Option<FilesReport>,
}

impl FirmwareRun {
    /// The first failed phase.
    pub fn failed(&self) -> Option<&Phase> {
        self.phases.iter().find(|p| p.status == Status::Failed)
    }

    /// The phase QEMU could not run.
    pub fn vm_failed(&self) -> Option<&Phase> {
        self.phases.iter().find(|p| p.status == Status::VmFailed)
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct BootReport {
    pub image: String,
    pub accel: Accel,
    /// Which accelerator and why (KVM tried, or asked for).
    pub accel_note: String,
    pub memory_mib: u32,
    /// Why these firmware modes (asked for, or the source's recorded boot mode).
    pub firmware_note: String,
    pub runs: Vec<FirmwareRun>,
    /// The temporary directory, when kept (`--keep`, or the logs of a failure).
    pub kept: Option<String>,
    /// The scratch disk of each firmware, when kept.
    pub disks: Vec<String>,
    pub passed: bool,
    /// No phase blamed the image but QEMU could not run a VM: the image was not judged.
    pub vm_failed: bool,
    pub verdict: String,
}

impl BootReport {
    /// Sets `passed` and the verdict line from the runs.
    pub fn decide(&mut self) {
        // "<mode> phase <phase><said>: <first line of the detail>", one per run that has one.
        let lines = |pick: fn(&FirmwareRun) -> Option<&Phase>, said: &str| -> Vec<String> {
            self.runs
                .iter()
                .filter_map(|r| {
                    pick(r).map(|p| {
                        format!(
                            "{} phase {}{said}: {}",
                            r.firmware.name(),
                            p.phase.name(),
                            first_line(&p.detail)
                        )
                    })
                })
                .collect()
        };
        let failed = lines(FirmwareRun::failed, " failed");
        let vm = lines(FirmwareRun::vm_failed, "");
        self.passed = failed.is_empty() && vm.is_empty() && !self.runs.is_empty();
        self.vm_failed = failed.is_empty() && !vm.is_empty();
        let modes: Vec<&str> = self.runs.iter().map(|r| r.firmware.name()).collect();
        self.verdict = if self.vm_failed {
            format!(
                "COULD NOT RUN THE VM (the image was not judged): {}",
                vm.join("; ")
            )
        } else if self.passed {
            format!(
                "PASSED: {} restores and its restored system boots ({})",
                self.image,
                modes.join(", ")
            )
        } else {
            format!("FAILED: {}", failed.join("; "))
        };
    }

    /// The process exit status: `EXIT_PASSED`, `EXIT_IMAGE_FAILED` when any phase blamed the
    /// image (even if another mode's VM could not run), else `EXIT_VM_FAILED`.
    pub fn exit_code(&self) -> i32 {
        if self.passed {
            EXIT_PASSED
        } else if self.vm_failed {
            EXIT_VM_FAILED
        } else {
            EXIT_IMAGE_FAILED
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut t = format!(
            "verify --boot {}\n  accelerator: {}\n  firmware: {}\n  memory: {} MiB\n",
            self.image, self.accel_note, self.firmware_note, self.memory_mib
        );
        for r in &self.runs {
            for p in &r.phases {
                let status = match p.status {
                    Status::Passed => "passed",
                    Status::Failed => "FAILED",
                    Status::Skipped => "skipped",
                    Status::VmFailed => "VM-FAILED",
                };
                t.push_str(&format!(
                    "  [{}] {:<12} {:<8} {:>7.1} s  {}\n",
                    r.firmware.name(),
                    p.phase.name(),
                    status,
                    p.seconds,
                    p.detail.replace('\n', "\n      ")
                ));
                if matches!(p.status, Status::Failed | Status::VmFailed) {
                    if let Some(log) = &p.console_log {
                        t.push_str(&format!("      console log: {log}\n"));
                    }
                    if !p.console_tail.is_empty() {
                        t.push_str("      last console lines:\n");
                        for l in &p.console_tail {
                            t.push_str(&format!("      | {l}\n"));
                        }
                    }
                }
            }
            if let Some(f) = &r.files {
                for d in &f.listed {
                    t.push_str(&format!(
                        "      differs: {} ({})\n",
                        d.path,
                        d.what.join(", ")
                    ));
                }
                if f.differences > f.listed.len() as u64 {
                    t.push_str(&format!(
                        "      ... and {} more\n",
                        f.differences - f.listed.len() as u64
                    ));
                }
            }
        }
        if let Some(k) = &self.kept {
            t.push_str(&format!("  kept: {k}\n"));
        }
        t.push_str(&format!("verdict: {}\n", self.verdict));
        t
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(fw: Firmware, status: Status, detail: &str) -> FirmwareRun {
        let mut p = Phase::skipped(PhaseName::RescueBoot);
        p.status = status;
        p.detail = detail.into();
        FirmwareRun {
            firmware: fw,
            phases: vec![p, Phase::skipped(PhaseName::Restore)],
            files: None,
        }
    }

    fn report(runs: Vec<FirmwareRun>) -> BootReport {
        let mut r = BootReport {
            image: "s.iso".into(),
            accel: Accel::Kvm,
            accel_note: String::new(),
            memory_mib: 1536,
            firmware_note: String::new(),
            runs,
            kept: None,
            disks: Vec::new(),
            passed: false,
            vm_failed: false,
            verdict: String::new(),
        };
        r.decide();
        r
    }

    /// Issue #21: QEMU's failure is never the image's, and has its own exit status; an image
    /// failure elsewhere in the run still wins.
    #[test]
    fn a_vm_failure_is_not_blamed_on_the_image() {
        let kvm = "could not run the VM: KVM internal error. Suberror: 1 … emulation failure";
        let r = report(vec![run(Firmware::Uefi, Status::VmFailed, kvm)]);
        assert_eq!(r.exit_code(), EXIT_VM_FAILED);
        assert!(!r.passed);
        assert!(
            r.verdict.starts_with("COULD NOT RUN THE VM")
                && r.verdict.contains("KVM internal error")
                && !r.verdict.contains("FAILED:"),
            "{}",
            r.verdict
        );
        assert!(r.text().contains("VM-FAILED"), "{}", r.text());
        let r = report(vec![
            run(
                Firmware::Bios,
                Status::Failed,
                "the rescue environment did not come up",
            ),
            run(Firmware::Uefi, Status::VmFailed, kvm),
        ]);
        assert_eq!(r.exit_code(), EXIT_IMAGE_FAILED);
        assert!(r.verdict.starts_with("FAILED: bios"), "{}", r.verdict);
        let r = report(vec![run(Firmware::Bios, Status::Passed, "ready")]);
        assert_eq!(r.exit_code(), EXIT_PASSED);
    }
}
