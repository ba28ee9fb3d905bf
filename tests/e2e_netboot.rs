//! Issue #22's restore over the network from S3-compatible storage (docs/NETBOOT.md §2.1),
//! in the `store` binary because it needs Garage: the e2e source system's ISO is imported
//! into a Garage bucket on loopback, `osimage netboot s3://…/system.iso` writes the iPXE
//! script, kernel and initramfs and a presigned URL, and two VMs with a blank disk each and
//! no ISO boot from the network at the same time, restore reading the image from Garage with
//! that URL alone, and power off; then a restored disk alone boots to the marker, and both
//! match the source.

use crate::common;
use crate::common::e2e;

use std::time::Duration;

use common::garage::Garage;
use e2e::captured::captured;
use e2e::phase_time;
use e2e::restored::same_disk;
use e2e::source::{self, BOOT_TIMEOUT};
use e2e::verify::RESTORE_TIMEOUT;
use e2e::vm::{self, Boot, Drive, Firmware};

const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
/// The restored disk: larger than the 2 GiB source, so the root partition grows.
const TARGET_BYTES: u64 = 3 << 30;

/// The guest reaches the boot files at 10.0.2.100:80 (each connection starts `busybox httpd
/// -i` serving DIR) and Garage at 10.0.2.100:3900 (each connection starts `busybox nc` to
/// Garage's loopback port); the network is `restrict=on`, so those are its only ways out.
/// `netboot --presign-endpoint` signs the URL for the address the guest uses. OVMF: its
/// iPXE is the EFI build, whose kernel needs `initrd=` to find the initramfs (SeaBIOS was
/// checked by hand with the plain-URL variant, docs/NETBOOT.md).
#[test]
fn iso_in_a_bucket_restores_a_network_booted_machine_with_a_presigned_url_and_it_boots() {
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let iso = &captured().iso;
    let g = Garage::start();
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let address = format!("s3://{}/fleet/system.iso", g.bucket());
    common::osimage_env(
        ["import".as_ref(), iso.as_os_str(), address.as_ref()],
        &pairs,
    )
    .ok();

    let work = common::scratch();
    let dir = work.path().join("netboot");
    common::osimage_env(
        [
            "netboot".as_ref(),
            address.as_ref(),
            "-o".as_ref(),
            dir.as_os_str(),
            "--presign-endpoint".as_ref(),
            "http://10.0.2.100:3900".as_ref(),
            "--expires".as_ref(),
            "2h".as_ref(),
        ],
        &pairs,
    )
    .ok();
    let script = std::fs::read_to_string(dir.join("boot.ipxe")).expect("boot.ipxe");
    let shown = format!("http://10.0.2.100:3900/{}/fleet/system.iso", g.bucket());
    assert!(
        script.contains(&format!("osimage.source={shown}?")),
        "{script}"
    );
    // Two machines, each with a blank disk, restore the same image at the same time.
    let targets = [work.path().join("a.img"), work.path().join("b.img")];
    for t in &targets {
        e2e::disk::sparse(t, TARGET_BYTES);
    }
    let httpd = format!("busybox httpd -i -h {}", dir.display());
    let relay = format!("busybox nc 127.0.0.1 {}", g.s3_port());
    let machine = |name: &str, target| Boot {
        name: name.into(),
        firmware: Firmware::Uefi,
        cdrom: None,
        disks: vec![Drive {
            file: target,
            bus: vm::Bus::Virtio,
            snapshot: false,
        }],
        timeout: RESTORE_TIMEOUT,
        stop_on: &[],
        grace: Duration::from_secs(5),
    };
    let (a, b) = vm::boot_net_pair(
        &machine("netboot-s3-restore-a", &targets[0]),
        &machine("netboot-s3-restore-b", &targets[1]),
        vm::UserNet {
            bootfile: "http://10.0.2.100/boot.ipxe",
            forwards: &[("10.0.2.100:80", &httpd), ("10.0.2.100:3900", &relay)],
        },
    );
    for o in [&a, &b] {
        assert!(!o.console.contains(FAILED), "{}", o.describe());
        for want in [
            "OSIMAGE-NET-UP eth0 10.0.2.15/24",
            &format!("OSIMAGE-RESCUE-READY medium={shown} disks=/dev/vda:"),
            &format!("osimage: read from {shown}: "),
            DONE,
        ] {
            assert!(
                o.console.contains(want),
                "`{want}` not on the console: {}",
                o.describe()
            );
        }
        // The URL's query is its signature: osimage never prints it (the kernel's own echo
        // of its command line does, as docs/NETBOOT.md says).
        let leaks: Vec<&str> = o
            .console
            .lines()
            .filter(|l| l.contains("X-Amz-Signature") && !l.contains("ommand line: "))
            .collect();
        assert!(leaks.is_empty(), "the signature shows in {leaks:?}");
    }
    phase_time(
        "two machines: network boot -> restored from S3 (presigned) -> power-off (uefi)",
        a.elapsed.max(b.elapsed),
    );
    let booted = vm::boot(&Boot {
        name: "netboot-s3-restored-uefi".into(),
        firmware: Firmware::Uefi,
        cdrom: None,
        disks: vec![Drive {
            file: &targets[0],
            bus: vm::Bus::Virtio,
            snapshot: true,
        }],
        timeout: BOOT_TIMEOUT,
        stop_on: &[s.marker()],
        grace: Duration::from_secs(2),
    });
    let line = s
        .booted(&booted.console, Firmware::Uefi)
        .unwrap_or_else(|| {
            panic!(
                "the disk restored from S3 did not boot: {}",
                booted.describe()
            )
        });
    eprintln!("e2e: restored from S3: {}", line.trim());
    phase_time("disk restored from S3 boots (uefi)", booted.elapsed);
    for (i, t) in targets.iter().enumerate() {
        let cmp = work.path().join(format!("compare-{i}"));
        std::fs::create_dir(&cmp).expect("mkdir compare-N");
        same_disk(s, t, &cmp);
    }
}
