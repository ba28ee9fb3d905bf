//! `osimage verify --boot`'s refusals that need no VM: a payload image (`.oimg`) has no rescue
//! environment to boot, and the boot options make no sense without `--boot`; and a QEMU that
//! cannot run the VM (a stand-in on PATH) is never blamed on the image. (The boots themselves
//! are proven end to end in tests/e2e_restore.rs.)

use crate::common;

use std::process::Command;

fn osimage() -> Command {
    Command::new(env!("CARGO_BIN_EXE_osimage"))
}

#[test]
fn verify_boot_refuses_a_payload_image_naming_the_iso() {
    common::require_root();
    let work = common::scratch();
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"payload-only\n").unwrap();
    let image = work.path().join("system.oimg");
    let out = osimage()
        .args(["capture", "-q"])
        .arg(&root)
        .arg("-o")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = osimage()
        .args(["verify", "--boot", "--accel", "tcg"])
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&image.display().to_string())
            && err.contains("payload image without the rescue environment")
            && err.contains(".iso"),
        "{err}"
    );
    // nothing was left behind in the temporary directory
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A store version is booted from the network (docs/VERIFY-BOOT.md "A version in an image
/// store"): what that cannot do is refused before the store is read at all (no server
/// listens at these endpoints): an HTTPS store, which the VM would reach under another name,
/// naming the way that works (export, then verify --boot of the ISO); Secure Boot, for which
/// QEMU's iPXE is not signed.
#[test]
fn verify_boot_of_a_store_version_refuses_https_and_secure_boot_before_any_request() {
    let run = |endpoint: &str, extra: &[&str]| {
        let out = osimage()
            .args([
                "verify",
                "--boot",
                "s3://images/fleet/web01",
                "--accel",
                "tcg",
            ])
            .args(extra)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "GKtest")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "garage")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(out.stdout.is_empty(), "{err}");
        err
    };
    let err = run("https://127.0.0.1:9", &[]);
    assert!(
        err.contains("https://127.0.0.1:9 is https")
            && err.contains("only plain HTTP")
            && err.contains("osimage export s3://"),
        "{err}"
    );
    let err = run("http://127.0.0.1:9", &["--firmware", "uefi-secureboot"]);
    assert!(
        err.contains("needs a signed iPXE") && !err.contains("127.0.0.1"),
        "{err}"
    );
}

#[test]
fn boot_options_without_boot_are_a_usage_error() {
    // (--json is not one of them: plain verify prints JSON too, issue #24)
    let flags: [&[&str]; 3] = [&["--keep"], &["--firmware", "uefi"], &["--memory", "512"]];
    for flag in flags {
        let out = osimage()
            .args(["verify", "x.iso"])
            .args(flag)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--boot"),
            "{flag:?}"
        );
    }
}

/// The file comparison of `verify --boot` (`bootcheck::files`) against a real image: an
/// extracted tree has no differences; a changed byte (size and mtime kept), a changed mode,
/// a removed file and an added one are each caught and named; what the fidelity contract lets
/// differ (/var/log) is not counted.
#[test]
fn files_comparison_catches_content_metadata_missing_and_extra() {
    use osimage::{Fidelity, compare_with_manifest as compare};
    use std::os::unix::fs::PermissionsExt;
    common::require_root();
    let work = common::scratch();
    let root = work.path().join("root");
    for d in ["etc", "usr/bin", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/hostname"), b"files-compare\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("usr/bin/big"), &big).unwrap();
    let sparse = std::fs::File::create(root.join("usr/bin/sparse")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"tail", (8 << 20) - 4).unwrap();
    std::os::unix::fs::symlink("big", root.join("usr/bin/link")).unwrap();
    std::fs::hard_link(root.join("usr/bin/big"), root.join("usr/bin/big2")).unwrap();
    xattr::set(root.join("etc/hostname"), "user.note", b"kept").unwrap();
    std::fs::write(root.join("var/log/boot.log"), b"x").unwrap();
    let image = work.path().join("t.oimg");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = osimage().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "capture".as_ref(),
        "-q".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        image.as_os_str(),
    ]);
    let out = work.path().join("out");
    run(&[
        "extract".as_ref(),
        image.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
    ]);
    let r = osimage::PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
    let m = r.manifest();
    let full = |_: osimage::format::manifest::EntryRef| Fidelity::Full;

    let clean = compare(m, &out, &full);
    assert_eq!(clean.differences, 0, "{:?}", clean.listed);
    assert!(
        clean.compared >= 10 && clean.bytes >= 3_000_000 + (8 << 20),
        "{clean:?}"
    );

    // changes the fidelity contract allows are not counted
    std::fs::write(out.join("var/log/boot.log"), b"changed").unwrap();
    std::fs::write(out.join("var/log/new.log"), b"new").unwrap();
    assert_eq!(compare(m, &out, &full).differences, 0);

    let f = out.join("usr/bin/big");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[2_500_000] ^= 1;
    std::fs::write(&f, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    std::fs::set_permissions(
        out.join("etc/hostname"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(out.join("usr/bin/link")).unwrap();
    std::fs::write(out.join("etc/extra"), b"not in the image").unwrap();
    let r = compare(m, &out, &full);
    let listed: Vec<String> = r
        .listed
        .iter()
        .map(|d| format!("{} {}", d.path, d.what.join(",")))
        .collect();
    // (big2 is a hard link to big: one inode, its content checked once, as big's; the
    // directories whose entries changed have new mtimes)
    let mut want = vec![
        "/etc mtime",
        "/etc/hostname mode",
        "/usr/bin mtime",
        "/usr/bin/big content",
        "/usr/bin/link missing",
        "/etc/extra extra",
    ];
    let mut got: Vec<&str> = listed.iter().map(|l| l.as_str()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(r.differences, 6);
}

/// An ISO of the cached staging root (a Debian kernel, the payload /etc and /boot), as
/// tests/capture_iso.rs makes it.
fn small_iso(work: &std::path::Path) -> std::path::PathBuf {
    use common::kernel::{kernel_package, staging_root};
    common::require_root();
    common::kernel::need_iso_capture_tools();
    let (x, version) = kernel_package();
    let root = staging_root(&x, &version);
    let iso = work.join("system.iso");
    let mut extra = common::kernel::exclude_host_programs();
    extra.push("-q");
    common::capture(&root, &iso, &extra);
    iso
}

/// A stand-in `qemu-system-x86_64` (a shell script with `body`) in `dir`; returns a PATH
/// with it first, for the child process only (this process's environment is shared by the
/// other tests).
fn fake_qemu_path(dir: &std::path::Path, body: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let fake = dir.join("qemu-system-x86_64");
    std::fs::write(&fake, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// What QEMU printed on the nested host of issue #21 when OVMF ran under KVM.
const KVM_ERROR: &str = "echo \"qemu-system-x86_64: warning: host doesn't support requested \
     feature: CPUID.01H:ECX.pni [bit 0]\" >&2\n\
     printf 'KVM internal error. Suberror: 1\\nextra data[0]: 0x1\\nemulation failure\\n' >&2\n\
     exec sleep 600\n";

/// `osimage verify --boot ISO` with `args`, the fake QEMU's PATH, the work dir in `work`.
fn verify_boot(
    path: &str,
    work: &std::path::Path,
    iso: &std::path::Path,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let out = osimage()
        .env("PATH", path)
        .args([
            "verify",
            "--boot",
            "--firmware",
            "bios",
            "--disk-size",
            "64",
        ])
        .args(["--timeout", "600", "--stall", "5"])
        .args(args)
        .arg("--work-dir")
        .arg(work)
        .arg(iso)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue #21: on a host whose QEMU cannot run the guest (a stand-in QEMU: one prints KVM's
/// internal error as QEMU did on a nested host and stays, as QEMU does; one prints nothing
/// and hangs), the verdict names the VM and QEMU's message, not the image, with exit status
/// 3; the run ends at the error or the firmware's silence, not at `--timeout`.
#[test]
fn a_qemu_that_cannot_run_the_vm_is_not_blamed_on_the_image() {
    let work = common::scratch();
    let iso = small_iso(work.path());
    let cases = [
        ("kvm-internal-error", KVM_ERROR, "KVM internal error"),
        ("silent", "exec sleep 600\n", "the firmware wrote nothing"),
    ];
    for (name, body, says) in cases {
        let path = fake_qemu_path(&work.path().join(name), body);
        let (code, stdout, stderr) = verify_boot(&path, work.path(), &iso, &["--accel", "tcg"]);
        let all = format!("{stdout}\n{stderr}");
        assert_eq!(code, Some(3), "{name}: {all}");
        let verdict = stdout
            .lines()
            .find(|l| l.starts_with("verdict: "))
            .unwrap_or_else(|| panic!("{name}: no verdict: {all}"));
        assert!(
            verdict.contains("COULD NOT RUN THE VM")
                && verdict.contains("bios phase rescue-boot")
                && verdict.contains(says)
                && !verdict.contains("FAILED:")
                && !verdict.contains("did not come up"),
            "{name}: {verdict}"
        );
        // the run ended at QEMU's failure, not at the 600 s limit
        assert!(!all.contains("timed out"), "{name}: {all}");
    }
}

/// Issue #21, `--accel auto`: KVM passes the probe (the stand-in writes to the probe's serial
/// console) but the first real boot under KVM stops with KVM's internal error: the run
/// switches to TCG, says so, and boots again under TCG (where this stand-in writes nothing:
/// exit 3 again, the VM's failure). Needs a /dev/kvm that runs the `hlt` guest.
#[test]
fn auto_falls_back_to_tcg_when_kvm_cannot_run_the_boot() {
    let work = common::scratch();
    let iso = small_iso(work.path());
    let body = format!(
        "serial=; machine=\n\
         while [ $# -gt 0 ]; do case \"$1\" in\n\
           -serial) serial=\"${{2#file:}}\"; shift;;\n\
           -machine) machine=\"$2\"; shift;;\n\
         esac; shift; done\n\
         case \"$serial\" in *kvm-probe*) echo 'BdsDxe: fake firmware' >\"$serial\"; exec sleep 600;; esac\n\
         case \"$machine\" in *accel=kvm*) {KVM_ERROR};; esac\n\
         exec sleep 600\n"
    );
    let path = fake_qemu_path(&work.path().join("bin"), &body);
    let (code, stdout, stderr) = verify_boot(&path, work.path(), &iso, &["--accel", "auto"]);
    let all = format!("{stdout}\n{stderr}");
    if stdout.contains("KVM does not work here") {
        eprintln!("no working /dev/kvm here: the fallback is not exercised\n{all}");
        return;
    }
    assert_eq!(code, Some(3), "{all}");
    let accel = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("accelerator: "))
        .unwrap_or_else(|| panic!("no accelerator line: {all}"));
    assert!(
        accel.contains("TCG (fell back: KVM could not run the bios rescue-boot phase")
            && accel.contains("KVM internal error")
            && accel.contains("chosen first: KVM"),
        "{accel}"
    );
    assert!(stderr.contains("TCG from now on"), "{all}");
    // the verdict is the TCG run's: its firmware wrote nothing
    assert!(
        stdout.contains("verdict: COULD NOT RUN THE VM")
            && stdout.contains("the firmware wrote nothing"),
        "{all}"
    );
}
