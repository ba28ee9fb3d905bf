//! One firmware's cycle: the ISO restores onto a blank scratch disk (phases rescue-boot and
//! restore, one VM), the restored disk boots with the witness added (first-boot, a second VM
//! on a throw-away overlay), the witness is taken away again, and the files are compared.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::console::{self, BOOT_FAILURES, BOOTED, NOT_BOOTED};
use super::files::{self, FilesReport};
use super::firstboot::{self, Witness};
use super::network::Served;
use super::report::{FirmwareRun, Phase, PhaseName, Status};
use super::scratch;
use super::vm::{self, Bus, Drive, Ended, FIRST_OUTPUT, Firmware, Outcome, UserNet, VmSpec};
use super::{Accel, BootCheckError, BootCheckOptions};
use crate::format::manifest::Manifest;
use crate::layout::DiskLayout;

/// Lines of console kept in a failed phase's report.
const TAIL: usize = 25;
/// After a final line, time for the rest of the message to reach the log.
const GRACE: Duration = Duration::from_secs(3);

/// Where the scratch VM's rescue environment comes from.
pub(super) enum Medium<'a> {
    /// The ISO, as a CD-ROM.
    Cdrom(&'a Path),
    /// Netboot files served over QEMU's user network, the store relayed (`network`).
    Network {
        write_files: &'a dyn Fn(&Path) -> Result<(), String>,
        relay_to: &'a (String, u16),
    },
}

/// A medium ready to boot from: a network's files are written.
pub(super) enum Prepared<'a> {
    Cdrom(&'a Path),
    Network(Served),
}

impl<'a> Medium<'a> {
    /// Writes what the medium needs into `work`.
    pub fn prepared(&self, work: &Path) -> Result<Prepared<'a>, BootCheckError> {
        Ok(match self {
            Medium::Cdrom(p) => Prepared::Cdrom(p),
            Medium::Network {
                write_files,
                relay_to,
            } => Prepared::Network(Served::prepare(work, *write_files, relay_to)?),
        })
    }
}

pub(super) struct Context<'a> {
    /// How the report names the image.
    pub shown: &'a str,
    pub medium: &'a Prepared<'a>,
    pub manifest: &'a Manifest,
    pub layout: &'a DiskLayout,
    /// Typed at the rescue agent's prompt (an encrypted image or store version).
    pub key: Option<&'a super::key::ConsoleKey>,
    pub work: &'a Path,
    pub disk_bytes: u64,
    pub accel: Accel,
    pub opts: &'a BootCheckOptions,
    pub say: &'a dyn Fn(&str),
}

fn phase(name: PhaseName, ok: bool, took: Duration, detail: String, o: Option<&Outcome>) -> Phase {
    Phase {
        phase: name,
        status: if ok { Status::Passed } else { Status::Failed },
        seconds: took.as_secs_f64(),
        detail,
        console_log: o.map(|o| o.log.display().to_string()),
        console_tail: match (ok, o) {
            (false, Some(o)) => o.tail(TAIL),
            _ => Vec::new(),
        },
    }
}

/// A phase QEMU could not run (issue #21): the VM's failure, not the image's.
fn vm_phase(name: PhaseName, took: Duration, why: &str, o: &Outcome) -> Phase {
    Phase {
        status: Status::VmFailed,
        ..phase(
            name,
            false,
            took,
            format!("could not run the VM (not the image's fault): {why}"),
            Some(o),
        )
    }
}

/// Why a VM that did not reach its goal stopped.
fn why(o: &Outcome, waited_for: &str) -> String {
    match &o.ended {
        Ended::Failed(line) => line.clone(),
        Ended::Stalled(line) => format!(
            "stalled after `{}` (no console output for the stall limit; waited for `{waited_for}`)",
            line.trim()
        ),
        Ended::NoOutput => "the firmware wrote nothing".into(),
        Ended::VmError(m) => format!("QEMU could not run the VM: {m}"),
        Ended::TimedOut => format!(
            "no `{waited_for}` within {:.0} s (timed out)",
            o.elapsed.as_secs_f64()
        ),
        Ended::Exited(s) if !s.success() => {
            format!(
                "QEMU exited with {s} before `{waited_for}`: {}",
                o.stderr.trim()
            )
        }
        _ => format!("the VM stopped before `{waited_for}`"),
    }
}

impl Context<'_> {
    fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }

    /// Why QEMU could not run this boot, if so. Under KVM a stalled console counts too: on a
    /// nested host KVM may hang a guest that runs under TCG (issue #21), and `--accel auto`
    /// then retries under TCG, where a stall is the image's.
    fn vm_level(&self, o: &Outcome) -> Option<String> {
        if let Some(m) = o.vm_failure() {
            return Some(m);
        }
        match (&o.ended, self.accel) {
            (Ended::Stalled(line), Accel::Kvm) => Some(format!(
                "the console stalled under KVM after `{}` (try --accel tcg)",
                line.trim()
            )),
            _ => None,
        }
    }

    fn spec<'s>(&'s self, name: String, fw: Firmware, logs: &'s Path) -> VmSpec<'s> {
        VmSpec {
            name,
            log_dir: logs,
            firmware: fw,
            accel: self.accel,
            memory_mib: self.opts.memory_mib,
            cdrom: None,
            kernel: None,
            disks: Vec::new(),
            timeout: self.opts.timeout,
            stop_on: &[],
            fail_on: &[],
            milestones: &[],
            grace: GRACE,
            stall: Some(self.opts.stall),
            first_output: Some(FIRST_OUTPUT.min(self.opts.stall)),
            network: None,
        }
    }

    /// Runs every phase with `fw`; returns the run and the scratch disk's path.
    pub fn run(&self, fw: Firmware) -> Result<(FirmwareRun, PathBuf), BootCheckError> {
        let disk = self.work.join(format!("disk-{}.img", fw.name()));
        scratch::sparse_disk(&disk, self.disk_bytes)?;
        let mut run = FirmwareRun {
            firmware: fw,
            phases: Vec::new(),
            files: None,
        };
        (self.say)(&format!(
            "[{}] booting {} with a blank {} MiB scratch disk: rescue environment, restore",
            fw.name(),
            self.shown,
            self.disk_bytes >> 20
        ));
        let restored = self.restore(fw, &disk, &mut run)?;
        if !restored {
            run.phases.push(Phase::skipped(PhaseName::FirstBoot));
            run.phases.push(Phase::skipped(PhaseName::Files));
            return Ok((run, disk));
        }
        (self.say)(&format!("[{}] booting the restored disk", fw.name()));
        run.phases.push(self.first_boot(fw, &disk)?);
        (self.say)(&format!(
            "[{}] comparing the restored files with the manifest",
            fw.name()
        ));
        let started = Instant::now();
        let (p, report) = match self.compare(&disk) {
            Ok(r) => (files_phase(&r, started.elapsed()), Some(r)),
            Err(e) => (
                phase(
                    PhaseName::Files,
                    false,
                    started.elapsed(),
                    e.to_string(),
                    None,
                ),
                None,
            ),
        };
        run.phases.push(p);
        run.files = report;
        Ok((run, disk))
    }

    /// The ISO boots with only the scratch disk; returns whether the restore finished.
    fn restore(
        &self,
        fw: Firmware,
        disk: &Path,
        run: &mut FirmwareRun,
    ) -> Result<bool, BootCheckError> {
        let logs = self.logs();
        // A wrong key fails at once; the agent's question for the key is answered, not a
        // failure (`vm::run_typing`).
        let fail_on = [
            console::RESTORE_FAILED,
            console::RESTORE_WAITING,
            console::KERNEL_PANIC,
            super::key::KEY_WRONG,
        ];
        let script: Vec<vm::Typed> = self
            .key
            .iter()
            .map(|k| vm::Typed {
                after: super::key::KEY_WAITING,
                line: k.line(),
            })
            .collect();
        let milestones = [console::RESCUE_READY, console::RESTORE_DONE];
        let mut spec = self.spec(format!("restore-{}", fw.name()), fw, &logs);
        let bootfile = Served::bootfile();
        let forwards: Vec<(&str, &str)>;
        match self.medium {
            Prepared::Cdrom(iso) => spec.cdrom = Some(iso),
            Prepared::Network(served) => {
                forwards = served
                    .forwards
                    .iter()
                    .map(|(at, cmd)| (at.as_str(), cmd.as_str()))
                    .collect();
                spec.network = Some(UserNet {
                    bootfile: &bootfile,
                    forwards: &forwards,
                });
            }
        }
        spec.disks = vec![Drive {
            file: disk,
            bus: Bus::Virtio,
            snapshot: false,
        }];
        spec.fail_on = &fail_on;
        spec.milestones = &milestones;
        let o = vm::run_typing(&spec, &script)?;
        let vm_failure = self.vm_level(&o);
        let Some(ready) = o.milestones[0] else {
            if let Some(m) = vm_failure {
                run.phases
                    .push(vm_phase(PhaseName::RescueBoot, o.elapsed, &m, &o));
                run.phases.push(Phase::skipped(PhaseName::Restore));
                return Ok(false);
            }
            run.phases.push(phase(
                PhaseName::RescueBoot,
                false,
                o.elapsed,
                format!(
                    "the rescue environment did not come up: {}",
                    why(&o, console::RESCUE_READY)
                ),
                Some(&o),
            ));
            run.phases.push(Phase::skipped(PhaseName::Restore));
            return Ok(false);
        };
        let ready_line = console::line_with(&o.console, console::RESCUE_READY).unwrap_or_default();
        run.phases
            .push(phase(PhaseName::RescueBoot, true, ready, ready_line, None));
        let done = o.console.contains(console::RESTORE_DONE)
            && !o.console.contains(console::RESTORE_FAILED);
        let ok = done && matches!(o.ended, Ended::Exited(s) if s.success());
        let detail = if ok {
            format!(
                "{}; the VM powered off by itself",
                console::line_with(&o.console, console::RESTORE_DONE).unwrap_or_default()
            )
        } else if done {
            format!(
                "`{}` printed but the VM did not power off: {}",
                console::RESTORE_DONE,
                why(&o, "power-off")
            )
        } else {
            why(&o, console::RESTORE_DONE)
        };
        let took = o.elapsed.saturating_sub(ready);
        run.phases.push(match vm_failure {
            Some(m) if !ok => vm_phase(PhaseName::Restore, took, &m, &o),
            _ => phase(PhaseName::Restore, ok, took, detail, Some(&o)),
        });
        Ok(ok)
    }

    /// Adds the witness, boots the restored disk on an overlay, takes the witness away.
    fn first_boot(&self, fw: Firmware, disk: &Path) -> Result<Phase, BootCheckError> {
        let started = Instant::now();
        let staging = self.work.join(format!("root-{}", fw.name()));
        let witness = {
            let a = scratch::assemble(disk, self.layout, &staging, true)?;
            if !firstboot::has_systemd(&a.root) {
                a.close()?;
                return Ok(phase(
                    PhaseName::FirstBoot,
                    false,
                    started.elapsed(),
                    "the restored system has no systemd: the first-boot witness is a systemd unit"
                        .into(),
                    None,
                ));
            }
            let w = Witness::add(&a.root)?;
            a.close()?;
            w
        };
        let up = format!("{BOOTED} {}", witness.nonce);
        let down = format!("{NOT_BOOTED} {}", witness.nonce);
        let mut fail_on: Vec<&str> = vec![&down];
        fail_on.extend_from_slice(BOOT_FAILURES);
        let stop_on = [up.as_str()];
        let logs = self.logs();
        let mut spec = self.spec(format!("first-boot-{}", fw.name()), fw, &logs);
        spec.disks = vec![Drive {
            file: disk,
            bus: Bus::Virtio,
            snapshot: true,
        }];
        spec.stop_on = &stop_on;
        spec.fail_on = &fail_on;
        // The restored system's console may not be the serial port at all (its own settings
        // are not trusted): after the firmware, silence until the witness is normal here.
        spec.stall = None;
        let o = vm::run(&spec);
        // the witness goes whatever the boot did
        let a = scratch::assemble(disk, self.layout, &staging, true)?;
        let removed = witness.remove();
        a.close()?;
        removed?;
        let o = o?;
        let line = console::line_with(&o.console, &up);
        let ok = line.is_some() && !matches!(o.ended, Ended::Failed(_));
        if !ok && let Some(m) = self.vm_level(&o) {
            return Ok(vm_phase(PhaseName::FirstBoot, o.elapsed, &m, &o));
        }
        let detail = match line {
            Some(l) if ok => l,
            _ => format!("the restored system did not come up: {}", why(&o, &up)),
        };
        Ok(phase(PhaseName::FirstBoot, ok, o.elapsed, detail, Some(&o)))
    }

    fn compare(&self, disk: &Path) -> Result<FilesReport, BootCheckError> {
        let staging = self.work.join("compare");
        let a = scratch::assemble(disk, self.layout, &staging, false)?;
        let r = files::compare(self.manifest, &a.root, &|e| a.fidelity(e.path));
        a.close()?;
        Ok(r)
    }
}

fn files_phase(r: &FilesReport, took: Duration) -> Phase {
    let mut detail = format!(
        "{} compared with the manifest ({} MiB of file data hashed): {}",
        crate::units::count(r.compared, "path", "paths"),
        r.bytes >> 20,
        crate::units::count(r.differences, "difference", "differences")
    );
    if r.relaxed > 0 {
        detail.push_str(&format!(
            " ({} on FAT: type, content and files' mtimes)",
            r.relaxed
        ));
    }
    phase(PhaseName::Files, r.differences == 0, took, detail, None)
}
