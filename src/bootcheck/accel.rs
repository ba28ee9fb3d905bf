//! KVM or TCG. `/dev/kvm` existing proves little (nested hosts, missing permissions, a module
//! that loads but cannot run a guest), so KVM is tried twice: a one-page guest whose reset
//! vector holds `hlt` must run and exit with `KVM_EXIT_HLT`, and then the real firmware runs
//! under KVM for a few seconds with its consoles and QEMU's stderr watched (OVMF when
//! installed: it uses what a kernel uses, x87/SSE, protected and long mode; issue #21 found a
//! nested host where the `hlt` guest runs and OVMF dies at once with KVM's internal error).
//! Anything else means TCG, and the reason is reported.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::vm::{self, Ended, Firmware, VmSpec};

/// The accelerator QEMU runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// QEMU's name (`-machine pc,accel=NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when a test guest runs on /dev/kvm, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// The accelerator to use and why; `logs`: where the firmware probe's logs go.
pub fn choose(choice: AccelChoice, logs: &Path) -> Result<(Accel, String), String> {
    let works = || probe().and_then(|()| probe_firmware(logs));
    match choice {
        AccelChoice::Tcg => Ok((Accel::Tcg, "TCG (asked for)".into())),
        AccelChoice::Kvm => match works() {
            Ok(fw) => Ok((
                Accel::Kvm,
                format!("KVM (asked for; /dev/kvm runs a test guest and {fw})"),
            )),
            Err(e) => Err(format!("--accel kvm: KVM does not work here: {e}")),
        },
        AccelChoice::Auto => Ok(match works() {
            Ok(fw) => (
                Accel::Kvm,
                format!("KVM (/dev/kvm runs a test guest and {fw})"),
            ),
            Err(e) => (Accel::Tcg, format!("TCG (KVM does not work here: {e})")),
        }),
    }
}

/// How long the firmware runs under KVM in the probe.
const FIRMWARE_PROBE: Duration = Duration::from_secs(8);

/// Runs the firmware under KVM for `FIRMWARE_PROBE` (no disk, nothing to boot): it must
/// write to a console and QEMU must report no failure. Returns what ran.
fn probe_firmware(logs: &Path) -> Result<String, String> {
    let fw = if Path::new(vm::OVMF_CODE).is_file() && Path::new(vm::OVMF_VARS).is_file() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let spec = VmSpec {
        name: format!("kvm-probe-{}", fw.name()),
        log_dir: logs,
        firmware: fw,
        accel: Accel::Kvm,
        memory_mib: 256,
        cdrom: None,
        kernel: None,
        disks: Vec::new(),
        timeout: FIRMWARE_PROBE,
        stop_on: &[],
        fail_on: &[],
        milestones: &[],
        grace: Duration::from_secs(1),
        stall: None,
        first_output: Some(FIRMWARE_PROBE - Duration::from_secs(1)),
        network: None,
    };
    let o = vm::run(&spec).map_err(|e| format!("{} under KVM: {e}", fw.product()))?;
    let ran = format!(
        "{} ran under KVM for {} s",
        fw.product(),
        FIRMWARE_PROBE.as_secs()
    );
    match (&o.ended, o.vm_failure()) {
        (_, Some(m)) => Err(format!("{} under KVM: {m}", fw.product())),
        // still running at the end, or ended by itself (nothing to boot), QEMU content
        (Ended::TimedOut | Ended::Exited(_), None) => Ok(ran),
        (_, None) => Err(format!("{} under KVM: {}", fw.product(), o.describe())),
    }
}

// linux/kvm.h
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
const KVM_RUN: libc::c_ulong = 0xAE80;
const KVM_EXIT_HLT: u32 = 5;
/// `struct kvm_run`: `exit_reason` follows two u8 fields and 6 bytes of padding.
const EXIT_REASON_OFFSET: usize = 8;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
struct MemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// Runs the test guest on a thread and waits a few seconds for it (a broken KVM may hang in
/// `KVM_RUN`; the thread is then left behind and TCG used).
pub fn probe() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run_test_guest());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| Err("the test guest did not stop within 5 s".into()))
}

fn ioctl(fd: &OwnedFd, req: libc::c_ulong, arg: libc::c_ulong, what: &str) -> Result<i32, String> {
    // SAFETY: each request is called with the argument type linux/kvm.h gives it: none, an
    // integer, or a pointer to a live `MemoryRegion`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if rc < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a KVM ioctl that creates a descriptor; nothing else
    // owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Maps `len` bytes (anonymous, or of `fd`), unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<&OwnedFd>) -> Result<Mapping, String> {
        let (flags, raw) = match fd {
            Some(f) => (libc::MAP_SHARED, f.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and lives as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One page at the x86 reset vector (CS base 0xFFFF0000 + IP 0xFFF0 = 0xFFFFFFF0) holding
/// `hlt`: a working KVM runs it and reports `KVM_EXIT_HLT`.
fn run_test_guest() -> Result<(), String> {
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    let kvm = OwnedFd::from(kvm);
    let api = ioctl(&kvm, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")?;
    if api != 12 {
        return Err(format!("KVM API version {api}, expected 12"));
    }
    let vm = owned(ioctl(&kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM")?);
    let mut page = Mapping::new(4096, None)?;
    page.bytes()[0xFF0] = 0xF4; // hlt
    let region = MemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0xFFFF_F000,
        memory_size: 4096,
        userspace_addr: page.ptr as u64,
    };
    let at = &region as *const MemoryRegion as libc::c_ulong;
    ioctl(
        &vm,
        KVM_SET_USER_MEMORY_REGION,
        at,
        "KVM_SET_USER_MEMORY_REGION",
    )?;
    let vcpu = owned(ioctl(&vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")?);
    let size = ioctl(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")?;
    let size = usize::try_from(size).map_err(|_| "bad KVM_GET_VCPU_MMAP_SIZE".to_string())?;
    if size < EXIT_REASON_OFFSET + 4 {
        return Err(format!("kvm_run area of {size} bytes"));
    }
    let mut run = Mapping::new(size, Some(&vcpu))?;
    ioctl(&vcpu, KVM_RUN, 0, "KVM_RUN")?;
    let b = &run.bytes()[EXIT_REASON_OFFSET..EXIT_REASON_OFFSET + 4];
    let reason = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    if reason == KVM_EXIT_HLT {
        Ok(())
    } else {
        Err(format!(
            "the test guest stopped with exit reason {reason}, not HLT"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_when_asked_and_auto_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (a, why) = choose(AccelChoice::Tcg, dir.path()).unwrap();
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("TCG"));
        let (a, why) = choose(AccelChoice::Auto, dir.path()).unwrap();
        match a {
            Accel::Kvm => assert!(why.starts_with("KVM"), "{why}"),
            Accel::Tcg => assert!(why.contains("KVM does not work"), "{why}"),
        }
    }
}
