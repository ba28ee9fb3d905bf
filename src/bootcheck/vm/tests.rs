//! The QEMU runner's tests: stand-in QEMU scripts for errors, silence and stalls, and the
//! classification of this host's real QEMU messages.

use super::*;

#[test]
fn a_missing_qemu_or_ovmf_names_the_debian_package() {
    let e = check_tools(Firmware::Bios, false, [OVMF_CODE, OVMF_VARS]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
    );
    let gone = "/nonexistent/OVMF_CODE_4M.fd";
    let e = check_tools(Firmware::Uefi, true, [gone, OVMF_VARS]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{gone} not found: install the Debian package ovmf")
    );
    // BIOS needs no OVMF
    check_tools(Firmware::Bios, true, [gone, gone]).unwrap();
}

#[test]
fn command_line_follows_the_spec() {
    let logs = Path::new("/l");
    let disk = Path::new("/d.img");
    let iso = Path::new("/s.iso");
    let disks = vec![Drive {
        file: disk,
        bus: Bus::Virtio,
        snapshot: true,
    }];
    let spec = VmSpec {
        name: "x".into(),
        firmware: Firmware::Uefi,
        memory_mib: 2048,
        cdrom: Some(iso),
        timeout: Duration::from_secs(1),
        ..spec_with(logs, disks)
    };
    let a = args(
        &spec,
        Path::new("/l/x.log"),
        Path::new("/l/x.vars.fd"),
        false,
    )
    .join(" ");
    assert!(a.starts_with("-machine pc,accel=tcg -m 2048M "), "{a}");
    assert!(a.contains("-serial file:/l/x.log"), "{a}");
    assert!(a.contains("-device virtio-rng-pci"), "{a}");
    assert!(a.contains("-cpu qemu64,+rdrand"), "{a}");
    assert!(
        a.contains(&format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        )),
        "{a}"
    );
    assert!(
        a.contains("if=pflash,format=raw,unit=1,file=/l/x.vars.fd"),
        "{a}"
    );
    assert!(
        a.contains("file=/d.img,if=virtio,format=raw,cache=unsafe,snapshot=on"),
        "{a}"
    );
    assert!(
        a.ends_with("file=/s.iso,format=raw,media=cdrom,readonly=on -boot d"),
        "{a}"
    );
}
fn spec_with<'a>(logs: &'a Path, disks: Vec<Drive<'a>>) -> VmSpec<'a> {
    VmSpec {
        name: "t".into(),
        log_dir: logs,
        firmware: Firmware::Bios,
        accel: Accel::Tcg,
        memory_mib: 512,
        cdrom: None,
        kernel: None,
        disks,
        timeout: Duration::from_secs(60),
        stop_on: &[],
        fail_on: &[],
        milestones: &[],
        grace: Duration::from_secs(1),
        stall: None,
        first_output: None,
        network: None,
    }
}

#[test]
fn nvme_disks_get_a_controller_each_and_typing_reads_stdin() {
    let (a, b) = (Path::new("/a.img"), Path::new("/b.img"));
    let drive = |file, bus| Drive {
        file,
        bus,
        snapshot: false,
    };
    let spec = spec_with(
        Path::new("/l"),
        vec![drive(a, Bus::Virtio), drive(b, Bus::Nvme)],
    );
    let log = Path::new("/l/t.log");
    let typed = args(&spec, log, Path::new("/l/t.vars.fd"), true).join(" ");
    assert!(
        typed.contains("-drive file=/a.img,if=virtio,format=raw,cache=unsafe -drive"),
        "{typed}"
    );
    assert!(
        typed.contains(
            "-drive file=/b.img,if=none,id=disk1,format=raw,cache=unsafe \
             -device nvme,drive=disk1,serial=osimage1"
        ),
        "{typed}"
    );
    assert!(
        typed.contains(
            "-chardev stdio,id=osimage-serial,signal=off,logfile=/l/t.log \
             -serial chardev:osimage-serial"
        ),
        "{typed}"
    );
    assert!(!typed.contains("-serial file:"), "{typed}");
    let plain = args(&spec, log, Path::new("/l/t.vars.fd"), false).join(" ");
    assert!(plain.contains("-serial file:/l/t.log"), "{plain}");
    assert!(!plain.contains("-chardev"), "{plain}");
}

#[test]
fn each_prompt_is_searched_after_the_previous_one() {
    let c = b"boot\nPassword: x\nwrong\nPassword: \ndisk?";
    let first = prompt_end(c, 0, "Password:").unwrap();
    assert_eq!(&c[..first], b"boot\nPassword:");
    let second = prompt_end(c, first, "Password:").unwrap();
    assert!(second > first);
    assert_eq!(prompt_end(c, second, "Password:"), None);
    assert_eq!(prompt_end(c, second, "disk?"), Some(c.len()));
    assert_eq!(prompt_end(c, c.len() + 5, "disk?"), None);
}

/// The keyboard against a stand-in guest (bash writing to the console log and reading
/// its standard input): every answer arrives after its own prompt, never before, and the
/// same prompt asked twice gets the second line.
#[test]
fn lines_are_typed_only_once_their_prompt_is_on_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.log");
    let guest = r#"
        log=$1
        early() { if read -r -t 0; then echo "EARLY before $1" >>"$log"; fi; }
        echo "booting" >>"$log"; sleep 1
        early pass1; echo "passphrase:" >>"$log"; read -r a; echo "got $a" >>"$log"
        sleep 1
        early pass2; echo "passphrase:" >>"$log"; read -r b; echo "got $b" >>"$log"
        sleep 1
        early disk; echo "which disk?" >>"$log"; read -r c; echo "chose $c" >>"$log"
    "#;
    let mut child = Command::new("bash")
        .args(["-c", guest, "guest"])
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let script = [
        Typed {
            after: "passphrase:",
            line: "wrong",
        },
        Typed {
            after: "passphrase:",
            line: "right",
        },
        Typed {
            after: "which disk?",
            line: "nvme0n1",
        },
    ];
    let mut kb = Keyboard::new(child.stdin.take(), &script);
    let spec = spec_with(dir.path(), Vec::new());
    let (ended, _, _) = watch(&mut child, &spec, &log, &dir.path().join("t.err"), &mut kb);
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        matches!(ended, Ended::Exited(s) if s.success()),
        "{ended:?}\n{console}"
    );
    assert!(!console.contains("EARLY"), "{console}");
    assert!(
        console.ends_with("got wrong\npassphrase:\ngot right\nwhich disk?\nchose nvme0n1\n"),
        "{console}"
    );
    assert_eq!(kb.typed.len(), 3);
}

/// What QEMU printed on the nested host of issue #21 (OVMF under KVM).
const KVM_INTERNAL_ERROR: &str = "qemu-system-x86_64: warning: host doesn't support \
    requested feature: CPUID.01H:ECX.pni [bit 0]\nKVM internal error. Suberror: 1\n\
    extra data[0]: 0x0000000000000001\nemulation failure\nEAX=00000000 EBX=00807000\n";

#[test]
fn qemu_errors_are_found_and_warnings_are_not() {
    assert_eq!(
        qemu_error(KVM_INTERNAL_ERROR).as_deref(),
        Some("KVM internal error. Suberror: 1 … emulation failure")
    );
    assert_eq!(
        qemu_error("qemu-system-x86_64: warning: host doesn't support requested feature"),
        None
    );
    assert_eq!(qemu_error(""), None);
}

/// A stand-in QEMU (bash) watched as `run_typing` watches the real one; returns how it
/// ended.
fn watch_fake(script: &str, first_output: u64, stall: u64) -> Ended {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.log");
    let err = dir.path().join("t.err");
    let mut child = Command::new("bash")
        .args(["-c", script, "fake-qemu"])
        .arg(&log)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut spec = spec_with(dir.path(), Vec::new());
    spec.first_output = Some(Duration::from_secs(first_output));
    spec.stall = Some(Duration::from_secs(stall));
    let mut kb = Keyboard::new(None, &[]);
    let (ended, _, _) = watch(&mut child, &spec, &log, &err, &mut kb);
    let _ = child.kill();
    let _ = child.wait();
    ended
}

/// Issue #21: QEMU that reports KVM's internal error and stays, QEMU whose firmware
/// writes nothing, and a console that stops moving each end the boot at once (not at
/// the 60 s timeout), each named for what it is.
#[test]
fn vm_errors_silence_and_stalls_end_the_boot() {
    let kvm = format!(
        "printf '%s' '{}' >&2; sleep 120",
        KVM_INTERNAL_ERROR.replace('\'', "")
    );
    match watch_fake(&kvm, 30, 30) {
        Ended::VmError(m) => assert!(m.contains("KVM internal error"), "{m}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(watch_fake("sleep 120", 2, 30), Ended::NoOutput);
    let stalls = r#"echo "Loading the osimage rescue environment..." >>"$1"; sleep 120"#;
    assert_eq!(
        watch_fake(stalls, 30, 2),
        Ended::Stalled("Loading the osimage rescue environment...".into())
    );
    // a console that keeps moving is not a stall
    let busy = r#"for i in 1 2 3 4 5 6; do echo "line $i" >>"$1"; sleep 1; done"#;
    assert!(matches!(watch_fake(busy, 30, 3), Ended::Exited(s) if s.success()));
}

/// A prompt that never comes: nothing is typed, the rest of the script is not sent.
#[test]
fn a_missing_prompt_types_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.log");
    let mut child = Command::new("bash")
        .args([
            "-c",
            r#"echo "no prompt here" >>"$1"; sleep 1; if read -r -t 0; then echo TYPED >>"$1"; fi"#,
            "guest",
        ])
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let script = [Typed {
        after: "passphrase:",
        line: "secret",
    }];
    let mut kb = Keyboard::new(child.stdin.take(), &script);
    let spec = spec_with(dir.path(), Vec::new());
    let _ = watch(&mut child, &spec, &log, &dir.path().join("t.err"), &mut kb);
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(!console.contains("TYPED"), "{console}");
    assert!(kb.typed.is_empty());
}

/// A prompt the script answers is no failure even when it holds a `fail_on` text (the
/// agent's `OSIMAGE-RESTORE-WAITING passphrase` when `verify --boot` types the key); any
/// other line holding one is, and an empty prompt exempts nothing.
#[test]
fn answered_prompts_are_not_failures() {
    let fail_on = ["OSIMAGE-RESTORE-WAITING", "OSIMAGE-RESTORE-FAILED"];
    let key = [Typed {
        after: "OSIMAGE-RESTORE-WAITING passphrase",
        line: "secret",
    }];
    let asked = "boot\nOSIMAGE-RESTORE-WAITING passphrase (the image is encrypted)\nosimage: image unlocked\n";
    assert_eq!(failure_line(asked, &fail_on, &key), None);
    assert_eq!(
        failure_line(asked, &fail_on, &[]).as_deref(),
        Some("OSIMAGE-RESTORE-WAITING passphrase (the image is encrypted)")
    );
    let other = format!("{asked}OSIMAGE-RESTORE-WAITING 2 empty disks big enough\n");
    assert_eq!(
        failure_line(&other, &fail_on, &key).as_deref(),
        Some("OSIMAGE-RESTORE-WAITING 2 empty disks big enough")
    );
    let empty = [Typed {
        after: "",
        line: "x",
    }];
    assert!(failure_line(asked, &fail_on, &empty).is_some());
    assert_eq!(failure_line("all well\n", &fail_on, &key), None);
}
