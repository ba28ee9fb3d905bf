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
}

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
    pub verdict: String,
}

impl BootReport {
    /// Sets `passed` and the verdict line from the runs.
    pub fn decide(&mut self) {
        let failed: Vec<String> = self
            .runs
            .iter()
            .filter_map(|r| {
                r.failed().map(|p| {
                    format!(
                        "{} phase {} failed: {}",
                        r.firmware.name(),
                        p.phase.name(),
                        first_line(&p.detail)
                    )
                })
            })
            .collect();
        self.passed = failed.is_empty() && !self.runs.is_empty();
        let modes: Vec<&str> = self.runs.iter().map(|r| r.firmware.name()).collect();
        self.verdict = if self.passed {
            format!(
                "PASSED: {} restores and its restored system boots ({})",
                self.image,
                modes.join(", ")
            )
        } else {
            format!("FAILED: {}", failed.join("; "))
        };
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
                };
                t.push_str(&format!(
                    "  [{}] {:<12} {:<8} {:>7.1} s  {}\n",
                    r.firmware.name(),
                    p.phase.name(),
                    status,
                    p.seconds,
                    p.detail.replace('\n', "\n      ")
                ));
                if p.status == Status::Failed {
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
