//! `osimage verify --boot` run by the e2e tests (docs/VERIFY-BOOT.md): its JSON report, its
//! phases (each timed with `phase_time`) and the scratch disk it kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::phase_time;
use super::source::{self, Source};
use super::vm::{self, Firmware};
use crate::common;

/// ISO boot to power-off: restore included, under TCG. Generous; never a timing assertion.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// One `osimage verify --boot` run (TCG, `--keep`, `--json`, `--timeout` RESTORE_TIMEOUT, its
/// temporary directory under `work`; `extra` arguments after those).
pub struct VerifyBoot {
    pub code: Option<i32>,
    pub report: serde_json::Value,
    pub stderr: String,
}

impl VerifyBoot {
    pub fn run(iso: &Path, fw: Firmware, work: &Path, extra: &[&str]) -> VerifyBoot {
        // its VMs run in the child: this process's runner does not see them
        let _vm = common::vm_lock();
        Self::run_held(iso.as_os_str(), fw, work, extra, &[])
    }

    /// Like `run`, for a caller that holds a VM slot for it (`vm::with_two_slots`), with
    /// `env` in the child's environment (a store's credentials and endpoint).
    pub fn run_held(
        image: &std::ffi::OsStr,
        fw: Firmware,
        work: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> VerifyBoot {
        let out = Command::new(env!("CARGO_BIN_EXE_osimage"))
            .args(["verify", "--boot"])
            .arg(image)
            .envs(env.iter().copied())
            .args([
                "--firmware",
                fw.name(),
                "--accel",
                "tcg",
                "--keep",
                "--json",
            ])
            .args(["--timeout", &RESTORE_TIMEOUT.as_secs().to_string()])
            .arg("--work-dir")
            .arg(work)
            .args(extra)
            .output()
            .expect("running osimage verify --boot");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("verify --boot printed no JSON report ({e}): {stdout}\nstderr: {stderr}")
        });
        let v = VerifyBoot {
            code: out.status.code(),
            report,
            stderr,
        };
        for p in v.phases() {
            if p["status"] != "skipped" {
                phase_time(
                    &format!(
                        "verify --boot {}: {}",
                        fw.name(),
                        p["phase"].as_str().unwrap_or("?")
                    ),
                    Duration::from_secs_f64(p["seconds"].as_f64().unwrap_or(0.0)),
                );
            }
        }
        v
    }

    pub fn phases(&self) -> Vec<serde_json::Value> {
        self.report["runs"][0]["phases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> serde_json::Value {
        self.phases()
            .into_iter()
            .find(|p| p["phase"] == name)
            .unwrap_or_else(|| panic!("no phase {name} in the report: {}", self.pretty()))
    }

    pub fn pretty(&self) -> String {
        format!(
            "exit {:?}\n{:#}\nstderr: {}",
            self.code, self.report, self.stderr
        )
    }

    /// Panics unless the run passed, under TCG. When the restored disk's first boot failed,
    /// the message says whether the source `s` itself boots with `fw` (cached when it did):
    /// whose fault it is.
    pub fn assert_passed(&self, s: &Source, fw: Firmware) {
        if self.code != Some(0) {
            let blame = if self.phase("first-boot")["status"] == "failed" {
                match source::boots_with(s, fw) {
                    Ok(l) => format!("the source does boot: {l}"),
                    Err(e) => format!("NOR DOES THE SOURCE: {e}"),
                }
            } else {
                String::new()
            };
            panic!(
                "{}: verify --boot failed: {}\n{blame}\n{}",
                fw.name(),
                self.report["verdict"],
                self.pretty()
            );
        }
        assert_eq!(self.report["passed"], true, "{}", self.pretty());
        assert_eq!(self.report["accel"], "tcg", "{}", self.pretty());
    }

    /// The first boot's witness line (the marker), which must name the firmware `fw` booted
    /// from and each of `mounts` (`/=/dev/vda3`: mounted from the restored partitions, as
    /// fstab names them by UUID).
    pub fn first_boot(&self, fw: Firmware, mounts: &[&str]) -> String {
        let line = self.phase("first-boot")["detail"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for want in std::iter::once(vm::marker_word(fw)).chain(mounts.iter().copied()) {
            assert!(
                line.contains(want),
                "first boot: `{want}` not in `{line}`\n{}",
                self.pretty()
            );
        }
        line
    }

    /// Every file of the restored disk equal to the manifest's, and more than `min` of them
    /// compared.
    pub fn assert_files_equal(&self, min: u64) {
        let files = &self.report["runs"][0]["files"];
        assert_eq!(files["differences"], 0, "{}", self.pretty());
        assert!(
            files["compared"].as_u64().unwrap_or(0) > min,
            "too few paths compared: {}",
            self.pretty()
        );
    }

    /// The console log of phase `name` (kept with `--keep`).
    pub fn console(&self, name: &str) -> String {
        let log = self.phase(name)["console_log"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no console log of {name}: {}", self.pretty()));
        std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
    }

    /// The kept scratch disk.
    pub fn disk(&self) -> PathBuf {
        PathBuf::from(
            self.report["disks"][0]
                .as_str()
                .unwrap_or_else(|| panic!("no kept disk in the report: {}", self.pretty())),
        )
    }
}
