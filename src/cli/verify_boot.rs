//! `osimage verify --boot IMAGE`: options in, `bootcheck::verify_boot`, the report out.

use std::time::Duration;

use super::Failure;
use super::args::VerifyArgs;
use super::progress::TermProgress;
use osimage::{BootCheckOptions, verify_boot};

/// `verify --boot --json`: `"boot": true` and the report's fields (docs/JSON.md).
#[derive(serde::Serialize)]
struct BootJson<'a> {
    boot: bool,
    #[serde(flatten)]
    report: &'a osimage::BootReport,
}

pub(super) fn run(a: VerifyArgs, p: &TermProgress) -> Result<i32, Failure> {
    let opts = BootCheckOptions {
        firmware: a.firmware.map(Into::into),
        memory_mib: a.memory,
        keep: a.keep,
        disk_bytes: a.disk_size.map(|m| m << 20),
        timeout: Duration::from_secs(a.timeout),
        stall: Duration::from_secs(a.stall),
        accel: a.accel.into(),
        work_dir: a.work_dir,
    };
    let report = verify_boot(&a.image, &opts, &|line| p.say(line))?;
    if a.json {
        super::json::print(
            "verify",
            &BootJson {
                boot: true,
                report: &report,
            },
        )?;
    } else {
        print!("{}", report.text());
    }
    Ok(report.exit_code())
}
