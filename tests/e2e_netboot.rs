//! Issue #22's restore over the network from S3-compatible storage (docs/NETBOOT.md §2.1,
//! docs/STORE.md §9.1), in the `store` binary because it needs Garage: the e2e source
//! system's ISO is imported into a Garage bucket on loopback and the same system captured
//! into a store there. `osimage netboot` writes the iPXE script, kernel and initramfs of the
//! ISO object with a presigned URL on the kernel line; a VM with a blank disk and no ISO boots
//! from the network, restores reading from Garage with that URL alone, powers off, and its
//! disk then boots. At the same time `osimage verify --boot` of the store version
//! (docs/VERIFY-BOOT.md "A version in an image store") network-boots a second VM with the
//! version's own netboot files (presigned URLs in the initramfs's source.conf), which restores
//! it, boots it and compares its files. Both disks match the source.

use crate::common;
use crate::common::e2e;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::garage::Garage;
use e2e::captured::{capture_into_store, captured};
use e2e::phase_time;
use e2e::restored::same_disk;
use e2e::source::{self, BOOT_TIMEOUT};
use e2e::verify::{RESTORE_TIMEOUT, VerifyBoot};
use e2e::vm::{self, Boot, Drive, Firmware};

const DONE: &str = "OSIMAGE-RESTORE-DONE";
const FAILED: &str = "OSIMAGE-RESTORE-FAILED";
/// The restored disk: larger than the 2 GiB source, so the root partition grows.
const TARGET_BYTES: u64 = 3 << 30;

/// Machine A reaches the boot files at 10.0.2.100:80 (each connection starts `busybox httpd
/// -i` serving the netboot directories) and Garage at 10.0.2.100:3900 (each connection starts
/// `busybox nc` to Garage's loopback port); the network is `restrict=on`, so those are its
/// only ways out. `netboot --presign-endpoint` signs the URLs for the address the guest uses.
/// Machine A restores the ISO kept whole as one object (one presigned URL on its kernel
/// line); `verify --boot`'s machine, at the same time, the same system captured into a store,
/// read through the presigned URLs of its version object and packs in its initramfs's
/// source.conf (docs/STORE.md §9.1), relayed the same way by `verify --boot` itself. OVMF:
/// its iPXE is the EFI build, whose kernel needs `initrd=` to find the initramfs (SeaBIOS was
/// checked by hand with the plain-URL variant, docs/NETBOOT.md).
/// The commands behind the guest's two ways out: `busybox httpd` serving `served` (the
/// netboot directories) and `busybox nc` to Garage's loopback S3 port.
fn relays(served: &Path, g: &Garage) -> [String; 2] {
    [
        format!("busybox httpd -i -h {}", served.display()),
        format!("busybox nc 127.0.0.1 {}", g.s3_port()),
    ]
}

/// A machine with `target` as its one disk (virtio) and no CD.
fn one_disk_machine<'a>(
    name: &str,
    firmware: Firmware,
    target: &'a Path,
    snapshot: bool,
    timeout: Duration,
    stop_on: &'a [&'a str],
) -> Boot<'a> {
    Boot {
        name: name.into(),
        firmware,
        cdrom: None,
        disks: vec![Drive {
            file: target,
            bus: vm::Bus::Virtio,
            snapshot,
        }],
        timeout,
        stop_on,
        grace: Duration::from_secs(5),
    }
}

#[test]
fn an_iso_object_restores_a_network_booted_machine_beside_verify_boot_of_a_store_version() {
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
    // Machine A restores the ISO object while `verify --boot` of the store version restores
    // machine B (its own netboot files, its own relays), boots it and compares its files.
    let target = work.path().join("a.img");
    e2e::disk::sparse(&target, TARGET_BYTES);
    let [httpd, relay] = relays(&served, &g);
    let forwards = [
        ("10.0.2.100:80", httpd.as_str()),
        ("10.0.2.100:3900", relay.as_str()),
    ];
    let machine = |name: &str, snapshot, timeout, stop_on| {
        one_disk_machine(name, Firmware::Uefi, &target, snapshot, timeout, stop_on)
    };
    let verify_work = work.path().join("verify");
    std::fs::create_dir(&verify_work).expect("mkdir verify");
    let size_mib = (TARGET_BYTES >> 20).to_string();
    let marker = [s.marker()];
    let (a, booted, b) = vm::with_two_slots(|| {
        std::thread::scope(|scope| {
            let b = scope.spawn(|| {
                VerifyBoot::run_held(
                    series.as_ref(),
                    Firmware::Uefi,
                    &verify_work,
                    &["--disk-size", &size_mib],
                    &pairs,
                )
            });
            let a = vm::boot_held(
                &machine("netboot-s3-restore-a", false, RESTORE_TIMEOUT, &[]),
                Some(vm::UserNet {
                    bootfile: "http://10.0.2.100/iso/boot.ipxe",
                    forwards: &forwards,
                }),
            );
            let booted = a.console.contains(DONE).then(|| {
                vm::boot_held(
                    &machine("netboot-s3-restored-uefi", true, BOOT_TIMEOUT, &marker),
                    None,
                )
            });
            let b = b.join().expect("verify --boot's thread panicked");
            (a, booted, b)
        })
    });
    let b_console = b.console("restore");
    let read_from = [shown.clone(), "system@".to_string()];
    for ((console, describe), from) in [(&a.console, a.describe()), (&b_console, b.pretty())]
        .into_iter()
        .zip(&read_from)
    {
        assert!(!console.contains(FAILED), "{describe}");
        for want in [
            "OSIMAGE-NET-UP eth0 10.0.2.15/24",
            &format!("OSIMAGE-RESCUE-READY medium={from}"),
            &format!("osimage: read from {from}"),
            DONE,
        ] {
            assert!(
                console.contains(want),
                "`{want}` not on the console: {describe}"
            );
        }
        // A URL's query is its signature: osimage never prints it (the kernel's own echo
        // of its command line does, as docs/NETBOOT.md says).
        let leaks: Vec<&str> = console
            .lines()
            .filter(|l| l.contains("X-Amz-Signature") && !l.contains("ommand line: "))
            .collect();
        assert!(leaks.is_empty(), "the signature shows in {leaks:?}");
    }
    assert!(
        b_console.contains("a store version of"),
        "verify --boot's machine did not read a store version: {}",
        b.pretty()
    );
    // verify --boot of the store version: restored over the network, booted, files equal
    b.assert_passed(s, Firmware::Uefi);
    b.first_boot(Firmware::Uefi, &["/=/dev/vda3"]);
    b.assert_files_equal(5000);
    phase_time(
        "network boot -> restored from S3 (an ISO object) -> power-off (uefi), beside verify --boot of a store version",
        a.elapsed,
    );
    let booted = booted.unwrap_or_else(|| panic!("machine A did not restore: {}", a.describe()));
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
    for (i, t) in [target, b.disk()].iter().enumerate() {
        let cmp = work.path().join(format!("compare-{i}"));
        std::fs::create_dir(&cmp).expect("mkdir compare-N");
        same_disk(s, t, &cmp);
    }
}

/// An encrypted store's version restored over the network (docs/STORE.md §6.1, "The key
/// set"): the store made with `store init --encrypt`, the system captured into it, `netboot`
/// writes the version's key set wrapped for the passphrase that unlocked the store; a machine
/// with a blank disk network-boots (SeaBIOS this time: its iPXE is the BIOS build), the agent
/// asks for the passphrase on the console once its network is up, opens the key set, reads
/// the sealed version and packs through their presigned URLs by their keyed names, restores,
/// powers off, and the disk boots and matches the source. Beside it `verify --boot` of the
/// same version proves it on a machine of its own, typing the passphrase at that machine's
/// prompt, with the passphrase in none of its report, logs or served files.
#[test]
fn an_encrypted_store_version_restores_a_network_booted_machine_given_its_passphrase() {
    const PASSPHRASE: &str = "e2e netboot horse battery";
    const ASK: &str = "osimage: passphrase (or age secret key) of the encrypted image:";
    let _disks = common::loop_devices(module_path!());
    let s = source::source();
    let g = Garage::start();
    let mut env = g.osimage_env();
    env.push(("OSIMAGE_PASSPHRASE".into(), PASSPHRASE.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let store = format!("s3://{}/stores/sealed", g.bucket());
    common::osimage_env(["store", "init", store.as_str(), "--encrypt"], &pairs).ok();
    let series = format!("{store}/system");
    capture_into_store(&series, &pairs);

    let work = common::scratch();
    let served = work.path().join("served");
    let dir = served.join("sealed");
    std::fs::create_dir(&served).expect("mkdir served");
    common::osimage_env(
        [
            "netboot",
            series.as_str(),
            "-o",
            dir.to_str().expect("UTF-8 path"),
            "--presign-endpoint",
            "http://10.0.2.100:3900",
            "--expires",
            "2h",
        ],
        &pairs,
    )
    .ok();
    // The passphrase is nowhere in what is served (the key set is wrapped for it).
    let holding = files_holding(&dir, PASSPHRASE.as_bytes());
    assert!(holding.is_empty(), "{holding:?} hold the passphrase");

    let target = work.path().join("sealed.img");
    e2e::disk::sparse(&target, TARGET_BYTES);
    let [httpd, relay] = relays(&served, &g);
    let forwards = [
        ("10.0.2.100:80", httpd.as_str()),
        ("10.0.2.100:3900", relay.as_str()),
    ];
    let machine = |name: &str, snapshot, timeout, stop_on| {
        one_disk_machine(name, Firmware::Bios, &target, snapshot, timeout, stop_on)
    };
    let typed = [vm::Typed {
        after: ASK,
        line: PASSPHRASE,
    }];
    // Beside it, `verify --boot` of the same version (docs/VERIFY-BOOT.md "Encrypted
    // images"): the store unlocked by OSIMAGE_PASSPHRASE, the key set it serves wrapped for
    // that passphrase, which it types at its own machine's prompt.
    let verify_work = work.path().join("verify");
    std::fs::create_dir(&verify_work).expect("mkdir verify");
    let (a, b) = vm::with_two_slots(|| {
        std::thread::scope(|scope| {
            let b = scope.spawn(|| {
                VerifyBoot::run_held(series.as_ref(), Firmware::Bios, &verify_work, &[], &pairs)
            });
            let a = vm::boot_held_typing(
                &machine("netboot-s3-sealed-restore", false, RESTORE_TIMEOUT, &[]),
                Some(vm::UserNet {
                    bootfile: "http://10.0.2.100/sealed/boot.ipxe",
                    forwards: &forwards,
                }),
                &typed,
            );
            (a, b.join().expect("verify --boot's thread panicked"))
        })
    });
    b.assert_passed(s, Firmware::Bios);
    b.first_boot(Firmware::Bios, &["/=/dev/vda3"]);
    b.assert_files_equal(5000);
    let b_console = b.console("restore");
    for want in [
        "OSIMAGE-RESTORE-WAITING passphrase",
        "osimage: image unlocked",
    ] {
        assert!(
            b_console.contains(want),
            "verify --boot's machine: `{want}` not on the console: {}",
            b.pretty()
        );
    }
    assert!(
        !b.pretty().contains(PASSPHRASE),
        "the passphrase is in the report"
    );
    let holding = files_holding(&verify_work, PASSPHRASE.as_bytes());
    assert!(
        holding.is_empty(),
        "the passphrase is in verify --boot's kept files {holding:?}"
    );
    assert!(!a.console.contains(FAILED), "{}", a.describe());
    for want in [
        "OSIMAGE-NET-UP eth0 10.0.2.15/24",
        ASK,
        "osimage: image unlocked",
        DONE,
    ] {
        assert!(
            a.console.contains(want),
            "`{want}` not on the console: {}",
            a.describe()
        );
    }
    assert!(
        !a.console.contains(PASSPHRASE),
        "the passphrase was echoed: {}",
        a.describe()
    );
    phase_time(
        "network boot -> restored from an encrypted store -> power-off (bios)",
        a.elapsed,
    );
    let marker = [s.marker()];
    let booted = vm::boot(&machine(
        "netboot-s3-sealed-restored-bios",
        true,
        BOOT_TIMEOUT,
        &marker,
    ));
    let line = s
        .booted(&booted.console, Firmware::Bios)
        .unwrap_or_else(|| {
            panic!(
                "the disk restored from the encrypted store did not boot: {}",
                booted.describe()
            )
        });
    eprintln!("e2e: restored from an encrypted store: {}", line.trim());
    phase_time(
        "disk restored from an encrypted store boots (bios)",
        booted.elapsed,
    );
    let cmp = work.path().join("compare");
    std::fs::create_dir(&cmp).expect("mkdir compare");
    same_disk(s, &target, &cmp);
}

/// The files under `dir` holding `needle`, scratch disks (`disk-*.img`) left out.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            found.extend(files_holding(&p, needle));
        } else if !(name.starts_with("disk-") && name.ends_with(".img")) {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(p);
            }
        }
    }
    found
}
