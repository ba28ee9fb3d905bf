//! `write_netboot_dir` on ISOs written by our own writer: the rescue files and the id are
//! found and copied byte for byte, an ISO without them is refused, and a refused or failed run
//! leaves no directory and no temporary one behind.

use super::*;
use crate::iso::{IsoFile, IsoSource, IsoSpec, write_iso};

const ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn file(path: &str, bytes: Vec<u8>) -> IsoFile {
    IsoFile {
        path: path.into(),
        source: IsoSource::Bytes(bytes),
        mode: 0o444,
        mtime: 0,
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// An ISO in `dir` holding `files`.
fn iso(dir: &Path, files: Vec<IsoFile>) -> PathBuf {
    let out = dir.join("image.iso");
    let spec = IsoSpec {
        volume_id: "NETBOOT".into(),
        files,
        boot: None,
        hybrid: false,
    };
    write_iso(&spec, &out).expect("write_iso");
    out
}

fn rescue_iso(dir: &Path) -> PathBuf {
    iso(
        dir,
        vec![
            file(&format!("osimage/id-{ID}"), Vec::new()),
            file("osimage/rescue/vmlinuz", bytes(70_001, 1)),
            file("osimage/rescue/initrd.img", bytes(300_003, 2)),
        ],
    )
}

fn request(image: &Path, dir: &Path) -> NetbootRequest {
    NetbootRequest {
        image: Arc::new(File::open(image).expect("open")),
        shown: image.to_path_buf(),
        source: "http://10.0.2.2/x.iso?sig=1".into(),
        extra_cmdline: "osimage.force=1".into(),
        dir: dir.to_path_buf(),
        expires: None,
        ipxe: None,
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn the_rescue_files_are_copied_unchanged_beside_the_script() {
    let t = tempfile::tempdir().unwrap();
    let image = rescue_iso(t.path());
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap(); // an empty directory is fine
    let r = write_netboot_dir(&request(&image, &out)).expect("netboot");
    assert_eq!(r.image_id, ID);
    assert_eq!((r.kernel_bytes, r.initrd_bytes), (70_001, 300_003));
    assert_eq!(r.source_shown, "http://10.0.2.2/x.iso");
    assert_eq!(
        names(&out),
        ["README.txt", "boot.ipxe", "initrd.img", "vmlinuz"]
    );
    assert_eq!(
        std::fs::read(out.join("vmlinuz")).unwrap(),
        bytes(70_001, 1)
    );
    assert_eq!(
        std::fs::read(out.join("initrd.img")).unwrap(),
        bytes(300_003, 2)
    );
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    let kernel = script.lines().nth(2).unwrap();
    assert!(
        kernel.starts_with("kernel vmlinuz initrd=initrd.img ")
            && kernel.contains(&format!(" osimage.id={ID} osimage.auto=1 "))
            && kernel.ends_with(" osimage.source=http://10.0.2.2/x.iso?sig=1 osimage.force=1"),
        "{script}"
    );
    assert_eq!(r.cmdline_bytes, kernel.len() - "kernel vmlinuz ".len());
    assert_eq!(names(t.path()), ["image.iso", "out"], "no temporary left");
}

#[test]
fn an_iso_without_a_rescue_environment_is_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let cases: [(Vec<IsoFile>, &str); 4] = [
        (
            vec![file("README.TXT", b"hi".to_vec())],
            "no /osimage folder",
        ),
        (vec![file("osimage/rescue/vmlinuz", bytes(10, 1))], "marker"),
        (
            vec![
                file(&format!("osimage/id-{ID}"), Vec::new()),
                file("osimage/rescue/vmlinuz", bytes(10, 1)),
            ],
            "no /osimage/rescue/initrd.img",
        ),
        (
            vec![
                file(&format!("osimage/id-{ID}"), Vec::new()),
                file("osimage/id-ffffffffffffffffffffffffffffffff", Vec::new()),
                file("osimage/rescue/vmlinuz", bytes(10, 1)),
                file("osimage/rescue/initrd.img", bytes(10, 1)),
            ],
            "2 /osimage/id-… markers",
        ),
    ];
    for (files, why) in cases {
        let image = iso(t.path(), files);
        let out = t.path().join("out");
        let e = write_netboot_dir(&request(&image, &out)).expect_err(why);
        let msg = e.to_string();
        assert!(
            matches!(e, NetbootError::NoRescue { .. })
                && !e.is_usage()
                && msg.contains(why)
                && msg.contains("carries no rescue environment")
                && msg.contains(&image.display().to_string()),
            "{msg}"
        );
        assert_eq!(names(t.path()), ["image.iso"], "{why}");
    }
    // Not an ISO at all (an .oimg's first bytes).
    let oimg = t.path().join("x.oimg");
    std::fs::write(&oimg, bytes(100_000, 3)).unwrap();
    let e = write_netboot_dir(&request(&oimg, &t.path().join("out"))).unwrap_err();
    assert!(e.to_string().contains("not an ISO 9660 image"), "{e}");
}

#[test]
fn a_non_empty_dir_and_bad_arguments_are_refused_before_anything_is_read() {
    let t = tempfile::tempdir().unwrap();
    let image = rescue_iso(t.path());
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"mine").unwrap();
    let e = write_netboot_dir(&request(&image, &out)).unwrap_err();
    assert!(
        matches!(e, NetbootError::NotEmpty(_)) && !e.is_usage(),
        "{e}"
    );
    assert_eq!(names(&out), ["keep"]);
    assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"mine");

    let fresh = t.path().join("fresh");
    let mut req = request(&image, &fresh);
    req.source = "ftp://h/x.iso".into();
    let e = write_netboot_dir(&req).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("http://"), "{e}");
    let mut req = request(&image, &fresh);
    req.extra_cmdline = "a\nb".into();
    assert!(write_netboot_dir(&req).unwrap_err().is_usage());
    let mut req = request(&image, &fresh);
    req.source = format!("http://h/{}", "a".repeat(MAX_CMDLINE));
    let e = write_netboot_dir(&req).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("2047"), "{e}");
    assert_eq!(names(t.path()), ["image.iso", "out"]);
}

/// A source that fails after `ok` reads: the copy stops midway.
struct Failing {
    file: File,
    ok: std::sync::atomic::AtomicU64,
}

impl RangeRead for Failing {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.ok.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(std::io::Error::other("the server went away"));
        }
        RangeRead::read_exact_at(&self.file, buf, at)
    }
    fn len(&self) -> u64 {
        RangeRead::len(&self.file)
    }
    fn describe(&self) -> String {
        "failing source".into()
    }
}

#[test]
fn a_read_that_fails_midway_leaves_no_directory_and_no_temporary() {
    let t = tempfile::tempdir().unwrap();
    let image = rescue_iso(t.path());
    // Count the reads of a whole run, then fail at the last one (the initramfs' copy).
    let counting = Arc::new(Failing {
        file: File::open(&image).unwrap(),
        ok: std::sync::atomic::AtomicU64::new(u64::MAX),
    });
    let mut req = request(&image, &t.path().join("counted"));
    req.image = counting.clone();
    write_netboot_dir(&req).expect("a whole run");
    let reads = u64::MAX - counting.ok.load(std::sync::atomic::Ordering::SeqCst);
    for out in [t.path().join("new"), t.path().join("empty")] {
        if out.ends_with("empty") {
            std::fs::create_dir(&out).unwrap();
        }
        let mut req = request(&image, &out);
        req.image = Arc::new(Failing {
            file: File::open(&image).unwrap(),
            ok: std::sync::atomic::AtomicU64::new(reads - 1),
        });
        let e = write_netboot_dir(&req).unwrap_err();
        assert!(e.to_string().contains("the server went away"), "{e}");
        let mut want = vec!["counted", "image.iso"];
        if out.ends_with("empty") {
            want.insert(1, "empty");
            assert!(names(&out).is_empty(), "the empty DIR stays empty");
        }
        assert_eq!(names(t.path()), want);
    }
}

#[test]
fn a_kernel_too_large_is_refused_by_its_recorded_length() {
    // A hostile directory record may claim any length up to 4 GiB: the record of a small
    // ISO's kernel is made to claim one more byte than the limit, and the file is made long
    // enough (sparse) that the extent lies inside it.
    let t = tempfile::tempdir().unwrap();
    let image = rescue_iso(t.path());
    let kernel = IsoReader::open(&image)
        .unwrap()
        .lookup("osimage/rescue/vmlinuz")
        .unwrap()
        .unwrap();
    let mut b = std::fs::read(&image).unwrap();
    let lba = ((kernel.offset / 2048) as u32).to_le_bytes();
    let len = (kernel.len as u32).to_le_bytes();
    let claim = (MAX_BOOT_FILE + 1) as u32;
    let mut patched = 0;
    for at in 0..b.len() - 18 {
        // ECMA-119 9.1: extent location at 2 (LE) and data length at 10 (LE) and 14 (BE).
        if b[at + 2..at + 6] == lba && b[at + 10..at + 14] == len {
            b[at + 10..at + 14].copy_from_slice(&claim.to_le_bytes());
            b[at + 14..at + 18].copy_from_slice(&claim.to_be_bytes());
            patched += 1;
        }
    }
    assert!(patched >= 1, "the kernel's directory record was not found");
    std::fs::write(&image, &b).unwrap();
    File::options()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(kernel.offset + MAX_BOOT_FILE + 1)
        .unwrap();
    let e = write_netboot_dir(&request(&image, &t.path().join("out"))).unwrap_err();
    assert!(
        matches!(e, NetbootError::TooLarge { len, .. } if len == MAX_BOOT_FILE + 1),
        "{e}"
    );
    assert!(e.to_string().contains("512 MiB"), "{e}");
    assert_eq!(names(t.path()), ["image.iso"]);
}
