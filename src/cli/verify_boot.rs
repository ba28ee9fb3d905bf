//! `osimage verify --boot IMAGE`: options in, `bootcheck::verify_boot`, the report out.

use std::time::Duration;

use super::Failure;
use super::args::VerifyArgs;
use super::progress::TermProgress;
use super::read_lock::ReadLock;
use super::source;
use osimage::{BootCheckOptions, verify_boot_unlocked};

/// `verify --boot --json`: `"boot": true` and the report's fields (docs/JSON.md).
#[derive(serde::Serialize)]
struct BootJson<'a> {
    boot: bool,
    #[serde(flatten)]
    report: &'a osimage::BootReport,
}

pub(super) fn run(a: VerifyArgs, p: &TermProgress) -> Result<i32, Failure> {
    let opts = options(&a);
    // An encrypted image: opened here with the key given (or asked for), which is then typed
    // at its rescue agent's prompt in the VM.
    let unlock = a.keys.unlock()?;
    let report = verify_boot_unlocked(&a.image, &unlock, &opts, &|line| p.say(line))?;
    print_report(&report, a.json)
}

/// `verify --boot s3://B/P/NAME[@V]`: the network path (docs/VERIFY-BOOT.md "A version in an
/// image store"), under a Read lock held until the check ends.
pub(super) fn run_store(
    a: VerifyArgs,
    address: &osimage::store::ImageAddress,
    p: &TermProgress,
) -> Result<i32, Failure> {
    let opts = options(&a);
    let client = a.net.store_client(&address.root)?;
    // refused before anything is read: options a network boot cannot have, an HTTPS store
    let endpoint = client.endpoint();
    osimage::boot_check_network_preflight(&endpoint, &opts)?;
    // An encrypted store is unlocked before anything of it is read or any lock written.
    let unlock = a.keys.unlock()?;
    let store = osimage::store::Store::open_unlocked(client, address.root.clone(), &unlock)?;
    let lock = ReadLock::take(&store, &address.series, a.lock)?;
    let version = source::version_named(&store, address)?;
    let report = osimage::verify_store_version_boot_unlocked(
        &store,
        &address.series,
        &version,
        &unlock,
        &opts,
        &|line| p.say(line),
    );
    if let Some(lock) = lock {
        lock.release(p);
    }
    print_report(&report?, a.json)
}

fn options(a: &VerifyArgs) -> BootCheckOptions {
    BootCheckOptions {
        firmware: a.firmware.map(Into::into),
        memory_mib: a.memory,
        keep: a.keep,
        disk_bytes: a.disk_size.map(|m| m << 20),
        timeout: Duration::from_secs(a.timeout),
        stall: Duration::from_secs(a.stall),
        accel: a.accel.into(),
        work_dir: a.work_dir.clone(),
    }
}

fn print_report(report: &osimage::BootReport, json: bool) -> Result<i32, Failure> {
    if json {
        super::json::print("verify", &BootJson { boot: true, report })?;
    } else {
        print!("{}", report.text());
    }
    Ok(report.exit_code())
}
