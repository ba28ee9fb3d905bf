//! The e2e tests boot through the product's QEMU runner (`osimage::vm`, the one
//! `verify --boot` uses), always under TCG (no KVM on these machines), one VM at a time in the
//! whole test run (`common::vm_lock`), with the console logs in tests/cache/e2e/logs.
//!
//! A boot QEMU could not run (its internal error, no firmware output, an exit the guest did
//! not ask for: `Outcome::vm_failure`, the classification `verify --boot` uses, issue #21)
//! fails the test as the host's problem, naming QEMU's message, never as the product's.

use std::path::Path;
use std::time::Duration;

pub use osimage::vm::{
    Bus, DirectKernel, Drive, Firmware, OVMF_CODE, OVMF_VARS, Outcome, Typed, UserNet,
};
use osimage::{Accel, vm};

/// One boot.
pub struct Boot<'a> {
    /// Names the console log (`tests/cache/e2e/logs/<name>.log`).
    pub name: String,
    pub firmware: Firmware,
    pub cdrom: Option<&'a Path>,
    pub disks: Vec<Drive<'a>>,
    /// Generous, for a busy two-core machine under TCG: never a timing assertion.
    pub timeout: Duration,
    /// When the console contains one of these, the VM is given `grace` to stop by itself and
    /// is then killed. Empty: wait for the VM to stop by itself.
    pub stop_on: &'a [&'a str],
    pub grace: Duration,
}

/// Boots, watches the serial console, and returns how it ended.
pub fn boot(b: &Boot) -> Outcome {
    boot_with(b, None, &[], None)
}

/// Like `boot`, from the network: `net`'s boot file, with its forwards as the only way out.
pub fn boot_net(b: &Boot, net: UserNet) -> Outcome {
    boot_with(b, None, &[], Some(net))
}

/// `boot_net` typing `script` into the serial console (the passphrase of an encrypted
/// store's version, asked by the agent once the network is up).
pub fn boot_net_typing(b: &Boot, net: UserNet, script: &[Typed]) -> Outcome {
    boot_with(b, None, script, Some(net))
}

/// Like `boot`, typing `script` into the serial console (each line once its prompt is
/// there: a passphrase asked by the initramfs).
pub fn boot_typing(b: &Boot, script: &[Typed]) -> Outcome {
    boot_with(b, None, script, None)
}

/// Like `boot`, with the kernel loaded directly (`-kernel/-initrd/-append`: a boot entry's
/// command line with parameters added, as an operator edits it at the boot menu).
pub fn boot_direct(b: &Boot, kernel: DirectKernel) -> Outcome {
    boot_with(b, Some(kernel), &[], None)
}

/// `boot_direct` typing `script` into the serial console.
pub fn boot_direct_typing(b: &Boot, kernel: DirectKernel, script: &[Typed]) -> Outcome {
    boot_with(b, Some(kernel), script, None)
}

/// Two VMs booted from the network at the same time (two machines restoring at once), each
/// with its own user network (its boot file and forwards); two VM slots for both.
pub fn boot_net_pair(a: (&Boot, UserNet), b: (&Boot, UserNet)) -> (Outcome, Outcome) {
    let _vm = crate::common::vm_lock_two();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| run_unlocked(a.0, None, &[], Some(a.1)));
        let second = run_unlocked(b.0, None, &[], Some(b.1));
        let first = first
            .join()
            .unwrap_or_else(|_| panic!("boot {} panicked", a.0.name));
        (first, second)
    })
}

/// Runs `f` holding two VM slots: for a test whose own VM runs beside one of an `osimage
/// verify --boot` child (`VerifyBoot::run_held`); its own boots inside go through
/// [`boot_held`].
pub fn with_two_slots<T>(f: impl FnOnce() -> T) -> T {
    let _vm = crate::common::vm_lock_two();
    f()
}

/// Like `boot` (from the network with `net`), for a caller inside [`with_two_slots`].
pub fn boot_held(b: &Boot, net: Option<UserNet>) -> Outcome {
    run_unlocked(b, None, &[], net)
}

/// [`boot_held`] typing `script` into the serial console.
pub fn boot_held_typing(b: &Boot, net: Option<UserNet>, script: &[Typed]) -> Outcome {
    run_unlocked(b, None, script, net)
}

fn boot_with(
    b: &Boot,
    kernel: Option<DirectKernel>,
    script: &[Typed],
    network: Option<UserNet>,
) -> Outcome {
    let _vm = crate::common::vm_lock();
    run_unlocked(b, kernel, script, network)
}

/// TCG, always in the tests; `OSIMAGE_E2E_ACCEL=kvm` is for a benchmark on a host whose KVM
/// runs real firmware (bench/unpack-vm.sh: issue #23 goal 3 needs a guest CPU near native
/// speed).
fn accel() -> Accel {
    match std::env::var("OSIMAGE_E2E_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    }
}

/// The console log names of the VMs running in this process. The harness reads a VM's
/// console from its log file, and QEMU starts by replacing the file of its name: two VMs of
/// one name at once (two tests of a module side by side, each capturing the same source in
/// its guest) read each other's consoles. A name in use gets `-2`, `-3`… (session 20: the
/// cause of stop 36's red and of a later `lacks the marker` failure).
static RUNNING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A name held in [`RUNNING`] until dropped.
struct LogName(String);

impl LogName {
    fn claim(wanted: &str) -> LogName {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        let mut name = wanted.to_string();
        let mut n = 2;
        while running.contains(&name) {
            name = format!("{wanted}-{n}");
            n += 1;
        }
        running.push(name.clone());
        LogName(name)
    }
}

impl Drop for LogName {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|n| *n != self.0);
    }
}

/// One VM, for a caller that holds `vm_lock`.
fn run_unlocked(
    b: &Boot,
    kernel: Option<DirectKernel>,
    script: &[Typed],
    network: Option<UserNet>,
) -> Outcome {
    let logs = super::logs_dir();
    let disks = b
        .disks
        .iter()
        .map(|d| Drive {
            file: d.file,
            bus: d.bus,
            snapshot: d.snapshot,
        })
        .collect();
    let name = LogName::claim(&b.name);
    let o = vm::run_typing(
        &vm::VmSpec {
            name: name.0.clone(),
            log_dir: &logs,
            firmware: b.firmware,
            accel: accel(),
            memory_mib: 1536,
            cdrom: b.cdrom,
            kernel,
            disks,
            timeout: b.timeout,
            stop_on: b.stop_on,
            // a panicked kernel never prints what the test waits for: end at once
            fail_on: &[osimage::console::KERNEL_PANIC],
            milestones: &[],
            grace: b.grace,
            stall: None,
            first_output: Some(vm::FIRST_OUTPUT),
            network,
        },
        script,
    )
    .unwrap_or_else(|e| panic!("boot {}: {e}", b.name));
    if let Some(vm_failure) = o.vm_failure() {
        panic!(
            "boot {}: could not run the VM (this host's QEMU, not osimage): {vm_failure}\n{}",
            b.name,
            o.describe()
        );
    }
    o
}

/// What the source system's boot marker says about the firmware it booted from (and whether
/// the `SecureBoot` EFI variable said on).
pub fn marker_word(fw: Firmware) -> &'static str {
    match fw {
        Firmware::Bios => "firmware=BIOS secureboot=none",
        Firmware::Uefi => "firmware=UEFI secureboot=off",
        Firmware::UefiSecureBoot => "firmware=UEFI secureboot=on",
    }
}
