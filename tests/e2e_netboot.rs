//! Issue #22's restore over the network from S3-compatible storage (docs/NETBOOT.md §2.1,
//! docs/STORE.md §9.1), in the `store` binary because it needs Garage: the e2e source
//! system's ISO is imported into a Garage bucket on loopback and the same system captured
//! into a store there; `osimage netboot` writes, for each, the iPXE script, kernel and
//! initramfs and presigned URLs (on the kernel line for the ISO; in the initramfs's
//! source.conf for the store version). Two VMs with a blank disk each and no ISO boot from
//! the network at the same time, one from each, restore reading from Garage with those URLs
//! alone, and power off; then a restored disk alone boots to the marker, and both match the
//! source.

use crate::common;
use crate::common::e2e;

use std::time::Duration;

use common::garage::Garage;
use e2e::captured::{capture_into_store, captured};
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
/// -i` serving both netboot directories) and Garage at 10.0.2.100:3900 (each connection starts
/// `busybox nc` to Garage's loopback port); the network is `restrict=on`, so those are its
/// only ways out. `netboot --presign-endpoint` signs the URLs for the address the guest uses.
/// Machine A restores the ISO kept whole as one object (one presigned URL on its kernel
/// line); machine B, at the same time, the same system captured into a store, read through
/// the presigned URLs of its version object and packs in its initramfs's source.conf
/// (docs/STORE.md §9.1). OVMF: its iPXE is the EFI build, whose kernel needs `initrd=` to
/// find the initramfs (SeaBIOS was checked by hand with the plain-URL variant,
/// docs/NETBOOT.md).
#[test]
fn an_iso_object_and_a_store_version_restore_two_network_booted_machines_that_then_boot() {
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
    let store = format!("s3://{}/stores/fleet", g.bucket());
    common::osimage_env(["store", "init", store.as_str()], &pairs).ok();
    let series = format!("{store}/system");
    capture_into_store(&series, &pairs);

    let work = common::scratch();
    let served = work.path().join("served");
    std::fs::create_dir(&served).expect("mkdir served");
    let netboot = |image: &str, dir: &str| {
        common::osimage_env(
            [
                "netboot",
                image,
                "-o",
                served.join(dir).to_str().expect("UTF-8 path"),
                "--presign-endpoint",
                "http://10.0.2.100:3900",
                "--expires",
                "2h",
            ],
            &pairs,
        )
        .ok();
        std::fs::read_to_string(served.join(dir).join("boot.ipxe")).expect("boot.ipxe")
    };
    let script = netboot(&address, "iso");
    let shown = format!("http://10.0.2.100:3900/{}/fleet/system.iso", g.bucket());
    assert!(
        script.contains(&format!("osimage.source={shown}?")),
        "{script}"
    );
    let script = netboot(&series, "store");
    assert!(
        script.contains("osimage.source=/osimage/source.conf") && !script.contains("X-Amz"),
        "{script}"
    );
    // Two machines, each with a blank disk, restore at the same time.
    let targets = [work.path().join("a.img"), work.path().join("b.img")];
    for t in &targets {
        e2e::disk::sparse(t, TARGET_BYTES);
    }
    let httpd = format!("busybox httpd -i -h {}", served.display());
    let relay = format!("busybox nc 127.0.0.1 {}", g.s3_port());
    let forwards = [
        ("10.0.2.100:80", httpd.as_str()),
        ("10.0.2.100:3900", relay.as_str()),
    ];
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
    let net = |bootfile| vm::UserNet {
        bootfile,
        forwards: &forwards,
    };
    let (a, b) = vm::boot_net_pair(
        (
            &machine("netboot-s3-restore-a", &targets[0]),
            net("http://10.0.2.100/iso/boot.ipxe"),
        ),
        (
            &machine("netboot-store-restore-b", &targets[1]),
            net("http://10.0.2.100/store/boot.ipxe"),
        ),
    );
    let read_from = [shown.clone(), "system@".to_string()];
    for (o, from) in [(&a, &read_from[0]), (&b, &read_from[1])] {
        assert!(!o.console.contains(FAILED), "{}", o.describe());
        for want in [
            "OSIMAGE-NET-UP eth0 10.0.2.15/24",
            &format!("OSIMAGE-RESCUE-READY medium={from}"),
            &format!("osimage: read from {from}"),
            DONE,
        ] {
            assert!(
                o.console.contains(want),
                "`{want}` not on the console: {}",
                o.describe()
            );
        }
        // A URL's query is its signature: osimage never prints it (the kernel's own echo
        // of its command line does, as docs/NETBOOT.md says).
        let leaks: Vec<&str> = o
            .console
            .lines()
            .filter(|l| l.contains("X-Amz-Signature") && !l.contains("ommand line: "))
            .collect();
        assert!(leaks.is_empty(), "the signature shows in {leaks:?}");
    }
    assert!(
        b.console.contains("a store version of"),
        "machine B did not read a store version: {}",
        b.describe()
    );
    phase_time(
        "two machines: network boot -> restored from S3 (an ISO object; a store version) -> power-off (uefi)",
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
